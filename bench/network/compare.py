#!/usr/bin/env python3
"""Checks that the baseline stores what the network API stores: for each patient named, reads every
resource whose subject is the patient from two gateways and compares them.

  compare.py --a http://127.0.0.1:PORT_A --b http://127.0.0.1:PORT_B P77-000001 [P77-000002 ...]

Ids, versionId and lastUpdated are left out, and a literal reference "Type/id" counts as "Type/*"
(ids differ from one database to the other); the resources of a type are compared as a multiset.
Prints one line a patient with the resources per type; exit status 1 at the first difference, after
printing it.
"""

import argparse
import http.client
import json
import os
import re
import sys
import urllib.parse

# Authorization: Bearer $PASSERELLE_TOKEN for the gateway's access control (bench/lib.sh mints it).
AUTH = {"Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]} if os.environ.get("PASSERELLE_TOKEN") else {}

TYPES = ["Encounter", "Observation", "QuestionnaireResponse", "MedicationStatement", "Composition", "CarePlan",
         "Goal", "List", "ChargeItem"]
NETWORK_ID_SYSTEM = "https://douleur77.fr/fhir/sid/patient"
LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/[A-Za-z0-9.-]{1,64}$")


class Gateway:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def get(self, path):
        self.conn.request("GET", path, headers={"Accept": "application/fhir+json", **AUTH})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise SystemExit("compare.py: GET %s: HTTP %d %s" % (path, resp.status, body[:300]))
        return json.loads(body)

    def search(self, type_, query):
        out = []
        path = "/fhir/%s?%s&_count=1000" % (type_, urllib.parse.urlencode(query))
        bundle = self.get(path)
        for e in bundle.get("entry", []):
            out.append(e["resource"])
        if any(link.get("relation") == "next" for link in bundle.get("link", [])):
            raise SystemExit("compare.py: more than 1000 %s for %s" % (type_, query))
        return out


def normalise(node):
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "id":
                continue
            if k == "meta":
                v = {mk: mv for mk, mv in v.items() if mk not in ("versionId", "lastUpdated")}
                if not v:
                    continue
            if k == "reference" and isinstance(v, str) and LITERAL.match(v):
                v = LITERAL.match(v).group(1) + "/*"
            out[k] = normalise(v)
        return out
    if isinstance(node, list):
        return [normalise(x) for x in node]
    return node


def dossier(gw, network_id):
    patients = gw.search("Patient", {"identifier": NETWORK_ID_SYSTEM + "|" + network_id})
    if len(patients) != 1:
        raise SystemExit("compare.py: %d Patients with network id %s" % (len(patients), network_id))
    ref = "Patient/" + patients[0]["id"]
    out = {}
    for t in TYPES:
        out[t] = sorted(json.dumps(normalise(r), sort_keys=True, ensure_ascii=False)
                        for r in gw.search(t, {"subject": ref}))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("patients", nargs="+")
    args = ap.parse_args()
    a, b = Gateway(args.a), Gateway(args.b)
    for network_id in args.patients:
        da, db = dossier(a, network_id), dossier(b, network_id)
        counts = ", ".join("%s %d" % (t, len(da[t])) for t in TYPES if da[t] or db[t])
        for t in TYPES:
            if da[t] != db[t]:
                print("%s: %s differs (%d against %d resources)" % (network_id, t, len(da[t]), len(db[t])))
                only_a = [x for x in da[t] if x not in db[t]]
                only_b = [x for x in db[t] if x not in da[t]]
                for x in only_a[:2]:
                    print("  only in a: " + x[:3000])
                for x in only_b[:2]:
                    print("  only in b: " + x[:3000])
                return 1
        print("%s: same resources in both (%s)" % (network_id, counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
