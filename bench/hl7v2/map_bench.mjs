// The node peer of the HL7 v2 -> FHIR benchmark (bench/hl7v2/run.sh): a minimal mapper on
// @medplum/core's Hl7Message that builds what Passerelle's mapping builds from the same messages
// (a transaction Bundle with the Patient from PID: identifiers, name, birth date, gender, address;
// an Encounter from PV1 for ADT; an Observation per OBX result of an ORU) and serialises it.
// Prints "MAPPER @medplum/core messages_per_second resources_per_message".
//   node map_bench.mjs messages.json 5
import { readFileSync } from 'node:fs';

const [, , file, secondsArg] = process.argv;
const messages = JSON.parse(readFileSync(file, 'utf8'));
const seconds = Number(secondsArg || 5);
const { Hl7Message } = await import('@medplum/core');

const field = (seg, i) => seg.getField(i) || { getComponent: () => '', toString: () => '', components: [] };
const date = (dtm) => (dtm && dtm.length >= 8 ? `${dtm.slice(0, 4)}-${dtm.slice(4, 6)}-${dtm.slice(6, 8)}` : undefined);
const sex = { M: 'male', F: 'female', O: 'other', U: 'unknown' };
const status = { F: 'final', C: 'corrected', P: 'preliminary', D: 'entered-in-error' };

function map(text) {
  const m = Hl7Message.parse(text);
  const type = field(m.header, 9).getComponent(1);
  const entry = [];
  const pid = m.getSegment('PID');
  const patientUrl = 'urn:uuid:00000000-0000-4000-8000-000000000001';
  if (pid) {
    const f3 = field(pid, 3);
    const identifier = [];
    for (let r = 0; r < f3.components.length; r++) {
      const value = f3.getComponent(1, undefined, r);
      if (!value) continue;
      const oid = f3.getComponent(4, 2, r);
      identifier.push({ system: oid ? `urn:oid:${oid}` : undefined, value, type: { coding: [{ code: f3.getComponent(5, undefined, r) }] } });
    }
    const name = field(pid, 5);
    const addr = field(pid, 11);
    entry.push({
      fullUrl: patientUrl,
      resource: {
        resourceType: 'Patient',
        identifier,
        name: [{ family: name.getComponent(1), given: [name.getComponent(2), name.getComponent(3)].filter(Boolean) }],
        birthDate: date(field(pid, 7).toString()),
        gender: sex[field(pid, 8).toString()],
        address: [{ line: [addr.getComponent(1)], city: addr.getComponent(3), postalCode: addr.getComponent(5), country: addr.getComponent(6) }],
      },
      request: { method: 'POST', url: 'Patient' },
    });
  }
  if (type === 'ADT') {
    const pv1 = m.getSegment('PV1');
    if (pv1) {
      entry.push({
        resource: {
          resourceType: 'Encounter',
          status: 'in-progress',
          class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: field(pv1, 2).toString() === 'I' ? 'IMP' : 'AMB' },
          identifier: [{ value: field(pv1, 19).getComponent(1) }],
          subject: { reference: patientUrl },
        },
        request: { method: 'POST', url: 'Encounter' },
      });
    }
  } else if (type === 'ORU') {
    for (const obx of m.getAllSegments('OBX')) {
      const kind = field(obx, 2).toString();
      const code = field(obx, 3);
      const value = field(obx, 5).toString();
      const o = {
        resourceType: 'Observation',
        status: status[field(obx, 11).toString()] || 'final',
        code: { coding: [{ system: code.getComponent(3) === 'LN' ? 'http://loinc.org' : code.getComponent(3), code: code.getComponent(1), display: code.getComponent(2) }] },
        subject: { reference: patientUrl },
      };
      if (kind === 'NM') o.valueQuantity = { value: Number(value), unit: field(obx, 6).getComponent(1) };
      else o.valueString = value;
      entry.push({ resource: o, request: { method: 'POST', url: 'Observation' } });
    }
  }
  const bundle = { resourceType: 'Bundle', type: 'transaction', entry };
  return [JSON.stringify(bundle).length, entry.length];
}

let resources = 0;
for (let i = 0; i < Math.min(messages.length, 500); i++) map(messages[i]);  // warm-up
let n = 0;
let bytes = 0;
const start = process.hrtime.bigint();
const limit = BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() - start < limit) {
  for (let i = 0; i < messages.length; i++) {
    const [b, r] = map(messages[i]);
    bytes += b;
    resources += r;
  }
  n += messages.length;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
console.log(`MAPPER @medplum/core ${(n / elapsed).toFixed(0)} ${(resources / n).toFixed(2)} ${bytes}`);
