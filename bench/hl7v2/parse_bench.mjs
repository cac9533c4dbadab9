// The node peers of the HL7 v2 parse benchmark (bench/hl7v2/run.sh): parses every message of
// MESSAGES (a JSON array) again and again for SECONDS, reading MSH-9, PID-3 (every repetition's
// first component), PID-5 (family, given), PID-7 and every OBX-3 and OBX-5, with
//   simple-hl7 3.3.0        (Parser.parse: the message split into segments and fields)
//   @medplum/core 5.2.13   (Hl7Message.parse; segments parsed when first read)
// Prints one line per parser: "PARSER name messages_per_second checksum".
//   node parse_bench.mjs messages.json 5
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const [, , file, secondsArg] = process.argv;
const messages = JSON.parse(readFileSync(file, 'utf8'));
const seconds = Number(secondsArg || 5);

function run(name, parseAndRead) {
  let checksum = 0;
  for (let i = 0; i < Math.min(messages.length, 500); i++) checksum += parseAndRead(messages[i]);  // warm-up
  checksum = 0;
  let n = 0;
  const start = process.hrtime.bigint();
  const limit = BigInt(Math.round(seconds * 1e9));
  while (process.hrtime.bigint() - start < limit) {
    for (let i = 0; i < messages.length; i++) checksum += parseAndRead(messages[i]);
    n += messages.length;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`PARSER ${name} ${(n / elapsed).toFixed(0)} ${checksum}`);
}

const hl7 = require('simple-hl7');
const parser = new hl7.Parser();
run('simple-hl7', (text) => {
  const m = parser.parse(text);
  let c = m.header.getComponent(8, 1).length + m.header.getComponent(8, 2).length;
  const pid = m.getSegment('PID');
  if (pid) {
    const reps = String(pid.getField(3)).split('~');
    for (const r of reps) c += r.split('^')[0].length;
    c += pid.getComponent(5, 1).length + pid.getComponent(5, 2).length + String(pid.getField(7)).length;
  }
  for (const obx of m.getSegments('OBX')) c += obx.getComponent(3, 1).length + String(obx.getField(5)).length;
  return c;
});

const { Hl7Message } = await import('@medplum/core');
run('@medplum/core', (text) => {
  const m = Hl7Message.parse(text);
  const msh = m.header;
  let c = msh.getField(9).getComponent(1).length + msh.getField(9).getComponent(2).length;
  const pid = m.getSegment('PID');
  if (pid) {
    const f3 = pid.getField(3);
    for (let r = 0; r < f3.components.length; r++) c += f3.getComponent(1, undefined, r).length;
    c += pid.getField(5).getComponent(1).length + pid.getField(5).getComponent(2).length + pid.getField(7).toString().length;
  }
  for (const obx of m.getAllSegments('OBX')) c += obx.getField(3).getComponent(1).length + obx.getField(5).toString().length;
  return c;
});
