#!/usr/bin/env python3
"""Crash harness: proves that nothing the gateway acknowledged is lost when its process dies.

Runs the real `passerelle` binary on a fresh data folder under concurrent writes (REST creates,
transaction Bundles and network documents, each carrying an identifier of its own), kills it with
SIGKILL at random moments (`--kills` times), restarts it each time, then checks:

  - every write answered 2xx is there: read by id with the version it was given, and found through
    its search rows (by identifier);
  - no write answered with an error status is there;
  - a write whose answer was lost with the process is either whole (read and search agree) or absent;
  - `PRAGMA integrity_check` is ok on both databases (resources, audit trail);
  - `passerelle audit verify` passes;
  - every acknowledged request has its audit record (naming what it wrote).

With `--disk-full` it then fills the file system under the data folder (a small tmpfs it mounts,
as root; without root it says so and skips that part): writes must be refused with 507 or 503,
nothing acknowledged may be lost, and the service must resume once the space is back.

Exit status 0 when every check passes, 1 otherwise (each failure is printed). A short run is part
of the test command (tests/CMakeLists.txt: 10 kills); the full one (100 kills) is run by hand:

    tests/crash/crash_harness.py --binary build/bin/passerelle --kills 100

Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"  # the INS test namespace: never a real patient
MARKER_SYSTEM = "urn:passerelle:crash-harness"
DOCUMENT_SYSTEM = "https://douleur77.fr/fhir/sid/network-document"
RPPS = "https://rpps.esante.gouv.fr"


def log(*args):
    print("[crash %s]" % time.strftime("%H:%M:%S"), *args, flush=True)


class Gateway:
    """The gateway process on a data folder; restarted on the same folder after each kill."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.proc = None
        self.port = None
        self.token = None
        self.starts = 0

    def env(self):
        return {k: v for k, v in os.environ.items() if not k.startswith("PASSERELLE_")}

    def start(self):
        out = open(os.path.join(self.data_dir, "..", "gateway-%d.out" % self.starts), "w")
        err = open(os.path.join(self.data_dir, "..", "gateway-%d.err" % self.starts), "w")
        self.starts += 1
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", "/dev/null", "--set", "http.port=0", "--set", "https.enabled=false",
             "--set", "data.dir=" + self.data_dir, "--set", "log.level=warn",
             "--set", "network.sweep_interval_seconds=0", "--set", "network.today=2026-03-01"],
            stdout=out, stderr=err, env=self.env())
        deadline = time.time() + 60
        path = out.name
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the gateway exited at start (status %s); see %s" % (self.proc.returncode, err.name))
            with open(path) as f:
                m = re.search(r"http=127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("the gateway did not listen within 60 s")
        if self.token is None:
            self.token = subprocess.check_output(
                [self.binary, "token", "issue", "--config", "/dev/null", "--set", "data.dir=" + self.data_dir,
                 "--role", "system", "--scope", "system/*.cruds", "--ttl", "86400"], env=self.env()).decode().strip()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -1


class Client:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, gw):
        self.gw = gw
        self.conn = None
        self.port = None

    def request(self, method, path, body=None, content_type="application/fhir+json"):
        if self.conn is None or self.port != self.gw.port:
            self.port = self.gw.port
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": "Bearer " + self.gw.token, "Accept": "application/fhir+json"}
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else body
            headers["Content-Type"] = content_type
        try:
            self.conn.request(method, path, body=data, headers=headers)
            r = self.conn.getresponse()
            text = r.read()
            return r.status, text
        except (OSError, http.client.HTTPException):
            try:
                self.conn.close()
            finally:
                self.conn = None
            raise


class Ledger:
    """What each write was answered: acknowledged (with what it wrote), refused, or unknown."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = []    # {"kind", "marker", "wrote": [(type, id, version)], "documentId"?, "rpps"?}
        self.refused = []  # {"kind", "marker", "status"}
        self.unknown = []  # {"kind", "marker"}

    def add(self, bucket, entry):
        with self.lock:
            getattr(self, bucket).append(entry)


def marker_identifier(marker):
    return [{"system": MARKER_SYSTEM, "value": marker}]


def patient(marker):
    return {"resourceType": "Patient", "identifier": marker_identifier(marker) + [{"system": INS_TEST, "value": marker[-13:]}],
            "name": [{"family": "Crash", "given": [marker]}], "birthDate": "1970-01-01"}


def observation(marker, patient_ref):
    return {"resourceType": "Observation", "status": "final", "identifier": marker_identifier(marker),
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": patient_ref}, "effectiveDateTime": "2026-02-01",
            "valueQuantity": {"value": 4, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"}}


def professional_document(n, run):
    rpps = "9%010d" % ((run % 9000) * 1000000 + n % 1000000)
    return rpps, {
        "documentType": "professional", "schemaVersion": "1.0", "documentId": "CRASH-%d-PRO-%d" % (run, n),
        "professional": {"rpps": rpps, "family": "CRASH", "given": ["Test"], "category": "gp", "specialty": "SM54", "level": 1},
        "membership": {"signatureDate": "2026-01-15", "status": "active"}}


def located(bundle_text):
    """(type, id, version) of each entry of a transaction-response."""
    out = []
    for e in json.loads(bundle_text).get("entry", []):
        loc = e.get("response", {}).get("location", "")
        m = re.match(r"^([A-Za-z]+)/([^/]+)/_history/(\d+)$", loc)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


class Load:
    """Writer threads sending creates, transactions and network documents until stopped."""

    def __init__(self, gw, ledger, threads, run):
        self.gw = gw
        self.ledger = ledger
        self.threads = threads
        self.run_id = run
        self.stop_flag = threading.Event()
        self.counter = 0
        self.counter_lock = threading.Lock()
        self.workers = []

    def next_n(self):
        with self.counter_lock:
            self.counter += 1
            return self.counter

    def start(self):
        for i in range(self.threads):
            t = threading.Thread(target=self.work, args=(i,), daemon=True)
            t.start()
            self.workers.append(t)

    def stop(self):
        self.stop_flag.set()
        for t in self.workers:
            t.join()

    def work(self, index):
        client = Client(self.gw)
        rng = random.Random(index * 7919 + self.run_id)
        while not self.stop_flag.is_set():
            n = self.next_n()
            marker = "crash-%d-%07d" % (self.run_id, n)
            kind = rng.choice(["create", "create", "transaction", "network"])
            try:
                if kind == "create":
                    status, text = client.request("POST", "/fhir/Patient", json.dumps(patient(marker)))
                    if 200 <= status < 300:
                        body = json.loads(text)
                        self.ledger.add("acked", {"kind": kind, "marker": marker,
                                                  "wrote": [("Patient", body["id"], int(body["meta"]["versionId"]))]})
                    else:
                        self.ledger.add("refused", {"kind": kind, "marker": marker, "status": status})
                elif kind == "transaction":
                    full_url = "urn:uuid:" + str(uuid.uuid4())
                    entries = [{"fullUrl": full_url, "resource": patient(marker), "request": {"method": "POST", "url": "Patient"}}]
                    for k in range(rng.randint(2, 8)):
                        entries.append({"resource": observation("%s-o%d" % (marker, k), full_url),
                                        "request": {"method": "POST", "url": "Observation"}})
                    status, text = client.request("POST", "/fhir", json.dumps(
                        {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
                    if 200 <= status < 300:
                        self.ledger.add("acked", {"kind": kind, "marker": marker, "wrote": located(text),
                                                  "observations": len(entries) - 1})
                    else:
                        self.ledger.add("refused", {"kind": kind, "marker": marker, "status": status})
                else:
                    rpps, doc = professional_document(n, self.run_id)
                    status, text = client.request("POST", "/network/v1/professional", json.dumps(doc), "application/json")
                    entry = {"kind": kind, "marker": marker, "documentId": doc["documentId"], "rpps": rpps}
                    if 200 <= status < 300:
                        entry["wrote"] = located(text)
                        self.ledger.add("acked", entry)
                    else:
                        entry["status"] = status
                        self.ledger.add("refused", entry)
            except (OSError, http.client.HTTPException, ValueError):
                entry = {"kind": kind, "marker": marker}
                if kind == "network":
                    rpps, doc = professional_document(n, self.run_id)
                    entry.update({"documentId": doc["documentId"], "rpps": rpps})
                self.ledger.add("unknown", entry)
                time.sleep(0.02)


class Checker:
    def __init__(self, gw):
        self.gw = gw
        self.local = threading.local()
        self.lock = threading.Lock()
        self.failures = []

    def fail(self, what):
        with self.lock:
            self.failures.append(what)
            if len(self.failures) <= 30:
                log("FAIL:", what)

    def each(self, items, check, threads=4):
        """Runs check(item) over items on a few threads (one connection each)."""
        it = iter(list(items))
        lock = threading.Lock()

        def run():
            while True:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                check(item)
        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def get(self, path):
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.gw)
        for _ in range(3):
            try:
                status, text = self.local.client.request("GET", path)
                return status, json.loads(text) if text else None
            except (OSError, http.client.HTTPException):
                time.sleep(0.2)
        raise RuntimeError("the gateway does not answer GET " + path)

    def count(self, type_, system, value):
        status, body = self.get("/fhir/%s?identifier=%s|%s&_total=accurate&_count=10" % (type_, system, value))
        if status != 200:
            self.fail("search %s %s|%s answered %s" % (type_, system, value, status))
            return -1
        return body.get("total", len(body.get("entry", [])))

    def present(self, entry):
        """How many of the write's resources the search rows find (0: none, -1: a partial write)."""
        if entry["kind"] == "network":
            lists = self.count("List", DOCUMENT_SYSTEM, entry["documentId"])
            practitioners = self.count("Practitioner", RPPS, entry["rpps"])
            return lists if lists == practitioners else -1
        patients = self.count("Patient", MARKER_SYSTEM, entry["marker"])
        if entry["kind"] == "transaction" and patients:
            status, body = self.get("/fhir/Observation?identifier=%s|%s-o0&_total=accurate" % (MARKER_SYSTEM, entry["marker"]))
            if status != 200 or body.get("total") != 1:
                return -1
        return patients

    def check_acked(self, entry):
        for type_, id_, version in entry.get("wrote", []):
            status, body = self.get("/fhir/%s/%s" % (type_, id_))
            if status != 200:
                self.fail("%s %s: acknowledged %s/%s is answered %s" % (entry["kind"], entry["marker"], type_, id_, status))
            elif int(body["meta"]["versionId"]) != version:
                self.fail("%s/%s: acknowledged version %d, stored %s" % (type_, id_, version, body["meta"]["versionId"]))
        if self.present(entry) != 1:
            self.fail("%s %s: acknowledged, but its search rows do not find it once" % (entry["kind"], entry["marker"]))
        if entry["kind"] == "transaction":
            status, body = self.get("/fhir/Observation?subject:Patient.identifier=%s|%s&_total=accurate" % (MARKER_SYSTEM, entry["marker"]))
            if status != 200 or body.get("total") != entry["observations"]:
                self.fail("transaction %s: %s of its %d Observations found by the patient's chain" %
                          (entry["marker"], body.get("total") if body else status, entry["observations"]))


def integrity(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def audited_resources(audit_db):
    """Every "Type/id" named by a granted record of the trail."""
    db = sqlite3.connect(audit_db)
    named = set()
    try:
        for (text,) in db.execute("SELECT record FROM audit_record WHERE outcome = 'granted'"):
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            named.update(re.findall(r"(?:Patient|Observation|List|Practitioner|PractitionerRole)/[0-9a-f-]{36}", text))
    finally:
        db.close()
    return named


def final_checks(gw, ledger, checker, binary, data_dir):
    log("checking %d acknowledged, %d refused, %d unknown writes" % (len(ledger.acked), len(ledger.refused), len(ledger.unknown)))
    checker.each(ledger.acked, checker.check_acked)

    def check_refused(e):
        if e.get("status") not in (503, 507):
            checker.fail("%s %s: refused with %s (only 503 or 507 are expected)" % (e["kind"], e["marker"], e.get("status")))
        if checker.present(e) != 0:
            checker.fail("%s %s: answered %s but stored" % (e["kind"], e["marker"], e.get("status")))
    checker.each(ledger.refused, check_refused)

    def check_unknown(e):
        if checker.present(e) == -1:
            checker.fail("%s %s: its answer was lost and it is stored in part" % (e["kind"], e["marker"]))
    checker.each(ledger.unknown, check_unknown)
    rc = gw.stop()
    if rc != 0:
        checker.fail("the gateway exited with %s on SIGTERM" % rc)
    for name in ("passerelle.db", "audit.db"):
        result = integrity(os.path.join(data_dir, name))
        if result != "ok":
            checker.fail("integrity_check of %s: %s" % (name, result))
    verify = subprocess.run([binary, "audit", "verify", "--config", "/dev/null", "--set", "data.dir=" + data_dir],
                            capture_output=True, text=True, env=gw.env())
    log("audit verify:", (verify.stdout + verify.stderr).strip().splitlines()[-1] if (verify.stdout + verify.stderr).strip() else "")
    if verify.returncode != 0:
        checker.fail("passerelle audit verify: " + (verify.stdout + verify.stderr).strip())
    named = audited_resources(os.path.join(data_dir, "audit.db"))
    missing = 0
    for e in ledger.acked:
        wrote = e.get("wrote", [])
        if not wrote or not any("%s/%s" % (t, i) in named for t, i, _ in wrote):
            missing += 1
            if missing <= 10:
                checker.fail("%s %s: acknowledged without an audit record naming what it wrote" % (e["kind"], e["marker"]))
    if missing > 10:
        checker.fail("%d acknowledged writes without their audit record" % missing)


def crash_run(args, work):
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir)
    gw = Gateway(args.binary, data_dir)
    gw.start()
    ledger = Ledger()
    load = Load(gw, ledger, args.threads, random.randrange(1, 1 << 20))
    load.start()
    rng = random.Random(args.seed)
    started = time.time()
    for k in range(args.kills):
        time.sleep(rng.uniform(args.min_interval, args.max_interval))
        gw.kill()
        gw.start()
        if (k + 1) % 10 == 0 or k + 1 == args.kills:
            log("%d kills, %d acknowledged writes so far" % (k + 1, len(ledger.acked)))
    time.sleep(0.5)
    load.stop()
    log("%d kills in %.0f s; %d writes acknowledged, %d refused, %d lost with the process" %
        (args.kills, time.time() - started, len(ledger.acked), len(ledger.refused), len(ledger.unknown)))
    checker = Checker(gw)
    final_checks(gw, ledger, checker, args.binary, data_dir)
    return checker.failures, ledger


def disk_full_run(args, work):
    if os.geteuid() != 0:
        print("[  SKIPPED ] disk full: needs root to mount a small tmpfs", flush=True)
        return [], None
    mount = os.path.join(work, "small")
    os.makedirs(mount)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % args.disk_mb, "tmpfs", mount]).returncode != 0:
        print("[  SKIPPED ] disk full: cannot mount a tmpfs here", flush=True)
        return [], None
    try:
        data_dir = os.path.join(mount, "data")
        os.makedirs(data_dir)
        gw = Gateway(args.binary, data_dir)
        gw.start()
        ledger = Ledger()
        load = Load(gw, ledger, 4, random.randrange(1, 1 << 20))
        load.start()
        time.sleep(1.0)
        # Fill what is left but a little, then watch the writes be refused.
        filler = os.path.join(mount, "filler")
        # Unbuffered: a buffered file would try to flush its last chunk on close and fail there.
        with open(filler, "wb", buffering=0) as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
        deadline = time.time() + 20
        while time.time() < deadline and not any(e.get("status") in (503, 507) for e in ledger.refused):
            time.sleep(0.2)
        full_refusals = [e for e in ledger.refused if e.get("status") in (503, 507)]
        other = [e for e in ledger.refused if e.get("status") not in (503, 507)]
        log("disk full: %d writes refused with 503/507, %d otherwise" % (len(full_refusals), len(other)))
        failures = []
        if not full_refusals:
            failures.append("the disk filled up but no write was refused with 507 or 503")
        for e in other[:5]:
            failures.append("disk full: a write was answered %s" % e.get("status"))
        time.sleep(1.0)
        os.remove(filler)
        acked_before = len(ledger.acked)
        deadline = time.time() + 30
        while time.time() < deadline and len(ledger.acked) < acked_before + 20:
            time.sleep(0.2)
        resumed = len(ledger.acked) - acked_before
        log("space back: %d writes acknowledged since" % resumed)
        if resumed < 20:
            failures.append("the service did not resume once the space was back (%d writes acknowledged)" % resumed)
        load.stop()
        checker = Checker(gw)
        final_checks(gw, ledger, checker, args.binary, data_dir)
        return failures + checker.failures, ledger
    finally:
        subprocess.run(["umount", "-l", mount])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--threads", type=int, default=6)
    p.add_argument("--min-interval", type=float, default=0.2, help="shortest run between two kills (s)")
    p.add_argument("--max-interval", type=float, default=1.0, help="longest run between two kills (s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--disk-full", action="store_true", help="also fill the disk (root: a small tmpfs)")
    p.add_argument("--disk-mb", type=int, default=64)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="passerelle-crash-")
    log("work folder", work)
    failures = []
    try:
        f, ledger = crash_run(args, work)
        failures += f
        summary = {"kills": args.kills, "acknowledged": len(ledger.acked), "refused": len(ledger.refused),
                   "lost_with_process": len(ledger.unknown), "failures": len(f)}
        if args.disk_full:
            f2, ledger2 = disk_full_run(args, work)
            failures += f2
            if ledger2:
                summary["disk_full"] = {"acknowledged": len(ledger2.acked), "refused": len(ledger2.refused), "failures": len(f2)}
        if args.json:
            with open(args.json, "w") as out:
                json.dump(summary, out, indent=1)
    finally:
        if args.keep or failures:
            log("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failures:
        log("%d checks failed" % len(failures))
        return 1
    log("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
