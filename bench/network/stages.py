#!/usr/bin/env python3
"""Where the gateway's CPU goes, from a `perf script` of a profile taken with call graphs
(`perf record --call-graph dwarf -p PID`; run.sh does it with NET_PERF=1).

  perf script -i perf.data | stages.py

Each sample is counted once, by its thread (the store's writer thread, the HTTP request threads,
the others) and, on the request threads, by the stage of the network document it belongs to (the
frame under NetworkService::Impl::submit, and under gather), and for SQLite and system time.
Percentages are of all samples: multiply by the server's CPU (cores) and divide by the documents/s
to get milliseconds of CPU per document.
"""

import collections
import re
import sys

STAGES = [  # (label, frame under which a sample counts), first match wins, checked on request threads
    ("network: gather (dossier searches and reads for the rules)", "NetworkService::Impl::gather"),
    ("network: FHIR transaction handed over (parse, validate, wait for the writer)", "FhirService::handle"),
    ("network: duplicate check (List search)", "NetworkService::Impl::find"),
    ("network: mapping (toEntries)", "MappingSet::toEntries"),
    ("network: schema check", "DocumentSchemas::validate"),
    ("network: XML form to JSON", "xmlToJson"),
    ("network: JSON parse of the document", "parseJson"),
    ("network: rules and derived values", "checkRules"),
    ("network: other (bundle built, dumps...)", "NetworkService::Impl::submit"),
]
REST = [  # on the request threads, outside the network API
    ("FHIR REST: transaction request (parse, validate, wait for the writer)", "FhirService::handle"),
    ("HTTP front (read, write)", "FrontHandler::handleRequest"),
]
WRITER = [  # on the writer thread
    ("writer: transaction entries (resolve, insert, index rows)", "transactionIn"),
    ("writer: commit (WAL writes, fsync, checkpoint)", "runBatch"),
]


def frames_of(lines):
    out = []
    for line in lines:
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            continue
        sym = re.sub(r"\s*\([^()]*\)\s*$", "", parts[1])
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        out.append(sym.replace("passerelle::", "").replace("(anonymous namespace)::", ""))
    return out


def samples(stream):
    cur = None
    for line in stream:
        if not line.strip():
            if cur is not None:
                yield frames_of(cur)
            cur = None
        elif not line.startswith((" ", "\t")):
            cur = []
        elif cur is not None:
            cur.append(line)
    if cur:
        yield frames_of(cur)


def main():
    counts = collections.Counter()
    sqlite = collections.Counter()
    kernel = collections.Counter()
    total = 0
    for frames in samples(sys.stdin):
        total += 1
        has = lambda name: any(name in f for f in frames)  # noqa: E731
        thread = "writer" if has("runBatch") else "request" if has("FrontHandler::handleRequest") else "other"
        label = "other threads (checkpointer, sweep, accept...)"
        if thread == "writer":
            stages = WRITER
        elif thread == "request":
            stages = STAGES if has("NetworkService::Impl::submit") else REST
        else:
            stages = []
        for name, anchor in stages:
            if has(anchor):
                label = name
                break
        if thread == "request" and label.startswith("network: gather"):
            in_store = has("SqliteResourceStore::search") or has("SqliteResourceStore::read")
            label += ": store searches and reads" if in_store else ": the rest"
        counts[label] += 1
        leaf = frames[0] if frames else ""
        if "sqlite3" in leaf or any("libsqlite3" in f for f in frames[:1]) or has("sqlite3_step"):
            sqlite[thread] += 1
        if has("exc_page_fault"):
            kernel[thread + ": page faults"] += 1
        if has("entry_SYSCALL_64"):
            kernel[thread + ": system calls"] += 1
    if not total:
        sys.exit("stages.py: no samples on stdin (perf script output expected)")
    print("%d samples" % total)
    print()
    print("| where | share of the server's CPU |")
    print("|---|---:|")
    for label, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print("| %s | %.1f %% |" % (label, 100.0 * n / total))
    print()
    print("| of which | share |")
    print("|---|---:|")
    for thread, n in sqlite.most_common():
        if thread not in ("writer", "request"):
            continue
        print("| in SQLite (sqlite3_step...), %s | %.1f %% |" % (
            {"writer": "writer thread", "request": "request threads"}.get(thread, thread), 100.0 * n / total))
    for label, n in kernel.most_common():
        print("| %s | %.1f %% |" % (label, 100.0 * n / total))


if __name__ == "__main__":
    main()
