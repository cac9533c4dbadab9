#!/usr/bin/env python3
"""Seeds a gateway for bench/access/run.sh, with transaction Bundles (POST BASE/fhir).

Writes one network GP (a Practitioner with RPPS GP_RPPS and a PractitionerRole identified as the
network member https://douleur77.fr/fhir/sid/member|rpps:GP_RPPS), then PATIENTS Patients. The first
GP_PATIENTS of them are the GP's: each also gets an EpisodeOfCare of the D77 programme whose
careManager is the GP (--care-manager: the Practitioner or the PractitionerRole) and an active
treatment Consent, which is what conf/access/policy.json's relationship "gp-correspondent" and the
consent state "A" look for. Writes the Patient ids, one per line, to OUT_DIR/all-ids.txt and the
GP's to OUT_DIR/gp-ids.txt. Sends "Authorization: Bearer $PASSERELLE_TOKEN" when it is set.

  seed.py --base http://127.0.0.1:PORT --patients 2000 --gp-patients 500 --out DIR
"""

import argparse
import http.client
import json
import os
import sys
import urllib.parse
import uuid

MEMBER = "https://douleur77.fr/fhir/sid/member"
RPPS = "https://rpps.esante.gouv.fr"
PROGRAMME = "https://douleur77.fr/fhir/CodeSystem/d77-programme"


def patient(n):
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "usual", "system": "urn:oid:1.2.250.1.71.4.2.7", "value": "ACC-%06d" % n}],
        "active": True,
        "name": [{"use": "official", "family": "Acces", "given": ["Patient", str(n)]}],
        "telecom": [{"system": "phone", "value": "+33 1 60 %02d 00 00" % (n % 100), "use": "home"}],
        "gender": "female" if n % 2 else "male",
        "birthDate": "19%02d-0%d-1%d" % (40 + n % 60, 1 + n % 9, n % 10),
        "address": [{"line": ["%d rue du Banc" % n], "city": "Nemours", "postalCode": "77140", "country": "FR"}],
    }


def entry(full_url, resource):
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


class Gateway:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        self.headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if os.environ.get("PASSERELLE_TOKEN"):
            self.headers["Authorization"] = "Bearer " + os.environ["PASSERELLE_TOKEN"]

    def transaction(self, entries):
        body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        self.conn.request("POST", "/fhir", body=body, headers=self.headers)
        resp = self.conn.getresponse()
        text = resp.read()
        if resp.status != 200:
            raise SystemExit("seed.py: transaction answered %d: %s" % (resp.status, text[:400]))
        # "Patient/<id>/_history/1" -> ("Patient", "<id>"), in the order of the entries
        out = []
        for e in json.loads(text)["entry"]:
            parts = e["response"]["location"].split("/")
            out.append((parts[0], parts[1]))
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--gp-patients", type=int, default=500)
    ap.add_argument("--gp-rpps", default="10101234567")
    ap.add_argument("--care-manager", choices=["Practitioner", "PractitionerRole"], default="Practitioner")
    ap.add_argument("--bundle", type=int, default=100, help="Patients per transaction")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gw = Gateway(args.base)

    pr, prr = "urn:uuid:" + str(uuid.uuid4()), "urn:uuid:" + str(uuid.uuid4())
    created = gw.transaction([
        entry(pr, {"resourceType": "Practitioner", "identifier": [{"system": RPPS, "value": args.gp_rpps}],
                   "name": [{"family": "Bernard", "given": ["Sophie"], "prefix": ["Dr"]}]}),
        entry(prr, {"resourceType": "PractitionerRole", "active": True,
                    "identifier": [{"use": "official", "system": MEMBER, "value": "rpps:" + args.gp_rpps}],
                    "practitioner": {"reference": pr},
                    "code": [{"coding": [{"system": "https://douleur77.fr/fhir/CodeSystem/network-role", "code": "gp"}]}]}),
    ])
    manager = "/".join(created[0] if args.care_manager == "Practitioner" else created[1])

    all_ids, gp_ids = [], []
    for first in range(0, args.patients, args.bundle):
        entries = []
        for n in range(first, min(args.patients, first + args.bundle)):
            p = "urn:uuid:" + str(uuid.uuid4())
            entries.append(entry(p, patient(n)))
            if n < args.gp_patients:
                entries.append(entry("urn:uuid:" + str(uuid.uuid4()), {
                    "resourceType": "EpisodeOfCare", "status": "active",
                    "type": [{"coding": [{"system": PROGRAMME, "code": "D77"}]}],
                    "patient": {"reference": p}, "careManager": {"reference": manager},
                    "period": {"start": "2026-01-15"}}))
                entries.append(entry("urn:uuid:" + str(uuid.uuid4()), {
                    "resourceType": "Consent", "status": "active",
                    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": p}, "dateTime": "2026-01-15",
                    "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                    "provision": {"type": "permit", "period": {"start": "2026-01-15", "end": "2027-01-14"}}}))
        for (type_, id_), e in zip(gw.transaction(entries), entries):
            if type_ != e["resource"]["resourceType"]:
                raise SystemExit("seed.py: the transaction's answers are not in the order of its entries")
            if type_ == "Patient":
                all_ids.append(id_)
    gp_ids = all_ids[:args.gp_patients]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "all-ids.txt"), "w") as f:
        f.write("\n".join(all_ids) + "\n")
    with open(os.path.join(args.out, "gp-ids.txt"), "w") as f:
        f.write("\n".join(gp_ids) + "\n")
    print("seed.py: %d Patients, %d of them the GP's (careManager %s)" % (len(all_ids), len(gp_ids), manager),
          file=sys.stderr)


if __name__ == "__main__":
    main()
