// The peer of the MLLP ingest benchmark (bench/mllp/run.sh): @medplum/hl7's Hl7Server, answering
// every message with an AA acknowledgement (Hl7Message.buildAck) and storing nothing.
//   node hl7server.mjs PORT
import { Hl7Server } from '@medplum/hl7';

const port = Number(process.argv[2] || 2585);
const server = new Hl7Server((connection) => {
  connection.addEventListener('message', ({ message }) => {
    connection.send(message.buildAck());
  });
});
await server.start(port);
console.log(`listening ${port}`);
process.on('SIGTERM', async () => {
  await server.stop({ forceDrainTimeoutMs: 100 });
  process.exit(0);
});
