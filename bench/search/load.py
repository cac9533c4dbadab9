#!/usr/bin/env python3
"""Writes a range of the benchmark dataset (dataset.py) to a FHIR server as transaction Bundles.

  load.py --base http://127.0.0.1:PORT/fhir --kind Observation --first 1 --last 10000 \
          [--bundle 1000] [--clients 2] [--seed 1] [--patients 100000]

Each Bundle PUTs `--bundle` resources at their fixed ids (Prefer: return=minimal). `--clients`
processes each build a Bundle then send it on their own kept-alive connection, so that generating
one overlaps sending another. Prints one JSON object on stdout: resources written, wall seconds,
resources/s, Bundle latency percentiles, the client's own CPU seconds, and the failures (a failed
Bundle stops the run: exit status 1).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

# Authorization: Bearer $PASSERELLE_TOKEN for the gateway's access control (bench/lib.sh mints it).
AUTH = {"Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]} if os.environ.get("PASSERELLE_TOKEN") else {}

_conn = None
_args = None


def _init(args):
    global _conn, _args
    _args = args
    u = urllib.parse.urlsplit(args.base)
    _conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)


def _send(chunk):
    first, last = chunk
    t0 = time.perf_counter()
    body = dataset.transaction(_args.kind, _args.seed, first, last, _args.patients)
    t1 = time.perf_counter()
    path = urllib.parse.urlsplit(_args.base).path or "/"
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
               "Prefer": "return=minimal", **AUTH}
    for attempt in range(3):
        try:
            _conn.request("POST", path, body=body, headers=headers)
            resp = _conn.getresponse()
            text = resp.read()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # A kept-alive connection the server closed while it was idle: reconnect.
            _conn.close()
            if attempt == 2:
                raise
    t2 = time.perf_counter()
    error = None
    if resp.status != 200:
        error = "%s %d-%d: HTTP %d %s" % (_args.kind, first, last, resp.status, text[:600].decode("utf-8", "replace"))
    else:
        # Every entry of a transaction-response carries the outcome of its request.
        ok = text.count(b'"status":"201') + text.count(b'"status":"200')
        if ok != last - first + 1:
            error = "%s %d-%d: %d of %d entries answered 200/201" % (_args.kind, first, last, ok, last - first + 1)
    return last - first + 1, t1 - t0, t2 - t1, len(body), error


def _pct(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--kind", choices=["Patient", "Observation"], required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--last", type=int, required=True)
    ap.add_argument("--bundle", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--patients", type=int, default=100000)
    args = ap.parse_args()
    if args.last < args.first:
        print(json.dumps({"resources": 0, "seconds": 0.0, "rate": None, "errors": []}))
        return 0
    chunks = [(a, min(a + args.bundle - 1, args.last)) for a in range(args.first, args.last + 1, args.bundle)]
    written = 0
    gen = post = 0.0
    latencies = []
    errors = []
    bytes_sent = 0
    t0 = time.perf_counter()
    cpu0 = os.times()
    with multiprocessing.Pool(args.clients, initializer=_init, initargs=(args,)) as pool:
        for n, g, p, size, error in pool.imap_unordered(_send, chunks):
            gen += g
            post += p
            bytes_sent += size
            latencies.append(p * 1000.0)
            if error:
                errors.append(error)
                pool.terminate()
                break
            written += n
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    latencies.sort()
    out = {
        "kind": args.kind, "first": args.first, "last": args.last, "bundle": args.bundle, "clients": args.clients,
        "resources": written, "seconds": round(seconds, 3), "rate": round(written / seconds, 1) if seconds else None,
        "bundles": len(latencies), "bytes": bytes_sent,
        "bundle_ms": {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "p99": _pct(latencies, 99),
                      "max": latencies[-1] if latencies else None},
        "generate_seconds": round(gen, 3),
        "client_cpu_seconds": round((cpu1.user + cpu1.system + cpu1.children_user + cpu1.children_system)
                                    - (cpu0.user + cpu0.system + cpu0.children_user + cpu0.children_system), 3),
        "errors": errors,
    }
    print(json.dumps(out))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
