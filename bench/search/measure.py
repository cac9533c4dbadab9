#!/usr/bin/env python3
"""Measures search latencies on a FHIR server holding the benchmark dataset (dataset.py).

  measure.py --base http://127.0.0.1:PORT/fhir --observations N [--patients 100000] [--seed 1]
             [--samples 400] [--seconds 15] [--warmup 20] [--rounds 5] [--page-target 100000]
             [--passes 2] [--clients 4] [--concurrent-seconds 10] [--timeout 10] [--skip a,b]
             [--server-pid PID]

One client, sequential requests on one kept-alive connection. Every query kind below gets
`--samples` measured requests (fewer if it has used up `--seconds`), spread over `--rounds` rounds
in which the kinds take turns, so that a burst of load from elsewhere on the machine touches all
of them alike. The first `--warmup` requests of each kind are not measured. The baseline is a read
by id measured the same way in the same rounds.

  read         GET Patient/<random id>                                    (baseline)
  q1           Observation?subject=Patient/<p>&code=<a code p has>       (p from a random Observation)
  q2_first     Observation?code=72514-3&date=ge2025-01-01&_count=50      first page
  q2_next      the same search, pages reached through the Bundle's next links
  q4_name      Patient?name=<first 3 letters of a family name>
  q4_identifier  Patient?identifier=<INS system>|<INS of a random Patient>
  q4_birthdate Patient?birthdate=ge1960-01-01&birthdate=lt1961-01-01
  q4_chain     Observation?subject:Patient.identifier=<INS of a Patient with Observations>
  q4_has       Patient?_has:Observation:patient:code=<a rare code (0.05 %)>
  q4_sort      Observation?code=72514-3&_sort=-date&_count=50
  q4_subject_sort  Observation?subject=Patient/<p>&_sort=-date&_count=50

Then q3: Observation?code=72514-3&_count=1000 paged through `next` links up to
`--page-target` resources (or to the end), `--passes` times, reported as resources/s.
Then, with `--clients` > 0, read, q1 and q2_first again from that many processes at once for
`--concurrent-seconds` each: requests/s and latency percentiles.

Every request carries `Prefer: handling=strict` (an unknown parameter answers 400 instead of
being ignored); any answer but 200 stops the run. Prints one JSON object on stdout.

A request that takes longer than `--timeout` seconds stops the run with exit status 3 and the
query kind in "timed_out": the server carries on with that search after the client has gone, so
the caller restarts it, then measures again with the kind in `--skip` (q3 and the kinds above are
valid names; "concurrent:<kind>" when only the concurrent run of that kind timed out). `--server-pid` lets the report split the CPU time between server, client and others.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

NEXT_RE = re.compile(rb'"relation":"next","url":"([^"]+)"')
CONCURRENT = ("read", "q1", "q2_first")
HEADERS = {"Accept": "application/fhir+json", "Prefer": "handling=strict"}
if os.environ.get("PASSERELLE_TOKEN"):  # the gateway's access control (bench/lib.sh mints it)
    HEADERS["Authorization"] = "Bearer " + os.environ["PASSERELLE_TOKEN"]


def q(value):
    return urllib.parse.quote(value, safe=":/")


def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(k) - 1]


def summary(latencies_ms):
    s = sorted(latencies_ms)
    if not s:
        return {"count": 0}
    return {"count": len(s), "p50": round(pct(s, 50), 3), "p95": round(pct(s, 95), 3), "p99": round(pct(s, 99), 3),
            "max": round(s[-1], 3), "mean": round(sum(s) / len(s), 3)}


class Client:
    def __init__(self, base, timeout):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.prefix = u.hostname, u.port, u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self.requests = 0

    def get(self, path):
        """GET path (relative to the FHIR base, or an absolute URL from a link) -> (ms, body)."""
        if path.startswith("http"):
            u = urllib.parse.urlsplit(path)
            target = u.path + ("?" + u.query if u.query else "")
        else:
            target = self.prefix + "/" + path
        t0 = time.perf_counter()
        self.conn.request("GET", target, headers=HEADERS)
        resp = self.conn.getresponse()
        body = resp.read()
        ms = (time.perf_counter() - t0) * 1000.0
        self.requests += 1
        if resp.status != 200:
            raise RuntimeError("GET %s answered %d: %s" % (target, resp.status, body[:500].decode("utf-8", "replace")))
        return ms, body


def matches(body):
    return body.count(b'"mode":"match"')


def next_link(body):
    m = NEXT_RE.search(body)
    return m.group(1).decode("utf-8") if m else None


class Sampler:
    """One query kind: `one()` makes one request and returns (ms, matches)."""

    def __init__(self, name, client, make_path, min_matches=0):
        self.name, self.client, self.make_path, self.min_matches = name, client, make_path, min_matches
        self.latencies, self.match_counts, self.short, self.spent, self.example = [], [], 0, 0.0, None

    def one(self):
        path = self.make_path()
        if self.example is None:
            self.example = path
        ms, body = self.client.get(path)
        n = matches(body) if self.name != "read" else 1
        return ms, n

    def record(self, ms, n):
        self.latencies.append(ms)
        self.match_counts.append(n)
        self.spent += ms / 1000.0
        if n < self.min_matches:
            self.short += 1

    def result(self):
        out = summary(self.latencies)
        out["example"] = self.example
        if self.match_counts:
            out["matches_mean"] = round(sum(self.match_counts) / len(self.match_counts), 2)
            out["matches_min"] = min(self.match_counts)
            out["matches_max"] = max(self.match_counts)
        out["fewer_than_expected"] = self.short
        return out


class PagingSampler(Sampler):
    """Pages after the first, reached through next links; restarts from the first page at the end."""

    def __init__(self, name, client, first_path):
        super().__init__(name, client, lambda: first_path, 1)
        self.first_path, self.next = first_path, None
        self.chains = 0

    def one(self):
        if self.next is None:
            _, body = self.client.get(self.first_path)  # not measured: the first page is q2_first
            self.next = next_link(body)
            self.chains += 1
            if self.next is None:
                raise RuntimeError("%s: the first page has no next link" % self.first_path)
        if self.example is None:
            self.example = self.next
        ms, body = self.client.get(self.next)
        self.next = next_link(body)
        return ms, matches(body)

    def result(self):
        out = super().result()
        out["chains_started"] = self.chains
        return out


def make_samplers(client, args, rng):
    seed, nobs, npat = args.seed, args.observations, args.patients
    pain = q(dataset.LOINC + "|" + dataset.PAIN_CODE)

    def random_obs():
        return rng.randint(1, nobs)

    def read():
        return "Patient/" + dataset.patient_id(rng.randint(1, npat))

    def q1():
        patient, ci, _, _, _ = dataset.observation_facts(seed, random_obs(), npat)
        return "Observation?subject=Patient/%s&code=%s" % (
            dataset.patient_id(patient), q(dataset.LOINC + "|" + dataset.LOINC_CODES[ci][0]))

    def name():
        f = dataset.patient_facts(seed, rng.randint(1, npat))
        return "Patient?name=" + q(f["family"][:3])

    def identifier():
        f = dataset.patient_facts(seed, rng.randint(1, npat))
        return "Patient?identifier=" + q(dataset.INS_SYSTEM + "|" + f["ins"])

    def chain():
        patient = dataset.observation_facts(seed, random_obs(), npat)[0]
        f = dataset.patient_facts(seed, patient)
        return "Observation?subject:Patient.identifier=" + q(dataset.INS_SYSTEM + "|" + f["ins"])

    def subject_sort():
        patient = dataset.observation_facts(seed, random_obs(), npat)[0]
        return "Observation?subject=Patient/%s&_sort=-date&_count=50" % dataset.patient_id(patient)

    q2 = "Observation?code=%s&date=ge2025-01-01&_count=50" % pain
    return [
        Sampler("read", client, read, 1),
        Sampler("q1", client, q1, 1),
        Sampler("q2_first", client, lambda: q2, 1),
        PagingSampler("q2_next", client, q2),
        Sampler("q4_name", client, name, 1),
        Sampler("q4_identifier", client, identifier, 1),
        Sampler("q4_birthdate", client, lambda: "Patient?birthdate=ge1960-01-01&birthdate=lt1961-01-01", 1),
        Sampler("q4_chain", client, chain, 1),
        Sampler("q4_has", client,
                lambda: "Patient?_has:Observation:patient:code=" + q(dataset.LOINC + "|" + dataset.RARE_CODE),
                1 if nobs * dataset.CODE_SHARE[dataset.RARE_CODE] >= 20 else 0),
        Sampler("q4_sort", client, lambda: "Observation?code=%s&_sort=-date&_count=50" % pain, 1),
        Sampler("q4_subject_sort", client, subject_sort, 1),
    ]


class TimedOut(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


def guarded(name, fn, *a):
    try:
        return fn(*a)
    except (TimeoutError, OSError) as e:
        if isinstance(e, TimeoutError) or "timed out" in str(e):
            raise TimedOut(name)
        raise


def run_rounds(samplers, args):
    for s in samplers:  # warm-up, not measured
        t_end = time.perf_counter() + args.seconds / 4.0
        for _ in range(args.warmup):
            guarded(s.name, s.one)
            if time.perf_counter() > t_end:
                break
    per_round = max(1, args.samples // args.rounds)
    for r in range(args.rounds):
        for s in samplers:
            budget = args.seconds / args.rounds
            t0 = time.perf_counter()
            target = per_round if r < args.rounds - 1 else args.samples - len(s.latencies)
            for _ in range(max(1, target)):
                s.record(*guarded(s.name, s.one))
                if time.perf_counter() - t0 > budget:
                    break


def page_through(client, path, target):
    """Follows next links from `path` until `target` resources or the end: (resources, seconds, page ms)."""
    got, pages, spent = 0, [], 0.0
    url = path
    while url and got < target:
        ms, body = guarded("q3", client.get, url)
        pages.append(ms)
        spent += ms / 1000.0
        got += matches(body)
        url = next_link(body)
    return got, spent, pages


def _concurrent_worker(job):
    name, args, worker = job
    client = Client(args.base, args.timeout)
    rng = random.Random((args.seed * 7919 + worker) * 31 + CONCURRENT.index(name))
    sampler = [s for s in make_samplers(client, args, rng) if s.name == name][0]
    try:
        for _ in range(min(args.warmup, 10)):
            guarded(name, sampler.one)
        t_end = time.perf_counter() + args.concurrent_seconds
        while time.perf_counter() < t_end:
            sampler.record(*guarded(name, sampler.one))
    except TimedOut:
        return None
    return sampler.latencies


def cpu_ticks(pid):
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    busy = int(cpu[1]) + int(cpu[2]) + int(cpu[3]) + int(cpu[8])  # user nice system steal
    server = 0
    if pid:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        server = int(fields[11]) + int(fields[12])
    t = os.times()
    return time.monotonic(), busy, server, t.user + t.system + t.children_user + t.children_system


def cores_used(a, b):
    hz = os.sysconf("SC_CLK_TCK")
    wall = max(1e-6, b[0] - a[0])
    total = (b[1] - a[1]) / hz / wall
    server = (b[2] - a[2]) / hz / wall
    client = (b[3] - a[3]) / wall
    return {"seconds": round(wall, 1), "all": round(total, 2), "server": round(server, 2), "client": round(client, 2),
            "others": round(max(0.0, total - server - client), 2)}


def measure(args, out, skip):
    client = Client(args.base, args.timeout)
    rng = random.Random(args.seed * 1000003 + args.observations)

    c0 = cpu_ticks(args.server_pid)
    samplers = [s for s in make_samplers(client, args, rng) if s.name not in skip]
    run_rounds(samplers, args)
    c1 = cpu_ticks(args.server_pid)
    out["queries"] = {s.name: s.result() for s in samplers}
    out["cpu_queries"] = cores_used(c0, c1)

    if "q3" not in skip:
        pain = q(dataset.LOINC + "|" + dataset.PAIN_CODE)
        q3 = "Observation?code=%s&_count=1000" % pain
        passes = []
        page_ms = []
        for _ in range(args.passes):
            got, spent, pages = page_through(client, q3, args.page_target)
            passes.append({"resources": got, "pages": len(pages), "seconds": round(spent, 3),
                           "rate": round(got / spent, 1) if spent else None})
            page_ms += pages
        c2 = cpu_ticks(args.server_pid)
        total = sum(p["resources"] for p in passes)
        seconds = sum(p["seconds"] for p in passes)
        out["q3"] = {"example": q3, "passes": passes, "rate": round(total / seconds, 1) if seconds else None,
                     "page_ms": summary(page_ms), "cpu": cores_used(c1, c2)}

    if args.clients > 0:
        conc = {}
        for name in CONCURRENT:
            if name in skip or "concurrent:" + name in skip:
                continue
            ca = cpu_ticks(args.server_pid)
            with multiprocessing.Pool(args.clients) as pool:
                lats = pool.map(_concurrent_worker, [(name, args, w) for w in range(args.clients)])
            cb = cpu_ticks(args.server_pid)
            if any(x is None for x in lats):
                raise TimedOut("concurrent:" + name)  # measured again without this concurrent run only
            flat = [x for ls in lats for x in ls]
            res = summary(flat)
            res["rps"] = round(len(flat) / args.concurrent_seconds, 1)
            res["cpu"] = cores_used(ca, cb)
            conc[name] = res
        out["concurrent"] = {"clients": args.clients, "queries": conc}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--observations", type=int, required=True)
    ap.add_argument("--patients", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--page-target", type=int, default=100000)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--concurrent-seconds", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--skip", default="")
    ap.add_argument("--server-pid", type=int, default=0)
    args = ap.parse_args()

    skip = set(x for x in args.skip.split(",") if x)
    if "q2_first" in skip:
        skip.add("q2_next")  # its chains start from the first page
    out = {"observations": args.observations, "patients": args.patients, "seed": args.seed,
           "settings": {k: getattr(args, k) for k in ("samples", "seconds", "warmup", "rounds", "page_target",
                                                      "passes", "clients", "concurrent_seconds", "timeout")},
           "skipped": sorted(skip)}
    try:
        measure(args, out, skip)
    except TimedOut as t:
        # The server goes on with the search after the client has gone: the caller restarts it and
        # measures again without this query.
        out["timed_out"] = t.name
        print(json.dumps(out))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
