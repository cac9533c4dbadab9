// Creates COUNT Patients on a FHIR server (POST BASE/Patient, a few requests in flight) and writes
// their ids, one per line, to OUT. Used by bench/run.sh before the read and update scenarios.
//
//   node bench/seed_patients.mjs http://127.0.0.1:PORT/fhir 1000 ids.txt [CONCURRENCY]
//
// Exits non-zero if any create does not answer 201 with a body carrying an "id". Sends
// "Authorization: Bearer $PASSERELLE_TOKEN" when that variable is set (the gateway's access control).
import { writeFileSync } from 'node:fs';

const [base, countArg, out, concurrencyArg] = process.argv.slice(2);
const count = Number.parseInt(countArg ?? '', 10);
const concurrency = Number.parseInt(concurrencyArg ?? '8', 10);
if (!base || !out || !(count > 0) || !(concurrency > 0)) {
  console.error('usage: node seed_patients.mjs FHIR_BASE COUNT OUT_FILE [CONCURRENCY]');
  process.exit(2);
}

function patient(n) {
  return {
    resourceType: 'Patient',
    identifier: [{ use: 'usual', system: 'urn:oid:1.2.250.1.71.4.2.7', value: `SEED-${n}` }],
    active: true,
    name: [{ use: 'official', family: 'Seed', given: ['Patient', String(n)] }],
    telecom: [{ system: 'phone', value: `+33 1 60 ${String(n % 100).padStart(2, '0')} 00 00`, use: 'home' }],
    gender: n % 2 ? 'female' : 'male',
    birthDate: `19${String(40 + (n % 60)).padStart(2, '0')}-0${1 + (n % 9)}-1${n % 10}`,
    address: [{ line: [`${n} rue du Banc`], city: 'Nemours', postalCode: '77140', country: 'FR' }],
  };
}

const headers = { 'Content-Type': 'application/fhir+json', Accept: 'application/fhir+json' };
if (process.env.PASSERELLE_TOKEN) headers.Authorization = `Bearer ${process.env.PASSERELLE_TOKEN}`;

const ids = new Array(count);
let next = 0;

async function worker() {
  while (next < count) {
    const n = next++;
    const res = await fetch(`${base}/Patient`, {
      method: 'POST',
      headers,
      body: JSON.stringify(patient(n)),
    });
    const text = await res.text();
    if (res.status !== 201) {
      throw new Error(`POST ${base}/Patient answered ${res.status}: ${text.slice(0, 300)}`);
    }
    const id = JSON.parse(text).id;
    if (typeof id !== 'string' || id === '') {
      throw new Error(`POST ${base}/Patient answered 201 without an id: ${text.slice(0, 300)}`);
    }
    ids[n] = id;
  }
}

try {
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
} catch (err) {
  console.error(`seed: ${err.message}`);
  process.exit(1);
}
writeFileSync(out, ids.join('\n') + '\n');
