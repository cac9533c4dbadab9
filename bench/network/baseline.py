#!/usr/bin/env python3
"""The baseline of the CIED benchmark: for every CIED, the FHIR transaction Bundle the gateway stores
for it, to be posted as is to POST /fhir.

  baseline.py convert --docs DIR --bin PASSERELLE [--today 2026-11-23] [--jobs 2]
  baseline.py finish  --docs DIR --base http://127.0.0.1:PORT --out raw.bodies

`convert` runs `passerelle convert --from network --to fhir` on each line of DIR/cied.jsonl and keeps
the Bundles in DIR/fhir/ (one file a patient; files already there are kept, so that a second run
with the same binary and documents is quick). `convert` works offline, so its Bundle lacks what
the gateway derives from the stored dossier when it receives the document
(gateway/network/network_service.cpp, `effects`).

`finish` reads those from a gateway holding the seeded patients (their Patient and EpisodeOfCare
ids) and completes each Bundle the way the gateway does:
  - Encounter: the planned-duration extension (60 min, the default) and `episodeOfCare`;
  - Composition: the report as the section's XHTML narrative;
  - Goal: the target (the VAS less the 50 % reduction of the rules);
  - List: the document-sha256 extension (SHA-256 of the document's sorted compact JSON);
  - the CIED fee ChargeItem (CIED-3C, 3 x 23 EUR, identifier CIED/<Patient id>), created if none
    has its identifier yet.
It writes the Bundles, compact, as request bodies (length line, then the bytes) in patient order.
bench/network/compare.py checks that both paths store the same resources.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import subprocess
import sys
import urllib.parse

# Authorization: Bearer $PASSERELLE_TOKEN for the gateway's access control (bench/lib.sh mints it).
AUTH = {"Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]} if os.environ.get("PASSERELLE_TOKEN") else {}

SD = "https://douleur77.fr/fhir/StructureDefinition/"
CS = "https://douleur77.fr/fhir/CodeSystem/"
NETWORK_ID_SYSTEM = "https://douleur77.fr/fhir/sid/patient"
PLANNED_CIED_MINUTES = 60
GOAL_REDUCTION_PERCENT = 50.0
C_VALUE_EUR = 23.0
FEE_SYSTEM = "https://douleur77.fr/fhir/sid/fee"
CIED_COEFFICIENT = 3.0


def convert(args):
    docs = os.path.join(args.docs, "cied.jsonl")
    out_dir = os.path.join(args.docs, "fhir")
    os.makedirs(out_dir, exist_ok=True)
    with open(docs, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]

    def one(i):
        path = os.path.join(out_dir, "%06d.json" % i)
        if os.path.exists(path):
            return None
        r = subprocess.run([args.bin, "convert", "--from", "network", "--to", "fhir", "--today", args.today, "-"],
                           input=lines[i].encode("utf-8"), capture_output=True)
        if r.returncode != 0:
            return "patient %d: %s" % (i, r.stderr.decode("utf-8", "replace")[:800])
        bundle = json.loads(r.stdout)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(bundle, f, ensure_ascii=False, separators=(",", ":"))
        os.replace(path + ".tmp", path)
        return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for error in pool.map(one, range(len(lines))):
            if error:
                print("baseline.py: convert failed: " + error, file=sys.stderr)
                return 1
    return 0


def get_json(conn, path):
    conn.request("GET", path, headers={"Accept": "application/fhir+json", **AUTH})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit("baseline.py: GET %s: HTTP %d %s" % (path, resp.status, body[:400]))
    return json.loads(body)


def seeded_ids(base):
    """{networkId: (Patient id, EpisodeOfCare id)} of the gateway's D77 episodes."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    path = "/fhir/EpisodeOfCare?type=" + urllib.parse.quote(CS + "d77-programme|D77", safe="") + \
           "&_include=EpisodeOfCare:patient&_count=1000"
    episodes, network_ids = {}, {}
    while path:
        bundle = get_json(conn, path)
        for e in bundle.get("entry", []):
            r = e["resource"]
            if r["resourceType"] == "EpisodeOfCare":
                episodes[r["patient"]["reference"].split("/", 1)[1]] = r["id"]
            elif r["resourceType"] == "Patient":
                for ident in r.get("identifier", []):
                    if ident.get("system") == NETWORK_ID_SYSTEM:
                        network_ids[r["id"]] = ident["value"]
        path = None
        for link in bundle.get("link", []):
            if link.get("relation") == "next":
                n = urllib.parse.urlsplit(link["url"])
                path = n.path + ("?" + n.query if n.query else "")
    conn.close()
    return {network_ids[p]: (p, e) for p, e in episodes.items() if p in network_ids}


def xml_escape(text):
    """As the gateway escapes the report text (`<`, `>`, `&` only)."""
    return "".join({"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(c, c) for c in text)


def search_escape(value):
    """A token value in a query string: | , $ and \\ escaped with \\, then percent-encoded as needed."""
    out = []
    for c in value:
        if c in "|,$\\":
            out.append("%5C")
        if c == "|":
            out.append("%7C")
        elif c in "%&#+ ":
            out.append("%%%02X" % ord(c))
        else:
            out.append(c)
    return "".join(out)


def set_extension(resource, url, key, value):
    ext = resource.setdefault("extension", [])
    for e in ext:
        if e.get("url") == url:
            e[key] = value
            return
    ext.append({"url": url, key: value})


def finish_bundle(bundle, doc, patient_id, episode_id):
    doc_hash = hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                              .encode("utf-8")).hexdigest()
    for entry in bundle["entry"]:
        r = entry["resource"]
        kind = r["resourceType"]
        if kind == "Encounter":
            set_extension(r, SD + "planned-duration", "valueDuration", {"value": PLANNED_CIED_MINUTES})
            r["episodeOfCare"] = [{"reference": "EpisodeOfCare/" + episode_id}]
        elif kind == "Composition":
            # the narrative the gateway derives from the report's text (convert leaves it out)
            r["section"][0]["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>' +
                                       xml_escape(doc["report"]["text"]) + "</p></div>"}
        elif kind == "Goal":
            vas = doc["measures"]["vas"]["value"]
            r["target"][0]["detailQuantity"]["value"] = vas * (100.0 - GOAL_REDUCTION_PERCENT) / 100.0
        elif kind == "List":
            set_extension(r, SD + "document-sha256", "valueString", doc_hash)
    gp = doc["gp"]
    gp_key = next(k for k in ("rpps", "adeli") if k in gp)
    fee_id = "CIED/" + patient_id
    fee = {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": {"coding": [{"system": CS + "d77-fee", "code": "CIED-3C"}]},
        "subject": {"reference": "Patient/" + patient_id},
        "occurrenceDateTime": doc["date"],
        "priceOverride": {"value": CIED_COEFFICIENT * C_VALUE_EUR, "currency": "EUR"},
        "extension": [{"url": SD + "fee-key-letter", "valueString": "C"},
                      {"url": SD + "fee-coefficient", "valueDecimal": CIED_COEFFICIENT},
                      {"url": SD + "fee-status", "valueCode": "accrued"}],
        "performer": [{"actor": {"reference": "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|%s:%s"
                                              % (gp_key, gp[gp_key])}}],
        "identifier": [{"system": FEE_SYSTEM, "value": fee_id}],
    }
    bundle["entry"].append({"resource": fee, "request": {
        "method": "POST", "url": "ChargeItem", "ifNoneExist": "identifier=%s|%s" % (FEE_SYSTEM, search_escape(fee_id))}})
    return bundle


def finish(args):
    ids = seeded_ids(args.base)
    with open(os.path.join(args.docs, "cied.jsonl"), encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    with open(args.out, "wb") as out:
        for i, doc in enumerate(docs):
            network_id = doc["patient"]["networkId"]
            if network_id not in ids:
                print("baseline.py: patient %s has no D77 EpisodeOfCare in the gateway" % network_id, file=sys.stderr)
                return 1
            with open(os.path.join(args.docs, "fhir", "%06d.json" % i), encoding="utf-8") as f:
                bundle = json.load(f)
            body = json.dumps(finish_bundle(bundle, doc, *ids[network_id]), ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8")
            out.write(b"%d\n" % len(body))
            out.write(body)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--docs", required=True)
    c.add_argument("--bin", required=True)
    c.add_argument("--today", default="2026-11-23")
    c.add_argument("--jobs", type=int, default=2)
    f = sub.add_parser("finish")
    f.add_argument("--docs", required=True)
    f.add_argument("--base", required=True)
    f.add_argument("--out", required=True)
    args = ap.parse_args()
    return convert(args) if args.command == "convert" else finish(args)


if __name__ == "__main__":
    sys.exit(main())
