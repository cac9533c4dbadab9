// The validation peer: ajv with the official FHIR R4 JSON schema, one compiled validator per
// resource type, timed including JSON.parse, on the files of bench/data/validation (the same
// inputs as passerelle_bench_validator). Prints one JSON line per input.
// Usage: node validate_bench.mjs SCHEMA [SECONDS]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const Ajv = require('ajv');
const draft06 = require('ajv/dist/refs/json-schema-draft-06.json');

const here = dirname(fileURLToPath(import.meta.url));
const schemaPath = process.argv[2];
const seconds = Number(process.argv[3] || 3);
const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
// The 4.0 schema uses draft-06's "id" and an OpenAPI "discriminator"; ajv 8 wants "$id".
schema.$id = schema.id;
delete schema.id;
delete schema.discriminator;
const ajv = new Ajv({ strict: false, allErrors: false });
ajv.addMetaSchema(draft06);
ajv.addSchema(schema, 'fhir');
const compiled = new Map();
function validatorFor(type) {
  if (!compiled.has(type)) compiled.set(type, ajv.compile({ $ref: `fhir#/definitions/${type}` }));
  return compiled.get(type);
}

const data = join(here, '..', 'data', 'validation');
const inputs = ['patient', 'observation', 'encounter'].map((n) => ({
  name: n,
  text: readFileSync(join(data, `${n}.json`), 'utf8'),
  resources: 1,
}));
// A transaction Bundle of 100 entries, built as the C++ benchmark builds it.
const entries = [];
for (let i = 0; i < 100; i++) {
  const src = inputs[i % 3];
  const type = ['Patient', 'Observation', 'Encounter'][i % 3];
  const id = String(i).padStart(12, '0');
  entries.push(`{"fullUrl":"urn:uuid:00000000-0000-4000-8000-${id}","resource":${src.text},"request":{"method":"POST","url":"${type}"}}`);
}
inputs.push({ name: 'bundle100', text: `{"resourceType":"Bundle","type":"transaction","entry":[${entries.join(',')}]}`, resources: 101 });

for (const input of inputs) {
  const type = JSON.parse(input.text).resourceType;
  const validate = validatorFor(type);
  if (!validate(JSON.parse(input.text))) {
    console.log(JSON.stringify({ name: input.name, error: ajv.errorsText(validate.errors) }));
    continue;
  }
  // Warm up, then time whole batches until the duration is reached.
  for (let i = 0; i < 2000; i++) validate(JSON.parse(input.text));
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < 500; i++) {
      if (!validate(JSON.parse(input.text))) throw new Error('became invalid');
    }
    n += 500;
    now = process.hrtime.bigint();
  }
  const secs = Number(now - start) / 1e9;
  console.log(JSON.stringify({
    name: input.name,
    resources_per_s: Math.round((n * input.resources) / secs),
    mb_per_s: Number(((n * Buffer.byteLength(input.text)) / secs / 1e6).toFixed(1)),
  }));
}
