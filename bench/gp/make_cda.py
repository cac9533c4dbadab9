#!/usr/bin/env python3
"""Writes COUNT CDA R2 documents (CI-SIS level 1: a consult note carrying a small PDF) for the
patients of PATIENTS (seed.py's output), in turn, each named by its strict traits (no INS: the
identity is found by birth name, first name, birth date and sex) and with an id of its own.

  make_cda.py --patients patients.json --count 2000 --out DIR
"""

import argparse
import base64
import json
import os

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="2.999.77.1" extension="BENCH-%(k)06d"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>Compte rendu de consultation %(k)d</title>
  <effectiveTime value="20260905101500+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.2" extension="IPP-%(k)06d"/>
    <patient><name><given>%(given)s</given><family qualifier="BR">%(family)s</family></name>
      <administrativeGenderCode code="%(sex)s" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="%(birth)s"/></patient>
  </patientRole></recordTarget>
  <author><time value="20260905101500+0200"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810101234567"/>
    <assignedPerson><name><given>Sophie</given><family>MARTIN</family></name></assignedPerson></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="1770000001"/>
    <name>Clinique de Seine-et-Marne</name></representedCustodianOrganization></assignedCustodian></custodian>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">%(pdf)s</text></nonXMLBody></component>
</ClinicalDocument>
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    people = json.load(open(args.patients))
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.count):
        p = people[k % len(people)]
        pdf = base64.b64encode(b"%PDF-1.4\n% compte rendu " + str(k).encode() + b"\n" + b"x" * 2000).decode()
        text = TEMPLATE % {"k": k, "given": p["given"], "family": p["family"], "sex": "F" if p["n"] % 2 else "M",
                           "birth": p["birthDate"].replace("-", ""), "pdf": pdf}
        with open(os.path.join(args.out, "cr-%06d.xml" % k), "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
