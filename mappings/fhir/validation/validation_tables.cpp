// Loads the generated validation table (JSON, read with nlohmann once at start-up) into the flat
// structures the validator walks.
#include "mappings/fhir/validation/validation_tables.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "mappings/fhir/fhirpath/fhirpath.h"
#include "mappings/fhir/validation/embedded_table.h"

namespace passerelle::fhir::validation {

namespace {

struct PrimEntry {
  std::string_view name;
  Prim prim;
};

constexpr PrimEntry kPrims[] = {
    {"base64Binary", Prim::Base64Binary}, {"boolean", Prim::Boolean}, {"canonical", Prim::Canonical},
    {"code", Prim::Code},                 {"date", Prim::Date},       {"dateTime", Prim::DateTime},
    {"decimal", Prim::Decimal},           {"id", Prim::Id},           {"instant", Prim::Instant},
    {"integer", Prim::Integer},           {"markdown", Prim::Markdown}, {"oid", Prim::Oid},
    {"positiveInt", Prim::PositiveInt},   {"string", Prim::String},   {"time", Prim::Time},
    {"unsignedInt", Prim::UnsignedInt},   {"uri", Prim::Uri},         {"url", Prim::Url},
    {"uuid", Prim::Uuid},                 {"xhtml", Prim::Xhtml},
};

constexpr bool primsInOrder() {
  for (std::size_t i = 0; i < std::size(kPrims); ++i)
    if (static_cast<std::size_t>(kPrims[i].prim) != i + 1) return false;
  return true;
}
static_assert(primsInOrder(), "kPrims follows the order of Prim");


std::uint32_t tableSize(std::size_t n) {
  std::uint32_t size = 4;
  while (size < n * 2 + 1) size <<= 1;
  return size;
}

template <typename Slot, typename NameOf>
void buildIndex(std::size_t n, NameOf nameOf, std::vector<Slot>& slots, std::uint32_t& mask) {
  std::uint32_t size = tableSize(n);
  slots.assign(size, Slot(-1));
  mask = size - 1;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t h = nameHash(nameOf(i)) & mask;
    while (slots[h] >= 0) h = (h + 1) & mask;
    slots[h] = static_cast<Slot>(i);
  }
}

template <typename Slot, typename NameOf>
int lookup(const std::vector<Slot>& slots, std::uint32_t mask, std::string_view name, NameOf nameOf) {
  if (slots.empty()) return -1;
  std::uint32_t h = nameHash(name) & mask;
  while (true) {
    Slot s = slots[h];
    if (s < 0) return -1;
    if (sameName(nameOf(s), name)) return s;
    h = (h + 1) & mask;
  }
}

}  // namespace

Prim primNamed(std::string_view name) {
  for (const auto& e : kPrims)
    if (e.name == name) return e.prim;
  return Prim::None;
}

std::string_view primName(Prim p) {
  // kPrims lists the primitives in the order of the enumeration, after None.
  auto i = static_cast<std::size_t>(p);
  if (i == 0 || i > std::size(kPrims)) return "complex";
  return kPrims[i - 1].name;
}

int TypeDef::find(std::string_view name) const {
  return lookup(slots, mask, name, [this](int i) -> std::string_view { return elements[i].name; });
}

void ValueSet::index() {
  buildIndex(codes.size(), [this](std::size_t i) -> std::string_view { return codes[i]; }, slots, mask);
}

bool ValueSet::contains(std::string_view code) const {
  return lookup(slots, mask, code, [this](int i) -> std::string_view { return codes[i]; }) >= 0;
}

bool ValueSet::hasSystem(std::string_view system) const {
  return std::find(systems.begin(), systems.end(), system) != systems.end();
}

int ValidationTables::resourceType(std::string_view name) const {
  return lookup(resourceSlots_, resourceMask_, name,
                [this](int i) -> std::string_view { return types_[i].name; });
}

int ValidationTables::typeIndex(std::string_view name) const {
  return lookup(typeSlots_, typeMask_, name, [this](int i) -> std::string_view { return types_[i].name; });
}

bool ValidationTables::load(std::string_view text, std::string& error) {
  nlohmann::json doc = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    error = "validation table is not JSON";
    return false;
  }
  try {
    fhirVersion_ = doc.value("fhirVersion", "");
    source_ = doc.value("source", "");
    types_.clear();
    uncompiledInvariants_.clear();
    for (const auto& t : doc.at("types")) {
      TypeDef def;
      def.name = t.at("name").get<std::string>();
      std::string kind = t.at("kind").get<std::string>();
      def.kind = kind == "resource" ? TypeDef::Kind::Resource
                 : kind == "backbone" ? TypeDef::Kind::Backbone
                                      : TypeDef::Kind::Complex;
      for (const auto& row : t.at("elements")) {
        ElementDef e;
        e.name = row.at(0).get<std::string>();
        e.typeName = row.at(1).get<std::string>();
        e.min = row.at(2).get<int>();
        e.max = row.at(3).get<int>();
        e.choiceBase = row.at(4).get<std::string>();
        e.valueSet = row.at(5).get<int>();
        e.prim = primNamed(e.typeName);
        e.isResource = e.typeName == "Resource";
        e.isReference = e.typeName == "Reference";
        e.isExtensionList = e.name == "extension" || e.name == "modifierExtension";
        e.isId = e.name == "id" && e.prim != Prim::None;
        if (!e.choiceBase.empty()) {
          auto it = std::find(def.choiceBases.begin(), def.choiceBases.end(), e.choiceBase);
          e.choice = static_cast<std::int16_t>(it - def.choiceBases.begin());
          if (it == def.choiceBases.end()) def.choiceBases.push_back(e.choiceBase);
        }
        def.elements.push_back(std::move(e));
      }
      for (const auto& row : t.value("invariants", nlohmann::json::array())) {
        Invariant inv;
        inv.key = row.at(0).get<std::string>();
        inv.element = row.at(1).get<std::string>();
        inv.expression = row.at(2).get<std::string>();
        inv.human = row.size() > 3 ? row.at(3).get<std::string>() : std::string();
        def.invariants.push_back(std::move(inv));
      }
      types_.push_back(std::move(def));
    }
    buildIndex(types_.size(), [this](std::size_t i) -> std::string_view { return types_[i].name; }, typeSlots_,
               typeMask_);
    std::vector<std::int32_t> resources;
    for (std::size_t i = 0; i < types_.size(); ++i)
      if (types_[i].kind == TypeDef::Kind::Resource) resources.push_back(static_cast<std::int32_t>(i));
    {
      std::uint32_t size = tableSize(resources.size());
      resourceSlots_.assign(size, -1);
      resourceMask_ = size - 1;
      for (std::int32_t r : resources) {
        std::uint32_t h = nameHash(types_[r].name) & resourceMask_;
        while (resourceSlots_[h] >= 0) h = (h + 1) & resourceMask_;
        resourceSlots_[h] = r;
      }
    }
    for (auto& def : types_) {
      std::vector<bool> choiceSeen(def.choiceBases.size(), false);
      for (std::size_t i = 0; i < def.elements.size(); ++i) {
        ElementDef& e = def.elements[i];
        if (e.prim == Prim::None && !e.isResource) {
          e.type = typeIndex(e.typeName);
          if (e.type < 0) {
            error = "validation table: unknown type " + e.typeName + " in " + def.name;
            return false;
          }
        }
        if (e.min > 0) {
          if (e.choice >= 0) {
            if (!choiceSeen[e.choice]) def.requiredChoices.push_back(e.choice);
            choiceSeen[e.choice] = true;
          } else {
            def.required.push_back(static_cast<std::int16_t>(i));
          }
        }
      }
      buildIndex(def.elements.size(), [&def](std::size_t i) -> std::string_view { return def.elements[i].name; },
                 def.slots, def.mask);
    }
    // Reference targets, resolved once the resource index exists.
    std::size_t t = 0;
    for (const auto& jt : doc.at("types")) {
      std::size_t i = 0;
      for (const auto& row : jt.at("elements")) {
        for (const auto& target : row.at(6)) {
          int r = resourceType(target.get<std::string>());
          if (r >= 0) types_[t].elements[i].targets.push_back(r);
        }
        ++i;
      }
      ++t;
    }
    valueSets_.clear();
    for (const auto& v : doc.at("valueSets")) {
      ValueSet vs;
      vs.url = v.at("url").get<std::string>();
      vs.systems = v.at("systems").get<std::vector<std::string>>();
      vs.codes = v.at("codes").get<std::vector<std::string>>();
      std::sort(vs.codes.begin(), vs.codes.end());
      vs.index();
      valueSets_.push_back(std::move(vs));
    }
  } catch (const std::exception& ex) {
    error = std::string("validation table: ") + ex.what();
    return false;
  }
  extensionType = typeIndex("Extension");
  referenceType = typeIndex("Reference");
  elementType = typeIndex("Element");
  narrativeType = typeIndex("Narrative");
  codingType = typeIndex("Coding");
  codeableConceptType = typeIndex("CodeableConcept");
  bundleType = resourceType("Bundle");
  observationType = resourceType("Observation");
  metaType = typeIndex("Meta");
  attachmentType = typeIndex("Attachment");
  if (extensionType < 0 || referenceType < 0 || elementType < 0 || narrativeType < 0 || codingType < 0 ||
      codeableConceptType < 0 || bundleType < 0 || observationType < 0 || metaType < 0 || attachmentType < 0) {
    error = "validation table lacks a base type (Extension, Reference, Element, ...)";
    return false;
  }
  return true;
}

namespace {

// The terms of "a.exists() or b.empty() or ..." (simple names only), or nothing when the expression
// is anything else.
std::vector<std::pair<std::string, bool>> presenceTerms(std::string_view expression) {
  std::vector<std::pair<std::string, bool>> terms;
  while (true) {
    std::size_t cut = expression.find(" or ");
    std::string_view term = expression.substr(0, cut);
    bool exists = false;
    std::string_view name;
    for (std::string_view tail : {".exists()", ".empty()"}) {
      if (term.size() > tail.size() && term.substr(term.size() - tail.size()) == tail) {
        exists = tail == ".exists()";
        name = term.substr(0, term.size() - tail.size());
      }
    }
    bool simple = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    });
    if (!simple) return {};
    terms.emplace_back(std::string(name), exists);
    if (cut == std::string_view::npos) return terms;
    expression.remove_prefix(cut + 4);
  }
}

}  // namespace

void ValidationTables::compileInvariants() {
  uncompiledInvariants_.clear();
  for (auto& def : types_) {
    for (auto& inv : def.invariants) {
      std::string why;
      inv.compiled = fhirpath::Expression::compile(inv.expression, why);
      if (inv.element.empty()) inv.presenceTerms = presenceTerms(inv.expression);
      if (!inv.compiled) uncompiledInvariants_.push_back(inv.key + ": " + why);
    }
  }
}

namespace {

// The embedded tables once loaded; their invariants are compiled by embedded(), with FHIRPath, which
// reads the types from here while it compiles.
ValidationTables& loadedTables() {
  static ValidationTables tables = [] {
    ValidationTables t;
    std::string error;
    if (!t.load(embeddedTableJson(), error)) {
      std::fprintf(stderr, "passerelle: embedded FHIR validation table unusable: %s\n", error.c_str());
      std::abort();
    }
    return t;
  }();
  return tables;
}

}  // namespace

const ValidationTables& ValidationTables::embedded() {
  static const bool compiled = [] {
    loadedTables().compileInvariants();
    return true;
  }();
  (void)compiled;
  return loadedTables();
}

const ValidationTables& ValidationTables::embeddedTypes() { return loadedTables(); }

}  // namespace passerelle::fhir::validation
