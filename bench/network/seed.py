#!/usr/bin/env python3
"""Sends network documents (one JSON document a line) to POST /network/v1/{documentType}.

  seed.py --base http://127.0.0.1:PORT FILE.jsonl [FILE.jsonl ...] [--clients 8]

The files are sent one after the other (all of a file before the next: consents need their
inclusions); within a file, --clients threads each on a kept-alive connection. Any answer other than
2xx stops the run (exit status 1). Prints per file: documents, seconds, documents/s.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

# Authorization: Bearer $PASSERELLE_TOKEN for the gateway's access control (bench/lib.sh mints it).
AUTH = {"Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]} if os.environ.get("PASSERELLE_TOKEN") else {}


def send_all(base, lines, clients):
    u = urllib.parse.urlsplit(base)
    lock = threading.Lock()
    state = {"next": 0, "error": None}

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        while True:
            with lock:
                if state["error"] or state["next"] >= len(lines):
                    break
                line = lines[state["next"]]
                state["next"] += 1
            kind = json.loads(line)["documentType"]
            body = line.encode("utf-8")
            for attempt in range(3):
                try:
                    conn.request("POST", "/network/v1/" + kind, body=body,
                                 headers={"Content-Type": "application/json", "Accept": "application/fhir+json", **AUTH})
                    resp = conn.getresponse()
                    text = resp.read()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    conn.close()
                    if attempt == 2:
                        raise
            if not 200 <= resp.status < 300:
                with lock:
                    state["error"] = "%s: HTTP %d %s" % (line[:120], resp.status, text[:800].decode("utf-8", "replace"))
                break
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return state["error"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the gateway, http://127.0.0.1:PORT")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f if line.strip()]
        t0 = time.perf_counter()
        error = send_all(args.base, lines, args.clients)
        seconds = time.perf_counter() - t0
        if error:
            print("seed.py: refused: " + error, file=sys.stderr)
            return 1
        print("seeded %d documents of %s in %.1f s (%.0f/s)" % (len(lines), path, seconds, len(lines) / seconds),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
