// Benchmark peer for Passerelle: Medplum's FhirRouter over its in-memory repository,
// served over plain HTTP with node's built-in http module.
//
//   node server.mjs [PORT]        (or PEER_PORT=... node server.mjs; 0 or nothing = a free port)
//
// Prints "listening http=127.0.0.1:PORT" once ready. FHIR base: http://127.0.0.1:PORT/fhir
// Exits 0 on SIGTERM / SIGINT.
//
// Node < 22 has no global WebSocket unless started with --experimental-websocket, and
// @medplum/core touches WebSocket.CLOSING at module load, so the Medplum packages are
// imported dynamically after that check (a static import would fail before any message).
import http from 'node:http';

if (typeof globalThis.WebSocket === 'undefined') {
  console.error(
    'peer: @medplum/core needs a global WebSocket at load time; ' +
      'use node >= 22 or start node with --experimental-websocket'
  );
  process.exit(2);
}

const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');
const { getStatus, isOk, normalizeOperationOutcome, badRequest } = await import('@medplum/core');

const HOST = '127.0.0.1';
const BASE_PATH = '/fhir';
const port = Number.parseInt(process.argv[2] ?? process.env.PEER_PORT ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`peer: bad port ${process.argv[2] ?? process.env.PEER_PORT}`);
  process.exit(2);
}

const router = new FhirRouter();
const repo = new MemoryRepository();
// Without config.transactions, BatchProcessor treats a Bundle of type "transaction" with
// batch semantics (entries fail one by one instead of the whole bundle failing).
const requestConfig = Object.freeze({ transactions: true });

const FHIR_JSON = 'application/fhir+json; charset=utf-8';
let baseUrl = '';

function send(res, status, body, extraHeaders) {
  const payload = body === undefined ? '' : JSON.stringify(body);
  const headers = { 'Content-Type': FHIR_JSON, 'Content-Length': Buffer.byteLength(payload), ...extraHeaders };
  res.writeHead(status, headers);
  res.end(payload);
}

function resourceHeaders(status, resource) {
  const headers = {};
  const versionId = resource?.meta?.versionId;
  if (versionId) {
    headers.ETag = `W/"${versionId}"`;
  }
  if (resource?.meta?.lastUpdated) {
    headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  }
  if (status === 201 && resource?.id) {
    headers.Location = `${baseUrl}/${resource.resourceType}/${resource.id}` + (versionId ? `/_history/${versionId}` : '');
  }
  return headers;
}

async function handle(req, res, rawBody) {
  const target = req.url ?? '/';
  // The router works on URLs relative to the FHIR base ("Patient/123", "" for the system level).
  if (target !== BASE_PATH && !target.startsWith(BASE_PATH + '/') && !target.startsWith(BASE_PATH + '?')) {
    send(res, 404, normalizeOperationOutcome(new Error(`Not found: ${target}`)));
    return;
  }
  let body;
  if (rawBody.length > 0) {
    try {
      body = JSON.parse(rawBody.toString('utf8'));
    } catch {
      send(res, 400, badRequest('Request body is not valid JSON'));
      return;
    }
  }
  const fhirRequest = {
    method: req.method,
    url: target.slice(BASE_PATH.length),
    pathname: '', // must be empty: handleRequest rejects a pre-filled pathname and fills it in itself
    params: {},
    query: {},
    body,
    headers: req.headers,
    config: requestConfig,
  };
  const [outcome, resource] = await router.handleRequest(fhirRequest, repo);
  const status = getStatus(outcome);
  if (resource !== undefined && isOk(outcome)) {
    send(res, status, resource, resourceHeaders(status, resource));
  } else {
    send(res, status, outcome);
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks)).catch((err) => {
      if (!res.headersSent) {
        send(res, 500, normalizeOperationOutcome(err));
      } else {
        res.destroy(err);
      }
    });
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(port, HOST, () => {
  const actual = server.address().port;
  baseUrl = `http://${HOST}:${actual}${BASE_PATH}`;
  process.stdout.write(`listening http=${HOST}:${actual}\n`);
});
