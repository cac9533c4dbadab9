#!/usr/bin/env python3
"""Generates the XML form of the network's documents from their JSON Schemas (schemas/network):
xsd/<kind>.xsd, one self-contained XSD 1.0 per kind, and examples/<kind>.xml from examples/<kind>.json.

  python3 scripts/gen_network_xsd.py           writes the files
  python3 scripts/gen_network_xsd.py --check   exits 1 when a committed file differs from a fresh generation

Mapping: an object is a complexType whose xs:sequence follows the schema's property order (members
not in `required` get minOccurs="0"; an object with minProperties = maxProperties = 1 and nothing
required is an xs:choice); an array member is its element repeated (minOccurs/maxOccurs from
minItems/maxItems); enum and const become xs:enumeration, pattern xs:pattern (without ^ and $),
minimum/maximum minInclusive/maxInclusive, multipleOf 0.1 fractionDigits 1; boolean, integer and
number are xs:boolean, xs:integer and xs:decimal; format "date" is xs:date, contentEncoding "base64"
xs:base64Binary. Definitions reached through $ref become named types. oneOf, anyOf, allOf and
if/then/else are left out: the JSON Schema check after conversion enforces them.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas", "network")
NAMESPACE = "urn:douleur77:network:1"
KINDS = ["professional", "structure", "inclusion", "consent", "consent-renewal", "consent-withdrawal", "cied",
         "csb", "liaison-sheet", "referral", "referral-update", "exit", "opera-enrolment", "opera-activity"]
COMMON = "common.schema.json"


def camel(kind):
    head, *rest = kind.split("-")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def load(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return json.load(f)


def esc(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\r", "&#13;"))


def esc_text(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


class Schemas:
    """A kind's schema and the common one, with $ref resolution."""

    def __init__(self, kind):
        self.docs = {COMMON: load(COMMON), kind + ".schema.json": load(kind + ".schema.json")}
        self.kind_file = kind + ".schema.json"

    def ref_target(self, ref, doc):
        """(document name, definition name) of a $ref such as common.schema.json#/definitions/Date."""
        file, _, pointer = ref.partition("#")
        if not pointer.startswith("/definitions/") or pointer.count("/") != 2:
            sys.exit(f"unsupported $ref {ref!r}: only #/definitions/<Name> and {COMMON}#/definitions/<Name>")
        file = file or doc
        if file not in self.docs:
            sys.exit(f"$ref {ref!r} names an unknown document")
        return file, pointer.split("/")[2]

    def deref(self, node, doc):
        """The node a $ref leads to (following chains) and the document it is in."""
        while "$ref" in node:
            doc, name = self.ref_target(node["$ref"], doc)
            node = self.docs[doc]["definitions"][name]
        return node, doc


def decimal_text(value):
    if isinstance(value, bool):
        raise TypeError("boolean where a number is expected")
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(value, "f").rstrip("0").rstrip(".")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def xsd_pattern(pattern):
    if not (pattern.startswith("^") and pattern.endswith("$")):
        sys.exit(f"pattern {pattern!r} must be anchored with ^ and $")
    body = pattern[1:-1]
    for bad in ("(?", "\\d", "\\w", "\\s", "\\b", "^", "$"):
        if bad in body:
            sys.exit(f"pattern {pattern!r} uses {bad!r}, which XSD regular expressions do not share")
    return body


class XsdWriter:
    def __init__(self, kind):
        self.kind = kind
        self.s = Schemas(kind)
        self.named = {}       # type name -> list of lines (None while being built)
        self.order = []       # named types in order of first use

    # --- simple types -----------------------------------------------------------------------
    def simple_restriction(self, node):
        """(base, facet lines) of a leaf schema."""
        t = node.get("type")
        facets = []
        values = node["enum"] if "enum" in node else ([node["const"]] if "const" in node else None)
        if t == "string":
            if node.get("format") == "date":
                base = "xs:date"
            elif node.get("contentEncoding") == "base64":
                base = "xs:base64Binary"
            else:
                base = "xs:string"
            if values is not None:
                facets += [f'<xs:enumeration value="{esc(v)}"/>' for v in values]
            if "pattern" in node:
                facets.append(f'<xs:pattern value="{esc(xsd_pattern(node["pattern"]))}"/>')
            if base == "xs:string":
                if "minLength" in node:
                    facets.append(f'<xs:minLength value="{node["minLength"]}"/>')
                if "maxLength" in node:
                    facets.append(f'<xs:maxLength value="{node["maxLength"]}"/>')
        elif t in ("integer", "number"):
            base = "xs:integer" if t == "integer" else "xs:decimal"
            if values is not None:
                facets += [f'<xs:enumeration value="{decimal_text(v)}"/>' for v in values]
            if "multipleOf" in node and t == "number":
                step = decimal_text(node["multipleOf"])
                digits = len(step.partition(".")[2])
                if digits:
                    facets.append(f'<xs:fractionDigits value="{digits}"/>')
            for key, facet in (("minimum", "minInclusive"), ("exclusiveMinimum", "minExclusive"),
                               ("maximum", "maxInclusive"), ("exclusiveMaximum", "maxExclusive")):
                if key in node:
                    facets.append(f'<xs:{facet} value="{decimal_text(node[key])}"/>')
        elif t == "boolean":
            base = "xs:boolean"
        else:
            sys.exit(f"{self.kind}: unsupported leaf schema {node!r}")
        return base, facets

    def simple_type_lines(self, node, name=None):
        base, facets = self.simple_restriction(node)
        head = f'<xs:simpleType name="{name}">' if name else "<xs:simpleType>"
        lines = [head] + self.documentation(node if name else {})
        lines.append(f'  <xs:restriction base="{base}">')
        lines += ["    " + f for f in facets]
        lines += ["  </xs:restriction>", "</xs:simpleType>"]
        return lines

    # --- complex types ----------------------------------------------------------------------
    def documentation(self, node):
        if "description" not in node:
            return []
        return ["  <xs:annotation>", f'    <xs:documentation>{esc_text(node["description"])}</xs:documentation>',
                "  </xs:annotation>"]

    def complex_type_lines(self, node, doc, name=None):
        props = node.get("properties", {})
        required = set(node.get("required", []))
        if node.get("additionalProperties") is not False:
            sys.exit(f"{self.kind}: every object needs additionalProperties: false")
        choice = (node.get("minProperties") == 1 and node.get("maxProperties") == 1 and not required)
        head = f'<xs:complexType name="{name}">' if name else "<xs:complexType>"
        lines = [head] + self.documentation(node if name else {})
        group = "xs:choice" if choice else "xs:sequence"
        lines.append(f"  <{group}>")
        for member, sub in props.items():
            lines += ["    " + l for l in self.element_lines(member, sub, doc, member in required or choice)]
        lines += [f"  </{group}>", "</xs:complexType>"]
        return lines

    # --- elements ---------------------------------------------------------------------------
    def type_of(self, node, doc):
        """('name', type name) for a $ref or a bare primitive, else ('inline', lines)."""
        if "$ref" in node:
            target_doc, def_name = self.s.ref_target(node["$ref"], doc)
            target, tdoc = self.s.deref(node, doc)
            if target.get("type") == "array":
                sys.exit(f"{self.kind}: $ref {node['$ref']} to an array is not supported")
            self.named_type(def_name, target, tdoc)
            return "name", def_name
        t = node.get("type")
        if t == "object":
            return "inline", self.complex_type_lines(node, doc)
        base, facets = self.simple_restriction(node)
        if not facets:
            return "name", base
        return "inline", self.simple_type_lines(node)

    def named_type(self, name, node, doc):
        if name in self.named:
            return
        self.named[name] = None
        self.order.append(name)
        if node.get("type") == "object":
            self.named[name] = self.complex_type_lines(node, doc, name)
        else:
            self.named[name] = self.simple_type_lines(node, name)

    def element_lines(self, member, sub, doc, required):
        node, ndoc = self.s.deref(sub, doc) if "$ref" in sub else (sub, doc)
        occurs = ""
        if node.get("type") == "array":
            item = node["items"]
            low = node.get("minItems", 0) if required else 0
            high = node.get("maxItems", "unbounded")
            occurs = (f' minOccurs="{low}"' if low != 1 else "") + (f' maxOccurs="{high}"' if high != 1 else "")
            sub, doc = item, ndoc
        elif not required:
            occurs = ' minOccurs="0"'
        how, what = self.type_of(sub, doc)
        if how == "name":
            return [f'<xs:element name="{member}" type="{what}"{occurs}/>']
        return [f'<xs:element name="{member}"{occurs}>'] + ["  " + l for l in what] + ["</xs:element>"]

    def write(self):
        top = self.s.docs[self.s.kind_file]
        if top.get("type") != "object":
            sys.exit(f"{self.kind}: the document schema must be an object")
        root = self.complex_type_lines(top, self.s.kind_file)
        lines = ['<?xml version="1.0" encoding="UTF-8"?>',
                 f"<!-- Generated by scripts/gen_network_xsd.py from {self.kind}.schema.json. Do not edit. -->",
                 f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="{NAMESPACE}"',
                 f'           targetNamespace="{NAMESPACE}" elementFormDefault="qualified" version="1.0">']
        lines += ["  <xs:annotation>",
                  f'    <xs:documentation>{esc_text(top.get("title", self.kind))}</xs:documentation>',
                  "  </xs:annotation>"]
        lines.append(f'  <xs:element name="{camel(self.kind)}">')
        lines += ["    " + l for l in root]
        lines.append("  </xs:element>")
        for name in self.order:
            lines += ["  " + l for l in self.named[name]]
        lines.append("</xs:schema>")
        return "\n".join(lines) + "\n"


class XmlExample:
    """The XML form of a JSON document, members in schema order, two-space indent."""

    def __init__(self, kind):
        self.kind = kind
        self.s = Schemas(kind)

    def value_text(self, value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return decimal_text(value)
        if isinstance(value, str):
            return esc_text(value)
        sys.exit(f"{self.kind}: unexpected value {value!r}")

    def object_lines(self, value, node, doc, ind):
        lines = []
        props = node.get("properties", {})
        for member in value:
            if member not in props:
                sys.exit(f"{self.kind}: example member {member!r} is not in the schema")
        for member, sub in props.items():
            if member not in value:
                continue
            snode, sdoc = self.s.deref(sub, doc)
            items = value[member] if snode.get("type") == "array" else [value[member]]
            if snode.get("type") == "array":
                snode, sdoc = self.s.deref(snode["items"], sdoc)
            for item in items:
                if isinstance(item, dict):
                    lines.append(f"{ind}<{member}>")
                    lines += self.object_lines(item, snode, sdoc, ind + "  ")
                    lines.append(f"{ind}</{member}>")
                else:
                    lines.append(f"{ind}<{member}>{self.value_text(item)}</{member}>")
        return lines

    def write(self, document):
        top = self.s.docs[self.s.kind_file]
        root = camel(self.kind)
        lines = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{NAMESPACE}">']
        lines += self.object_lines(document, top, self.s.kind_file, "  ")
        lines.append(f"</{root}>")
        return "\n".join(lines) + "\n"


def generate():
    """{path relative to schemas/network: contents}"""
    out = {}
    for kind in KINDS:
        out[f"xsd/{kind}.xsd"] = XsdWriter(kind).write()
        out[f"examples/{kind}.xml"] = XmlExample(kind).write(load(f"examples/{kind}.json"))
    return out


def main():
    check = "--check" in sys.argv[1:]
    files = generate()
    stale = []
    for rel, text in files.items():
        path = os.path.join(ROOT, rel)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8", newline="") as f:
                old = f.read()
        if old == text:
            continue
        if check:
            stale.append(rel)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            print(f"wrote schemas/network/{rel}")
    if check:
        for rel in stale:
            print(f"schemas/network/{rel} differs from what scripts/gen_network_xsd.py makes: run it and commit")
        if stale:
            return 1
        print(f"the {len(files)} generated XSD and XML example files in schemas/network are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
