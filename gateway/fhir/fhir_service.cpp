// FHIR R4 REST interactions. Writes run inside ResourceStore::write units so that each request
// (and each whole transaction Bundle) commits atomically; stored bodies are the client's JSON text,
// compacted, with the server's id and meta spliced in (json_text.h), so decimals keep their digits.
#include "gateway/fhir/fhir_service.h"

#include "gateway/fhir/compartment.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "gateway/common/log.h"
#include "gateway/fhir/access_guard.h"
#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"
#include "mappings/fhir/fhir_time.h"
#include "mappings/fhir/json_text.h"
#include "mappings/fhir/operation_outcome.h"
#include "mappings/fhir/resource_types.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/fhir/validation/dom_access.h"
#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"

namespace passerelle::fhir {

using store::ResourceVersion;
using store::WriteTxn;

namespace {

const char* kJsonContentType = "application/fhir+json; charset=utf-8";
const char* kXmlContentType = "application/fhir+xml; charset=utf-8";

// Server-assigned ids are UUIDv7 (RFC 9562): 48 bits of milliseconds then random bits, so new
// rows land at the right edge of the (type, id) indexes instead of on random pages, which keeps
// the pages each group commit writes to the WAL few.
std::string newId() {
  thread_local std::mt19937_64 rng{std::random_device{}() ^ (static_cast<std::uint64_t>(nowMs()) << 20) ^
                                   std::hash<std::thread::id>{}(std::this_thread::get_id())};
  std::uint64_t ms = static_cast<std::uint64_t>(nowMs()) & 0xFFFFFFFFFFFFULL;
  std::uint64_t r1 = rng(), r2 = rng();
  std::uint64_t hi = (ms << 16) | 0x7000ULL | (r1 & 0x0FFFULL);               // time, version 7, rand_a
  std::uint64_t lo = (r2 & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // variant, rand_b
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF), static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48), static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return buf;
}

std::string etagOf(std::int64_t version) { return "W/\"" + std::to_string(version) + "\""; }

std::string statusLine(int status) {
  switch (status) {
    case 200: return "200 OK";
    case 201: return "201 Created";
    case 204: return "204 No Content";
    default: return std::to_string(status);
  }
}

FhirResponse errorResponse(ErrorCode code, std::string message, std::string location = {}) {
  return fhir::errorResponse(makeError(code, std::move(message), std::move(location)));
}

struct Prefer {
  enum Return { kRepresentation, kMinimal, kOutcome } ret = kRepresentation;
  bool strict = false;
};

Prefer parsePrefer(const std::string& header) {
  Prefer p;
  std::size_t start = 0;
  while (start < header.size()) {
    std::size_t end = header.find_first_of(",;", start);
    std::string token = header.substr(start, end == std::string::npos ? std::string::npos : end - start);
    token.erase(0, token.find_first_not_of(" \t"));
    token.erase(token.find_last_not_of(" \t") + 1);
    if (token == "return=minimal") p.ret = Prefer::kMinimal;
    else if (token == "return=representation") p.ret = Prefer::kRepresentation;
    else if (token == "return=OperationOutcome") p.ret = Prefer::kOutcome;
    else if (token == "handling=strict") p.strict = true;
    else if (token == "handling=lenient") p.strict = false;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return p;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Accepts application/fhir+json, application/json and the DSTU2 application/json+fhir, in UTF-8.
Result<void> checkContentType(const std::string& header) {
  if (header.empty())
    return makeError(ErrorCode::kUnsupportedMediaType, "a Content-Type is required: send application/fhir+json");
  std::string ct = lower(header);
  std::string media = ct.substr(0, ct.find(';'));
  media.erase(media.find_last_not_of(" \t") + 1);
  if (media != "application/fhir+json" && media != "application/json" && media != "application/json+fhir")
    return makeError(ErrorCode::kUnsupportedMediaType,
                     "Content-Type '" + header + "' is not supported: send application/fhir+json");
  auto cs = ct.find("charset=");
  if (cs != std::string::npos) {
    std::string charset = ct.substr(cs + 8);
    charset = charset.substr(0, charset.find(';'));
    if (charset != "utf-8" && charset != "\"utf-8\"")
      return makeError(ErrorCode::kUnsupportedMediaType, "charset '" + charset + "' is not supported: use UTF-8");
  }
  return {};
}

bool parseVersion(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

// A parsed resource body: the DOM for inspection and the text for storage.
struct Incoming {
  Json json;
  std::string_view text;
  Span span;
};

Result<void> parseResource(std::string_view text, const JsonLimits& limits, Incoming& in) {
  JsonError err;
  if (!parseJson(text, limits, in.json, err)) return makeError(ErrorCode::kInvalid, err.message, err.path);
  in.text = text;
  in.span = wholeValue(text);
  return {};
}

// Basic structural rules on a resource: an object with a known resourceType (matching `expected`
// when given), a valid id when present, meta an object.
Result<void> checkResource(const Json& j, const std::string& expected, const std::string& where) {
  std::string at = where.empty() ? std::string() : where;
  if (!j.is_object()) return makeError(ErrorCode::kInvalid, "a resource must be a JSON object", at);
  auto rt = j.find("resourceType");
  if (rt == j.end() || !rt->is_string())
    return makeError(ErrorCode::kInvalid, "the resource has no resourceType", at);
  const std::string& type = rt->get_ref<const std::string&>();
  if (!isResourceType(type))
    return makeError(ErrorCode::kInvalid, "'" + type + "' is not a FHIR R4 resource type", at.empty() ? "resourceType" : at + ".resourceType");
  std::string path = at.empty() ? type : at;
  if (!expected.empty() && type != expected)
    return makeError(ErrorCode::kInvalid, "the body is a " + type + " but the URL names " + expected, path + ".resourceType");
  auto id = j.find("id");
  if (id != j.end() && (!id->is_string() || !isValidId(id->get_ref<const std::string&>())))
    return makeError(ErrorCode::kUnprocessable, "id must be 1 to 64 characters of A-Z a-z 0-9 - .", path + ".id");
  auto meta = j.find("meta");
  if (meta != j.end() && !meta->is_object())
    return makeError(ErrorCode::kUnprocessable, "meta must be an object", path + ".meta");
  return {};
}

// 422 with every issue of `issues` (when one is an error), each located under `where` for a
// resource inside a Bundle (Patient.gender -> Bundle.entry[2].resource.gender); the message names
// the first error after `what`.
Result<void> refuseOnErrors(std::vector<Issue>& issues, const std::string& where, std::string_view what) {
  std::string first;
  for (auto& i : issues) {
    if (!where.empty()) {
      auto dot = i.expression.find('.');
      i.expression = where + (dot == std::string::npos ? "" : i.expression.substr(dot));
    }
    if (first.empty() && (i.severity == "error" || i.severity == "fatal"))
      first = i.diagnostics + (i.expression.empty() ? "" : " (" + i.expression + ")");
  }
  if (first.empty()) return {};
  Error e = makeError(ErrorCode::kUnprocessable, std::string(what) + first, where);
  e.outcome = operationOutcome(issues);
  return e;
}

// Full R4 validation of a resource's text (the rules of the base specification); errors give
// 422 with every issue and its FHIRPath, prefixed by `where` for resources inside a Bundle.
Result<void> validateResource(const FhirServiceOptions& o, std::string_view text, const std::string& expectedType,
                              const std::string& where = {}) {
  ValidationResult vr = Validator::instance().validate(text, expectedType, &o.policy);
  if (!vr.hasErrors()) return {};
  return refuseOnErrors(vr.issues, where, "the resource is not valid FHIR R4: ");
}

// Whether a resource also goes through the profile pass: with fhir.validate_profiles, when it names a
// profile in meta.profile (an unknown one is not an error: a server need not know every profile);
// with fhir.unknown_extensions=refuse, when it may carry an extension.
bool profilePassNeeded(const FhirServiceOptions& o, std::string_view text) {
  if (!o.profiles) return false;
  return (o.validateProfiles && text.find("\"profile\"") != std::string_view::npos) ||
         (o.policy.refuseUnknownExtensions && text.find("\"url\"") != std::string_view::npos);
}

// The profile pass alone. Errors give 422 with every issue, located as validateResource does.
Result<void> validateDeclaredProfiles(const FhirServiceOptions& o, std::string_view text, const std::string& where = {}) {
  if (!profilePassNeeded(o, text)) return {};
  std::vector<Issue> issues;
  o.profiles->validateDeclared(text, issues);
  return refuseOnErrors(issues, where, "the resource does not conform to its profiles or extension definitions: ");
}

// The base validation, then the profile pass when needed, on one parse of the resource.
Result<void> validateWhole(const FhirServiceOptions& o, std::string_view text, const std::string& expectedType,
                           const std::string& where = {}) {
  if (profilePassNeeded(o, text)) {
    simdjson::dom::element root;
    if (validation::parseDocument(text, root) == simdjson::SUCCESS) {
      std::vector<Issue> issues;
      try {
        bool extensionSeen = true;
        Validator::instance().validateParsed(root, expectedType, &o.policy, issues, &extensionSeen);
        auto base = refuseOnErrors(issues, where, "the resource is not valid FHIR R4: ");
        if (!base.ok()) return base;
        issues.clear();
        // Without an error, the base walk met every member: whether it met an extension is known.
        o.profiles->validateDeclared(root, {}, issues, "warning", extensionSeen);
        return refuseOnErrors(issues, where, "the resource does not conform to its profiles or extension definitions: ");
      } catch (const std::bad_alloc&) {
        throw;
      } catch (const std::exception&) {
        // validated again below, where a failure becomes an issue
      }
    }
  }
  auto v = validateResource(o, text, expectedType, where);
  if (!v.ok()) return v;
  return validateDeclaredProfiles(o, text, where);
}

// The result of one write interaction.
struct WriteOutcome {
  int status = 200;
  ResourceVersion version;
  bool wrote = false;  // false when nothing changed (conditional create matched, delete of nothing)
};

// A resource body made ready outside the writer: everything but meta.versionId and
// meta.lastUpdated, which the unit of work fills in.
struct PreparedResource {
  std::string head;       // up to and including "meta":
  std::string metaExtra;  // the client's other meta members, as ,"k":v...
  std::string tail;       // after the meta value
  store::IndexRows index;
};

PreparedResource prepare(const std::string& type, const std::string& id, const Incoming& in,
                         const ReferenceRewriter& rw, const std::string& baseUrl) {
  PreparedResource p;
  std::string out;
  out.reserve(in.span.end - in.span.begin + 64);
  // 0x01 cannot appear raw in JSON text, so it marks where the meta value goes.
  bool rewrote = false;
  ReferenceRewriter tracked;
  if (rw)
    tracked = [&](const std::string& ref) {
      const std::string* to = rw(ref);
      rewrote = rewrote || to != nullptr;
      return to;
    };
  writeResource(in.text, in.span, id, "\x01", out, tracked);
  std::size_t at = out.find('\x01');
  p.head.assign(out, 0, at);
  p.tail.assign(out, at + 1, std::string::npos);
  Span meta = findMember(in.text, in.span, "meta");
  for (const auto& m : objectMembers(in.text, meta)) {
    if (m.key == "versionId" || m.key == "lastUpdated") continue;
    p.metaExtra += ',';
    p.metaExtra.append(in.text.substr(m.keySpan.begin, m.keySpan.end - m.keySpan.begin));
    p.metaExtra += ':';
    writeCompact(in.text, m.value, p.metaExtra);
  }
  if (rewrote) {
    // References were rewritten (a transaction): index what is stored.
    try {
      auto stored = Json::parse(p.head + "{" + (p.metaExtra.empty() ? "" : p.metaExtra.substr(1)) + "}" + p.tail);
      p.index = search::extractIndex(search::SearchDefinitions::r4(), type, stored, baseUrl);
    } catch (const std::exception&) {
      p.index = search::extractIndex(search::SearchDefinitions::r4(), type, in.json, baseUrl);
    }
  } else {
    p.index = search::extractIndex(search::SearchDefinitions::r4(), type, in.json, baseUrl);
  }
  return p;
}

Result<ResourceVersion> putPrepared(WriteTxn& txn, const std::string& type, const std::string& id, std::int64_t version,
                                    const char* method, const PreparedResource& p, AccessGuard* guard = nullptr,
                                    const ResourceVersion* old = nullptr) {
  ResourceVersion v;
  v.type = type;
  v.id = id;
  v.version = version;
  v.method = method;
  v.lastUpdatedMs = txn.nowMs();
  std::string vs = std::to_string(version);
  std::string instant = formatInstant(v.lastUpdatedMs);
  v.body.reserve(p.head.size() + p.tail.size() + p.metaExtra.size() + 64);
  v.body.append(p.head).append("{\"versionId\":\"").append(vs).append("\",\"lastUpdated\":\"").append(instant);
  v.body.append("\"").append(p.metaExtra).append("}").append(p.tail);
  if (guard) {
    auto a = guard->allowWrite(type, id, v.body, old, false);
    if (!a.ok()) return a.error();
  }
  auto r = txn.put(v, p.index);
  if (!r.ok()) return r.error();
  if (guard) {
    guard->touched(v);
    if (type == "Patient" && (!old || old->deleted)) guard->createdPatient(id);
  }
  return v;
}

// Creates version 1 of a new id (server ids are random UUIDs: a clash is reported as a conflict
// by the store rather than looked for first).
Result<WriteOutcome> createIn(WriteTxn& txn, const std::string& type, const std::string& id, const PreparedResource& p,
                              AccessGuard* guard = nullptr) {
  auto v = putPrepared(txn, type, id, 1, "POST", p, guard);
  if (!v.ok()) {
    if (v.error().code == ErrorCode::kConflict) return makeError(ErrorCode::kConflict, type + "/" + id + " already exists");
    return v.error();
  }
  return WriteOutcome{201, std::move(v.value()), true};
}

Result<WriteOutcome> updateIn(WriteTxn& txn, const std::string& type, const std::string& id, const PreparedResource& p,
                              std::optional<std::int64_t> ifMatch, AccessGuard* guard = nullptr) {
  // With a guard the current body is needed: the write must be allowed for what it replaces too.
  auto cur = guard ? txn.current(type, id) : txn.currentHead(type, id);
  if (!cur.ok()) return cur.error();
  const auto& c = cur.value();
  if (ifMatch && (!c || c->deleted || c->version != *ifMatch))
    return makeError(ErrorCode::kPreconditionFailed,
                     "If-Match " + etagOf(*ifMatch) + " does not match the current version" +
                         (c ? " " + etagOf(c->version) : std::string(" (the resource does not exist)")));
  std::int64_t next = c ? c->version + 1 : 1;
  auto v = putPrepared(txn, type, id, next, "PUT", p, guard, c ? &*c : nullptr);
  if (!v.ok()) return v.error();
  return WriteOutcome{(!c || c->deleted) ? 201 : 200, std::move(v.value()), true};
}

Result<WriteOutcome> deleteIn(WriteTxn& txn, const std::string& type, const std::string& id,
                              std::optional<std::int64_t> ifMatch, AccessGuard* guard = nullptr) {
  auto cur = guard ? txn.current(type, id) : txn.currentHead(type, id);
  if (!cur.ok()) return cur.error();
  const auto& c = cur.value();
  if (ifMatch && (!c || c->deleted || c->version != *ifMatch))
    return makeError(ErrorCode::kPreconditionFailed, "If-Match " + etagOf(*ifMatch) + " does not match the current version");
  if (guard) {
    auto a = guard->allowWrite(type, id, "", c && !c->deleted ? &*c : nullptr, true);
    if (!a.ok()) return a.error();
  }
  if (!c || c->deleted) return WriteOutcome{204, c ? *c : ResourceVersion{}, false};
  ResourceVersion v;
  v.type = type;
  v.id = id;
  v.version = c->version + 1;
  v.method = "DELETE";
  v.deleted = true;
  auto r = txn.put(v, {});
  if (!r.ok()) return r.error();
  if (guard) guard->touched(*c);
  return WriteOutcome{200, std::move(v), true};
}

// The resources matching a conditional URL's query (at most 2 are fetched: enough to tell 0/1/many).
Result<std::vector<ResourceVersion>> conditionalMatches(WriteTxn& txn, const std::string& type, const Params& params,
                                                        const SearchLimits& limits, AccessGuard* guard = nullptr) {
  Params filtered;
  for (const auto& p : params)
    if (p.first != "_format") filtered.push_back(p);
  if (filtered.empty()) return makeError(ErrorCode::kInvalid, "a conditional request needs search parameters");
  // Strict: ignoring an unknown parameter would widen the match.
  auto ps = parseSearch(type, filtered, limits, true);
  if (!ps.ok()) return ps.error();
  ps->query.count = 2;
  ps->query.total = store::SearchQuery::Total::kNone;
  ps->query.sort.clear();
  if (guard) {
    // Only what the caller may see can be the target of its conditional write.
    auto c = guard->readConstraint(type);
    if (!c.ok()) return c.error();
    for (const auto& g : *c) ps->query.where.push_back(g);
  }
  auto page = txn.search(ps->query);
  if (!page.ok()) return page.error();
  return std::move(page->items);
}

void appendBundleHead(std::string& out, const char* type) {
  out += "{\"resourceType\":\"Bundle\",\"id\":\"";
  out += newId();
  out += "\",\"meta\":{\"lastUpdated\":\"";
  out += formatInstant(nowMs());
  out += "\"},\"type\":\"";
  out += type;
  out += '"';
}

void appendLinks(std::string& out, const std::vector<std::pair<std::string, std::string>>& links) {
  out += ",\"link\":[";
  bool first = true;
  for (const auto& [rel, url] : links) {
    if (!first) out += ',';
    first = false;
    out += "{\"relation\":\"" + rel + "\",\"url\":";
    appendJsonString(out, url);
    out += '}';
  }
  out += ']';
}

std::string pageUrl(const std::string& base, const Params& applied, const char* extraKey = nullptr,
                    const std::string& extraValue = {}) {
  Params p = applied;
  if (extraKey) p.emplace_back(extraKey, extraValue);
  std::string q = encodeQuery(p);
  return q.empty() ? base : base + "?" + q;
}


bool elementSelected(const std::string& key, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (key == n) return true;
    // Choice elements: "value[x]" (summary lists) or "value" (_elements) select valueQuantity...
    std::string stem = n.size() > 3 && n.compare(n.size() - 3, 3, "[x]") == 0 ? n.substr(0, n.size() - 3) : n;
    if (key.size() > stem.size() && key.compare(0, stem.size(), stem) == 0 &&
        std::isupper(static_cast<unsigned char>(key[stem.size()])))
      return true;
  }
  return false;
}

// The body shaped by _summary and _elements (SUBSETTED tag added), or unchanged.
std::string shapeBody(const std::string& type, const std::string& body, const ParsedSearch& ps) {
  bool subset = ps.summary == Summary::kTrue || ps.summary == Summary::kText || ps.summary == Summary::kData ||
                (!ps.elements.empty() && ps.summary != Summary::kFalse);
  if (!subset) return body;
  Json in;
  try {
    in = Json::parse(body);
  } catch (const std::exception&) {
    return body;
  }
  if (!in.is_object()) return body;
  Json out = Json::object();
  const auto& summary = search::SearchDefinitions::r4().summary(type);
  for (auto it = in.begin(); it != in.end(); ++it) {
    const std::string& k = it.key();
    bool keep;
    if (k == "resourceType" || k == "id" || k == "meta") keep = true;
    else if (ps.summary == Summary::kTrue) keep = elementSelected(k, summary);
    else if (ps.summary == Summary::kText) keep = k == "text" || elementSelected(k, search::SearchDefinitions::r4().mandatory(type));
    else if (ps.summary == Summary::kData) keep = k != "text";
    else keep = elementSelected(k, ps.elements);
    if (keep) out[k] = it.value();
  }
  Json& meta = out["meta"];
  if (!meta.is_object()) meta = Json::object();
  Json& tags = meta["tag"];
  if (!tags.is_array()) tags = Json::array();
  tags.push_back({{"system", "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"}, {"code", "SUBSETTED"}});
  return out.dump();
}

}  // namespace

FhirResponse errorResponse(const Error& e) {
  FhirResponse r;
  const ErrorInfo& info = errorInfo(e.code);
  r.status = info.httpStatus;
  if (!e.outcome.empty()) {
    r.body = e.outcome;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    return r;
  }
  Issue issue;
  issue.severity = info.httpStatus >= 500 ? "fatal" : "error";
  issue.code = info.fhirIssueCode;
  issue.diagnostics = e.message;
  issue.expression = e.location;
  r.body = operationOutcome(issue);
  r.headers.emplace_back("Content-Type", kJsonContentType);
  return r;
}

bool parseETag(const std::string& header, std::int64_t& version) {
  std::string s = header;
  if (s.rfind("W/", 0) == 0) s = s.substr(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return parseVersion(s, version);
}

// One request being handled.
class FhirService::Impl {
 public:
  Impl(store::ResourceStore& store, const FhirServiceOptions& o, const FhirRequest& req)
      : store_(store), o_(o), req_(req), prefer_(parsePrefer(req.prefer)) {}

  FhirResponse run() {
    // Split the path into segments.
    std::vector<std::string> seg;
    std::size_t start = 0;
    const std::string& path = req_.path;
    while (start < path.size()) {
      std::size_t slash = path.find('/', start);
      std::string s = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      std::string decoded;
      try {
        Poco::URI::decode(s, decoded);
      } catch (...) {
        decoded = s;
      }
      if (!decoded.empty()) seg.push_back(decoded);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    const std::string& m = req_.method;
    if (seg.empty()) {
      if (m == "POST") return bundle();
      if (m == "GET") return search("", req_.query, "");
      return notAllowed("the FHIR base accepts GET (search) and POST (batch, transaction)");
    }
    if (seg[0] == "metadata") {
      if (seg.size() != 1) return notFound();
      if (m != "GET") return notAllowed("metadata accepts GET only");
      return capability();
    }
    if (seg[0] == "_history") {
      if (seg.size() != 1) return notFound();
      if (m != "GET") return notAllowed("_history accepts GET only");
      return history("", "");
    }
    if (seg[0] == "_search") {
      if (seg.size() != 1) return notFound();
      if (m != "POST") return notAllowed("_search accepts POST only");
      return postSearch("");
    }
    if (seg.back() == "$validate" && (seg.size() == 1 || (seg.size() == 2 && isResourceType(seg[0])))) {
      if (m != "POST") return notAllowed("$validate accepts POST only");
      return validateOperation(seg.size() == 2 ? seg[0] : "");
    }
    if (seg.size() == 3 && seg[0] == "Patient" && seg[2] == "$everything") {
      if (m != "GET") return notAllowed("$everything accepts GET only");
      if (!isValidId(seg[1])) return errorResponse(ErrorCode::kInvalid, "'" + seg[1] + "' is not a valid resource id", "Patient.id");
      return everything(seg[1]);
    }
    if (seg[0][0] == '$' || (seg.size() >= 2 && seg.back()[0] == '$'))
      return errorResponse(ErrorCode::kNotFound, "operation '" + seg.back() + "' is not supported");
    const std::string& type = seg[0];
    if (!isResourceType(type)) return errorResponse(ErrorCode::kNotFound, "'" + type + "' is not a FHIR R4 resource type");
    if (seg.size() == 1) {
      if (m == "GET") return search(type, req_.query, type);
      if (m == "POST") return create(type);
      if (m == "PUT") return conditionalUpdate(type);
      if (m == "DELETE") return conditionalDelete(type);
      return notAllowed(m + " is not allowed on a resource type");
    }
    const std::string& second = seg[1];
    if (second == "_search") {
      if (seg.size() != 2) return notFound();
      if (m != "POST") return notAllowed("_search accepts POST only");
      return postSearch(type);
    }
    if (second == "_history") {
      if (seg.size() != 2) return notFound();
      if (m != "GET") return notAllowed("_history accepts GET only");
      return history(type, "");
    }
    if (!isValidId(second))
      return errorResponse(ErrorCode::kInvalid, "'" + second + "' is not a valid resource id", type + ".id");
    if (seg.size() == 2) {
      if (m == "GET") return read(type, second);
      if (m == "PUT") return update(type, second);
      if (m == "DELETE") return remove(type, second);
      return notAllowed(m + " is not allowed on a resource instance");
    }
    if (seg[2] != "_history" || seg.size() > 4) return notFound();
    if (m != "GET") return notAllowed("_history accepts GET only");
    if (seg.size() == 3) return history(type, second);
    return vread(type, second, seg[3]);
  }

 private:
  FhirResponse notFound() { return errorResponse(ErrorCode::kNotFound, "no FHIR endpoint at '" + req_.path + "'"); }
  FhirResponse notAllowed(const std::string& why) { return errorResponse(ErrorCode::kMethodNotAllowed, why); }

  std::string location(const ResourceVersion& v) const {
    return req_.baseUrl + "/" + v.type + "/" + v.id + "/_history/" + std::to_string(v.version);
  }

  void versionHeaders(FhirResponse& r, const ResourceVersion& v) {
    r.headers.emplace_back("ETag", etagOf(v.version));
    r.headers.emplace_back("Last-Modified", formatHttpDate(v.lastUpdatedMs));
  }

  FhirResponse resourceResponse(const ResourceVersion& v, int status) {
    FhirResponse r;
    r.status = status;
    r.body = v.body;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    versionHeaders(r, v);
    return r;
  }

  // The answer to a write, shaped by Prefer: return=...
  FhirResponse writeResponse(const WriteOutcome& w, bool withLocation, const char* what) {
    FhirResponse r;
    r.status = w.status;
    if (withLocation) r.headers.emplace_back("Location", location(w.version));
    versionHeaders(r, w.version);
    if (prefer_.ret == Prefer::kMinimal) return r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    if (prefer_.ret == Prefer::kOutcome) {
      Issue i{"information", "informational", std::string(what) + " " + w.version.type + "/" + w.version.id +
                                                  " version " + std::to_string(w.version.version), ""};
      r.body = operationOutcome(i);
    } else {
      r.body = w.version.body;
    }
    return r;
  }

  // Inside a write's unit, once it has succeeded: the request's audit record goes into the same
  // commit (see FhirRequest::auditRecord).
  Result<void> attachAudit(WriteTxn& txn, int status) {
    if (req_.alsoInUnit) {
      auto also = req_.alsoInUnit(txn, status);
      if (!also.ok()) return also;
    }
    if (!req_.auditRecord) return {};
    auto r = txn.attachAudit(req_.auditRecord(status));
    if (r.ok() && req_.auditAttached) *req_.auditAttached = true;
    return r;
  }

  Result<Incoming> incoming(const std::string& expectedType) {
    auto ct = checkContentType(req_.contentType);
    if (!ct.ok()) return ct.error();
    Incoming in;
    auto p = parseResource(req_.body, o_.json, in);
    if (!p.ok()) return p.error();
    auto c = checkResource(in.json, expectedType, "");
    if (!c.ok()) return c.error();
    auto v = validateWhole(o_, req_.body, expectedType);
    if (!v.ok()) return v.error();
    return in;
  }

  Result<std::optional<std::int64_t>> ifMatch() {
    if (req_.ifMatch.empty()) return std::optional<std::int64_t>();
    std::int64_t v;
    if (!parseETag(req_.ifMatch, v))
      return makeError(ErrorCode::kInvalid, "If-Match '" + req_.ifMatch + "' is not a version ETag such as W/\"3\"");
    return std::optional<std::int64_t>(v);
  }

  // --- read side -------------------------------------------------------------------------------

  // With a guard: may the caller see this resource? A resource it may not see is answered as
  // one that does not exist, so that its existence is not revealed.
  Result<bool> visible(const ResourceVersion& v) {
    if (!guard_) return true;
    auto ok = guard_->readable({v});
    if (!ok.ok()) return ok.error();
    return static_cast<bool>(ok->front());
  }

  FhirResponse read(const std::string& type, const std::string& id) {
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kRead);
      if (!a.ok()) return errorResponse(a.error());
    }
    auto r = store_.read(type, id);
    if (!r.ok()) return errorResponse(r.error());
    if (!r->has_value()) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " is not known");
    const ResourceVersion& v = **r;
    if (guard_) {
      auto vis = visible(v);
      if (!vis.ok()) return errorResponse(vis.error());
      if (!*vis) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " is not known");
      guard_->touched(v);
    }
    if (v.deleted) {
      FhirResponse g = errorResponse(ErrorCode::kGone, type + "/" + id + " was deleted");
      versionHeaders(g, v);
      return g;
    }
    return resourceResponse(v, 200);
  }

  FhirResponse vread(const std::string& type, const std::string& id, const std::string& vid) {
    std::int64_t version;
    if (!parseVersion(vid, version)) return errorResponse(ErrorCode::kNotFound, "'" + vid + "' is not a version id");
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kVread);
      if (!a.ok()) return errorResponse(a.error());
      auto cur = store_.read(type, id);
      if (!cur.ok()) return errorResponse(cur.error());
      bool ok = false;
      if (cur->has_value()) {
        auto vis = visible(**cur);
        if (!vis.ok()) return errorResponse(vis.error());
        ok = *vis;
      }
      if (!ok) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " has no version " + vid);
    }
    auto r = store_.vread(type, id, version);
    if (!r.ok()) return errorResponse(r.error());
    if (!r->has_value()) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " has no version " + vid);
    const ResourceVersion& v = **r;
    if (guard_) guard_->touched(v);
    if (v.deleted) {
      FhirResponse g = errorResponse(ErrorCode::kGone, "version " + vid + " of " + type + "/" + id + " is a deletion");
      versionHeaders(g, v);
      return g;
    }
    return resourceResponse(v, 200);
  }

  FhirResponse postSearch(const std::string& type) {
    std::string ct = lower(req_.contentType);
    if (ct.rfind("application/x-www-form-urlencoded", 0) != 0)
      return errorResponse(ErrorCode::kUnsupportedMediaType, "_search takes application/x-www-form-urlencoded parameters");
    Params all = req_.query;
    for (auto& p : parseQueryString(req_.body)) all.push_back(std::move(p));
    return search(type, all, type);
  }

  FhirResponse search(const std::string& type, const Params& params, const std::string& pathPart) {
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kSearch);
      if (!a.ok()) return errorResponse(a.error());
    }
    auto ps = parseSearch(type, params, o_.search, prefer_.strict, req_.baseUrl);
    if (!ps.ok()) return errorResponse(ps.error());
    auto g = guardSearch(*ps);
    if (!g.ok()) return errorResponse(g.error());
    auto body = runSearch(store_, *ps, pathPart);
    if (!body.ok()) return errorResponse(body.error());
    FhirResponse r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    r.body = std::move(body.value());
    return r;
  }

  // Patient/{id}/$everything: the patient and every resource of their compartment the caller may
  // read, type by type through the same access constraints as a search, updated at or after
  // `_since` when given, of the types `_type` lists when given; all of them in one searchset (at
  // most kEverythingMax). meta.lastUpdated is the time the reads began: the `_since` of the next
  // export, for software that pulls what changed.
  static constexpr std::size_t kEverythingMax = 10000;
  FhirResponse everything(const std::string& id) {
    std::string since;
    std::set<std::string> types;
    for (const auto& [k, v] : req_.query) {
      if (k == "_since") {
        since = v;
      } else if (k == "_type") {
        std::size_t at = 0;
        while (at <= v.size()) {
          auto comma = v.find(',', at);
          std::string t = v.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
          if (!isResourceType(t)) return errorResponse(ErrorCode::kInvalid, "_type: '" + t + "' is not a FHIR R4 resource type", "_type");
          types.insert(t);
          if (comma == std::string::npos) break;
          at = comma + 1;
        }
      } else if (k != "_format") {
        return errorResponse(ErrorCode::kInvalid, "$everything takes _since and _type here ('" + k + "' is not supported)", k);
      }
    }
    if (!since.empty()) {
      auto check = parseSearch("Patient", {{"_lastUpdated", "ge" + since}}, o_.search, true, req_.baseUrl);
      if (!check.ok()) return errorResponse(ErrorCode::kInvalid, "_since: '" + since + "' is not an instant", "_since");
    }
    auto patient = read("Patient", id);  // 404 when unknown, or not the caller's to see
    if (patient.status != 200) return patient;
    std::vector<ResourceVersion> found;
    std::set<std::pair<std::string, std::string>> seen;
    SearchLimits limits = o_.search;
    for (const auto& [type, params] : patientCompartment()) {
      if (!types.empty() && !types.count(type)) continue;
      if (guard_ && !guard_->allowType(type, Interaction::kSearch).ok()) continue;  // not the caller's to see
      std::vector<std::pair<std::string, std::string>> links;
      if (type == "Patient") links.emplace_back("_id", id);
      else
        for (const auto& p : params) links.emplace_back(p, "Patient/" + id);
      for (const auto& [param, value] : links) {
        Params q = {{param, value}, {"_count", std::to_string(limits.maxCount)}};
        if (!since.empty()) q.emplace_back("_lastUpdated", "ge" + since);
        auto ps = parseSearch(type, q, limits, true, req_.baseUrl);
        if (!ps.ok()) continue;  // a compartment parameter this server does not index
        auto g = guardSearch(*ps);
        if (!g.ok()) return errorResponse(g.error());
        while (true) {
          auto page = store_.search(ps->query);
          if (!page.ok()) return errorResponse(page.error());
          for (auto& v : page->items)
            if (seen.emplace(v.type, v.id).second) found.push_back(std::move(v));
          if (found.size() > kEverythingMax)
            return errorResponse(ErrorCode::kInvalid, "the record holds more than " + std::to_string(kEverythingMax) +
                                                          " resources: narrow it with _type or _since");
          if (page->next.empty()) break;
          ps->query.cursor = page->next;
          ps->query.backwards = false;
        }
      }
    }
    if (guard_)
      for (const auto& v : found) guard_->touched(v);
    std::string out;
    out.reserve(256 + found.size() * 1024);
    appendBundleHead(out, "searchset");
    out += ",\"total\":" + std::to_string(found.size());
    std::string self = req_.baseUrl + "/Patient/" + id + "/$everything";
    std::string sep = "?";
    for (const auto& [k, v] : req_.query) {
      self += sep + k + "=" + v;
      sep = "&";
    }
    appendLinks(out, {{"self", self}});
    if (!found.empty()) {
      out += ",\"entry\":[";
      for (std::size_t i = 0; i < found.size(); ++i) {
        if (i) out += ',';
        out += "{\"fullUrl\":";
        appendJsonString(out, req_.baseUrl + "/" + found[i].type + "/" + found[i].id);
        out += ",\"resource\":" + found[i].body + ",\"search\":{\"mode\":\"match\"}}";
      }
      out += ']';
    }
    out += '}';
    FhirResponse r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    r.body = std::move(out);
    return r;
  }

  // Restricts a parsed search to what the caller may read: its own conditions, and those of every
  // chained or _has type, so that counts, includes and chains reveal nothing hidden.
  Result<void> guardSearch(ParsedSearch& ps) { return guard_ ? guard_->constrain(ps.query) : Result<void>(); }

  // Runs a parsed search, its includes, and renders the searchset. `source` is the store or a
  // write unit (GET entries of a transaction see its writes).
  template <typename Source>
  Result<std::string> runSearch(Source& source, const ParsedSearch& ps, const std::string& pathPart) {
    auto page = source.search(ps.query);
    if (!page.ok()) return page.error();
    std::vector<ResourceVersion> included;
    bool truncated = false;
    if (!ps.includes.empty() && !page->items.empty()) {
      auto r = includes(source, ps, page->items, included, truncated);
      if (!r.ok()) return r.error();
      if (guard_ && !included.empty()) {
        auto ok = guard_->readable(included);
        if (!ok.ok()) return ok.error();
        std::vector<ResourceVersion> kept;
        for (std::size_t i = 0; i < included.size(); ++i)
          if ((*ok)[i]) kept.push_back(std::move(included[i]));
        included = std::move(kept);
      }
    }
    if (guard_) {
      for (const auto& v : page->items) guard_->touched(v);
      for (const auto& v : included) guard_->touched(v);
    }
    return searchBundle(ps, *page, included, truncated, pathPart);
  }

  template <typename Source>
  Result<void> includes(Source& source, const ParsedSearch& ps, const std::vector<ResourceVersion>& matches,
                        std::vector<ResourceVersion>& included, bool& truncated) {
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& m : matches) seen.emplace(m.type, m.id);
    int budget = o_.search.maxIncluded;
    auto apply = [&](const std::vector<ResourceVersion>& from, bool iterateOnly, std::vector<ResourceVersion>& found) -> Result<void> {
      for (const auto& spec : ps.includes) {
        if (iterateOnly && !spec.iterate) continue;
        store::IncludeQuery iq;
        iq.reverse = spec.reverse;
        iq.limit = budget + 1;
        if (!spec.reverse) {
          for (const auto& v : from)
            if (v.type == spec.sourceType && v.rid) iq.rids.push_back(v.rid);
          if (iq.rids.empty()) continue;
          if (spec.param != "*") iq.params.push_back(spec.sourceType + "." + spec.param);
          iq.targetType = spec.targetType;
        } else {
          for (const auto& v : from)
            if (spec.targetType.empty() || v.type == spec.targetType) iq.targets.emplace_back(v.type, v.id);
          if (iq.targets.empty()) continue;
          if (spec.param == "*") {
            for (const auto* d : search::SearchDefinitions::r4().forType(spec.sourceType))
              if (d->kind == search::ParamKind::kReference && d->type != "Resource") iq.params.push_back(d->key);
          } else {
            iq.params.push_back(spec.sourceType + "." + spec.param);
          }
          iq.limit = budget + 1;
        }
        auto got = source.include(iq);
        if (!got.ok()) return got.error();
        for (auto& v : *got) {
          if (spec.reverse && v.type != spec.sourceType) continue;
          if (!seen.emplace(v.type, v.id).second) continue;
          if (budget <= 0) {
            truncated = true;
            return {};
          }
          --budget;
          found.push_back(std::move(v));
        }
      }
      return {};
    };
    std::vector<ResourceVersion> level1, level2;
    auto r = apply(matches, false, level1);
    if (!r.ok()) return r;
    if (!truncated && !level1.empty()) {
      r = apply(level1, true, level2);
      if (!r.ok()) return r;
    }
    included = std::move(level1);
    for (auto& v : level2) included.push_back(std::move(v));
    return {};
  }

  std::string searchBundle(const ParsedSearch& ps, const store::SearchPage& page, const std::vector<ResourceVersion>& included,
                           bool truncated, const std::string& pathPart) {
    std::string out;
    out.reserve(256 + (page.items.size() + included.size()) * 1024);
    appendBundleHead(out, "searchset");
    if (page.total >= 0) out += ",\"total\":" + std::to_string(page.total);
    std::string base = req_.baseUrl + (pathPart.empty() ? "" : "/" + pathPart);
    const auto& q = ps.query;
    std::vector<std::pair<std::string, std::string>> links;
    if (!q.cursor.empty())
      links.emplace_back("self", pageUrl(base, ps.applied, "_cursor", (q.backwards ? "p" : "n") + q.cursor));
    else
      links.emplace_back("self", pageUrl(base, ps.applied, q.offset ? "_offset" : nullptr, std::to_string(q.offset)));
    if (!ps.summaryCount() && q.count > 0) {
      links.emplace_back("first", pageUrl(base, ps.applied));
      if (!page.previous.empty()) links.emplace_back("previous", pageUrl(base, ps.applied, "_cursor", "p" + page.previous));
      if (!page.next.empty()) links.emplace_back("next", pageUrl(base, ps.applied, "_cursor", "n" + page.next));
    }
    appendLinks(out, links);
    if (!page.items.empty() || !included.empty() || truncated) {
      out += ",\"entry\":[";
      bool first = true;
      auto entry = [&](const ResourceVersion& v, const char* mode, bool shape) {
        if (!first) out += ',';
        first = false;
        out += "{\"fullUrl\":";
        appendJsonString(out, req_.baseUrl + "/" + v.type + "/" + v.id);
        out += ",\"resource\":";
        out += shape ? shapeBody(v.type, v.body, ps) : v.body;
        out += ",\"search\":{\"mode\":\"";
        out += mode;
        out += "\"}}";
      };
      for (const auto& v : page.items) entry(v, "match", true);
      for (const auto& v : included) entry(v, "include", ps.summary != Summary::kNone && ps.elements.empty());
      if (truncated) {
        if (!first) out += ',';
        out += "{\"resource\":{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"warning\",\"code\":\"too-costly\","
               "\"diagnostics\":\"more than " +
               std::to_string(o_.search.maxIncluded) +
               " resources to include: the rest were left out\"}]},\"search\":{\"mode\":\"outcome\"}}";
      }
      out += ']';
    }
    out += '}';
    return out;
  }

  FhirResponse history(const std::string& type, const std::string& id) {
    auto ph = parseHistory(req_.query, o_.search, prefer_.strict);
    if (!ph.ok()) return errorResponse(ph.error());
    ph->query.type = type;
    ph->query.id = id;
    if (guard_) {
      auto a = guard_->allowType(type, id.empty() ? Interaction::kHistory : Interaction::kVread);
      if (!a.ok()) return errorResponse(a.error());
    }
    if (!id.empty()) {
      auto cur = store_.read(type, id);
      if (!cur.ok()) return errorResponse(cur.error());
      if (!cur->has_value()) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " is not known");
      if (guard_) {
        auto vis = visible(**cur);
        if (!vis.ok()) return errorResponse(vis.error());
        if (!*vis) return errorResponse(ErrorCode::kNotFound, type + "/" + id + " is not known");
      }
    }
    auto page = store_.history(ph->query);
    if (!page.ok()) return errorResponse(page.error());
    std::string out;
    appendBundleHead(out, "history");
    std::string base = req_.baseUrl + (type.empty() ? "" : "/" + type) + (id.empty() ? "" : "/" + id) + "/_history";
    std::vector<std::pair<std::string, std::string>> links;
    auto cursor = [&]() -> std::string {
      for (const auto& [k, v] : req_.query)
        if (k == "_cursor") return v;
      return {};
    }();
    links.emplace_back("self", pageUrl(base, ph->applied, cursor.empty() ? nullptr : "_cursor", cursor));
    links.emplace_back("first", pageUrl(base, ph->applied));
    if (page->nextCursor) links.emplace_back("next", pageUrl(base, ph->applied, "_cursor", std::to_string(*page->nextCursor)));
    appendLinks(out, links);
    if (!page->items.empty()) {
      out += ",\"entry\":[";
      bool first = true;
      for (const auto& v : page->items) {
        if (guard_) guard_->touched(v);
        if (!first) out += ',';
        first = false;
        out += "{\"fullUrl\":";
        appendJsonString(out, req_.baseUrl + "/" + v.type + "/" + v.id);
        if (!v.deleted) {
          out += ",\"resource\":";
          out += v.body;
        }
        out += ",\"request\":{\"method\":\"" + v.method + "\",\"url\":";
        appendJsonString(out, v.method == "POST" ? v.type : v.type + "/" + v.id);
        out += "},\"response\":{\"status\":\"";
        out += v.deleted ? "204 No Content" : (v.method == "POST" || v.version == 1 ? "201 Created" : "200 OK");
        out += "\",\"etag\":";
        appendJsonString(out, etagOf(v.version));
        out += ",\"lastModified\":\"" + formatInstant(v.lastUpdatedMs) + "\"}}";
      }
      out += ']';
    }
    out += '}';
    FhirResponse r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    r.body = std::move(out);
    return r;
  }

  FhirResponse capability();

  // $validate: the body is the resource, or Parameters with a `resource` parameter (and a `profile`
  // one); `profile` may also be in the URL. Answers 200 with an OperationOutcome listing every issue
  // (or one saying all is well); a profile that is not known is an error of the request (400).
  FhirResponse validateOperation(const std::string& type) {
    auto ct = checkContentType(req_.contentType);
    if (!ct.ok()) return errorResponse(ct.error());
    Incoming in;
    auto p = parseResource(req_.body, o_.json, in);
    if (!p.ok()) return errorResponse(p.error());
    std::string_view text = req_.body;
    std::string profile;
    for (const auto& [k, v] : req_.query)
      if (k == "profile") profile = v;
    if (in.json.is_object() && in.json.value("resourceType", "") == "Parameters") {
      Span found;
      auto params = findMember(text, in.span, "parameter");
      for (const Span& ps : arrayElements(text, params)) {
        Span name = findMember(text, ps, "name");
        std::string_view n = text.substr(name.begin, name.end - name.begin);
        if (n == "\"resource\"") found = findMember(text, ps, "resource");
        if (n == "\"profile\"")
          for (const auto& pp : in.json.value("parameter", Json::array()))
            if (pp.is_object() && pp.value("name", "") == "profile")
              for (const char* key : {"valueCanonical", "valueUri", "valueString"})
                if (pp.contains(key) && pp[key].is_string()) profile = pp[key].get<std::string>();
      }
      if (found.begin == found.end)
        return errorResponse(ErrorCode::kInvalid, "Parameters for $validate need a 'resource' parameter", "Parameters.parameter");
      text = text.substr(found.begin, found.end - found.begin);
    }
    ValidationResult vr = Validator::instance().validate(text, type, &o_.policy);
    if (!profile.empty()) {
      std::vector<Issue> issues;
      auto outcome = profiles::ProfileValidator::Outcome::Unknown;
      if (o_.profiles) outcome = o_.profiles->validate(text, profile, issues);
      else issues.push_back(Issue{"error", "not-found", "Profile '" + profile + "' is not known: no profile is loaded", ""});
      if (outcome != profiles::ProfileValidator::Outcome::Checked) {
        Error e = makeError(ErrorCode::kInvalid, issues.empty() ? "profile '" + profile + "' is not known" : issues[0].diagnostics);
        e.outcome = operationOutcome(issues);
        return errorResponse(e);
      }
      vr.issues.insert(vr.issues.end(), issues.begin(), issues.end());
    }
    FhirResponse r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    if (vr.issues.empty()) vr.issues.push_back(Issue{"information", "informational", "No issues: the resource is valid FHIR R4", ""});
    r.body = operationOutcome(vr.issues);
    return r;
  }

  // --- write side ------------------------------------------------------------------------------

  FhirResponse create(const std::string& type) {
    auto in = incoming(type);
    if (!in.ok()) return errorResponse(in.error());
    if (in->json.contains("id"))
      return errorResponse(ErrorCode::kInvalid, "a create must not carry an id (the server assigns it); use PUT to choose one",
                           type + ".id");
    Params cond;
    if (!req_.ifNoneExist.empty()) {
      std::string q = req_.ifNoneExist;
      if (auto qm = q.find('?'); qm != std::string::npos) q = q.substr(qm + 1);
      cond = parseQueryString(q);
    }
    std::string id = newId();
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kCreate);
      if (!a.ok()) return errorResponse(a.error());
    }
    PreparedResource prepared = prepare(type, id, in.value(), {}, req_.baseUrl);
    WriteOutcome out;
    auto r = store_.write([&](WriteTxn& txn) -> Result<void> {
      if (!req_.ifNoneExist.empty()) {
        auto matches = conditionalMatches(txn, type, cond, o_.search, guard_);
        if (!matches.ok()) return matches.error();
        if (matches->size() > 1)
          return makeError(ErrorCode::kPreconditionFailed, "If-None-Exist matches more than one " + type);
        if (matches->size() == 1) {
          out = WriteOutcome{200, std::move(matches->front()), false};
          return attachAudit(txn, out.status);
        }
      }
      auto c = createIn(txn, type, id, prepared, guard_);
      if (!c.ok()) return c.error();
      out = std::move(c.value());
      return attachAudit(txn, out.status);
    });
    if (!r.ok()) return errorResponse(r.error());
    return writeResponse(out, true, out.wrote ? "Created" : "Found existing");
  }

  FhirResponse update(const std::string& type, const std::string& id) {
    auto in = incoming(type);
    if (!in.ok()) return errorResponse(in.error());
    auto bodyId = in->json.find("id");
    if (bodyId == in->json.end())
      return errorResponse(ErrorCode::kInvalid, "an update must carry the id of the URL ('" + id + "')", type + ".id");
    if (bodyId->get<std::string>() != id)
      return errorResponse(ErrorCode::kInvalid,
                           "the body's id '" + bodyId->get<std::string>() + "' differs from the URL's '" + id + "'",
                           type + ".id");
    auto im = ifMatch();
    if (!im.ok()) return errorResponse(im.error());
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kUpdate);
      if (!a.ok()) return errorResponse(a.error());
    }
    PreparedResource prepared = prepare(type, id, in.value(), {}, req_.baseUrl);
    WriteOutcome out;
    auto r = store_.write([&](WriteTxn& txn) -> Result<void> {
      auto u = updateIn(txn, type, id, prepared, im.value(), guard_);
      if (!u.ok()) return u.error();
      out = std::move(u.value());
      return attachAudit(txn, out.status);
    });
    if (!r.ok()) return errorResponse(r.error());
    return writeResponse(out, out.status == 201, out.status == 201 ? "Created" : "Updated");
  }

  FhirResponse conditionalUpdate(const std::string& type) {
    auto in = incoming(type);
    if (!in.ok()) return errorResponse(in.error());
    auto im = ifMatch();
    if (!im.ok()) return errorResponse(im.error());
    std::string bodyId = in->json.contains("id") ? in->json["id"].get<std::string>() : std::string();
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kUpdate);
      if (!a.ok()) return errorResponse(a.error());
    }
    WriteOutcome out;
    auto r = store_.write([&](WriteTxn& txn) -> Result<void> {
      auto matches = conditionalMatches(txn, type, req_.query, o_.search, guard_);
      if (!matches.ok()) return matches.error();
      if (matches->size() > 1) return makeError(ErrorCode::kPreconditionFailed, "the condition matches more than one " + type);
      std::string id;
      if (matches->size() == 1) {
        id = matches->front().id;
        if (!bodyId.empty() && bodyId != id)
          return makeError(ErrorCode::kInvalid, "the body's id '" + bodyId + "' differs from the matched " + type + "/" + id,
                           type + ".id");
      } else if (!bodyId.empty()) {
        auto cur = txn.currentHead(type, bodyId);
        if (!cur.ok()) return cur.error();
        if (cur->has_value() && !(*cur)->deleted)
          return makeError(ErrorCode::kConflict, type + "/" + bodyId + " exists but does not match the condition");
        id = bodyId;
      } else {
        id = newId();
      }
      auto u = updateIn(txn, type, id, prepare(type, id, in.value(), {}, req_.baseUrl), im.value(), guard_);
      if (!u.ok()) return u.error();
      out = std::move(u.value());
      return attachAudit(txn, out.status);
    });
    if (!r.ok()) return errorResponse(r.error());
    return writeResponse(out, true, out.status == 201 ? "Created" : "Updated");
  }

  // 204 when nothing was deleted or the client prefers a minimal answer, else 200 with an outcome.
  int deleteStatus(const WriteOutcome& w) const { return !w.wrote || prefer_.ret == Prefer::kMinimal ? 204 : 200; }

  FhirResponse deleteResponse(const WriteOutcome& w) {
    FhirResponse r;
    r.status = deleteStatus(w);
    if (!w.wrote) return r;
    versionHeaders(r, w.version);
    if (r.status == 204) return r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    r.body = operationOutcome(Issue{"information", "informational",
                                    "Deleted " + w.version.type + "/" + w.version.id + " (version " +
                                        std::to_string(w.version.version) + ")",
                                    ""});
    return r;
  }

  FhirResponse remove(const std::string& type, const std::string& id) {
    auto im = ifMatch();
    if (!im.ok()) return errorResponse(im.error());
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kDelete);
      if (!a.ok()) return errorResponse(a.error());
    }
    WriteOutcome out;
    auto r = store_.write([&](WriteTxn& txn) -> Result<void> {
      auto d = deleteIn(txn, type, id, im.value(), guard_);
      if (!d.ok()) return d.error();
      out = std::move(d.value());
      return attachAudit(txn, deleteStatus(out));
    });
    if (!r.ok()) return errorResponse(r.error());
    return deleteResponse(out);
  }

  FhirResponse conditionalDelete(const std::string& type) {
    if (guard_) {
      auto a = guard_->allowType(type, Interaction::kDelete);
      if (!a.ok()) return errorResponse(a.error());
    }
    WriteOutcome out;
    auto r = store_.write([&](WriteTxn& txn) -> Result<void> {
      auto matches = conditionalMatches(txn, type, req_.query, o_.search, guard_);
      if (!matches.ok()) return matches.error();
      if (matches->size() > 1) return makeError(ErrorCode::kPreconditionFailed, "the condition matches more than one " + type);
      if (!matches->empty()) {
        auto d = deleteIn(txn, type, matches->front().id, std::nullopt, guard_);
        if (!d.ok()) return d.error();
        out = std::move(d.value());
      }
      return attachAudit(txn, deleteStatus(out));
    });
    if (!r.ok()) return errorResponse(r.error());
    return deleteResponse(out);
  }

  FhirResponse bundle();

  store::ResourceStore& store_;
  const FhirServiceOptions& o_;
  const FhirRequest& req_;
  Prefer prefer_;
  AccessGuard* guard_ = req_.guard;

  friend class BundleProcessor;
};

// --- batch and transaction ------------------------------------------------------------------------

namespace {

struct BundleEntry {
  std::size_t index = 0;
  std::string where;  // Bundle.entry[i]
  std::string method;
  std::string fullUrl;
  std::string type;
  std::string id;
  bool conditional = false;
  Params condParams;
  Params getParams;
  std::string getPath;  // for GET: the path below the base
  std::string ifNoneExist;
  std::optional<std::int64_t> ifMatch;
  bool hasResource = false;
  Incoming in;
  // Made ready before the write unit when nothing in it needs the database (see preparePlain).
  std::optional<PreparedResource> prepared;
  // Results.
  bool done = false;
  WriteOutcome outcome;
  std::string getBody;  // GET entries: the resource or searchset returned
  int getStatus = 200;
  std::optional<Error> error;
};

int methodOrder(const std::string& m) {
  if (m == "DELETE") return 0;
  if (m == "POST") return 1;
  if (m == "PUT" || m == "PATCH") return 2;
  return 3;
}

}  // namespace

class BundleProcessor {
 public:
  BundleProcessor(FhirService::Impl& h, bool transaction) : h_(h), transaction_(transaction) {}

  FhirResponse run(const Json& bundle, std::string_view text, Span whole) {
    auto entriesIt = bundle.find("entry");
    if (entriesIt != bundle.end() && !entriesIt->is_array())
      return errorResponse(ErrorCode::kInvalid, "entry must be an array", "Bundle.entry");
    std::size_t n = entriesIt == bundle.end() ? 0 : entriesIt->size();
    if (static_cast<int>(n) > h_.o_.maxBundleEntries)
      return errorResponse(ErrorCode::kTooLarge, "the Bundle has " + std::to_string(n) + " entries; at most " +
                                                     std::to_string(h_.o_.maxBundleEntries) + " are accepted");
    std::vector<Span> entrySpans;
    if (n) entrySpans = arrayElements(text, findMember(text, whole, "entry"));
    if (entrySpans.size() != n) return errorResponse(ErrorCode::kInternal, "Bundle text and structure disagree");
    entries_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto r = parseEntry(i, (*entriesIt)[i], text, entrySpans[i]);
      if (!r.ok()) {
        if (transaction_) return errorResponse(r.error());
        entries_[i].error = r.error();
      }
    }
    if (transaction_) {
      auto v = validateResource(h_.o_, text, "Bundle");
      if (!v.ok()) return errorResponse(v.error());
      for (const auto& be : entries_) {
        if (!be.hasResource) continue;
        auto vp = validateDeclaredProfiles(h_.o_, text.substr(be.in.span.begin, be.in.span.end - be.in.span.begin),
                                           be.where + ".resource");
        if (!vp.ok()) return errorResponse(vp.error());
      }
      return runTransaction();
    }
    return runBatch();
  }

 private:
  Result<void> parseEntry(std::size_t i, const Json& e, std::string_view text, Span span) {
    BundleEntry& be = entries_[i];
    be.index = i;
    be.where = "Bundle.entry[" + std::to_string(i) + "]";
    if (!e.is_object()) return makeError(ErrorCode::kInvalid, "an entry must be an object", be.where);
    if (auto f = e.find("fullUrl"); f != e.end()) {
      if (!f->is_string()) return makeError(ErrorCode::kInvalid, "fullUrl must be a string", be.where + ".fullUrl");
      be.fullUrl = f->get<std::string>();
    }
    auto req = e.find("request");
    if (req == e.end() || !req->is_object())
      return makeError(ErrorCode::kInvalid, "each entry of a batch or transaction needs a request", be.where + ".request");
    auto method = req->find("method");
    auto url = req->find("url");
    if (method == req->end() || !method->is_string())
      return makeError(ErrorCode::kInvalid, "request.method is required", be.where + ".request.method");
    if (url == req->end() || !url->is_string())
      return makeError(ErrorCode::kInvalid, "request.url is required", be.where + ".request.url");
    be.method = method->get<std::string>();
    std::string u = url->get<std::string>();
    if (u.rfind(h_.req_.baseUrl + "/", 0) == 0) u = u.substr(h_.req_.baseUrl.size() + 1);
    while (!u.empty() && u[0] == '/') u.erase(0, 1);
    std::string path = u.substr(0, u.find('?'));
    std::string query = u.find('?') == std::string::npos ? "" : u.substr(u.find('?') + 1);
    std::string typePart = path.substr(0, path.find('/'));
    std::string rest = path.find('/') == std::string::npos ? "" : path.substr(path.find('/') + 1);
    if (auto ine = req->find("ifNoneExist"); ine != req->end() && ine->is_string()) {
      be.ifNoneExist = ine->get<std::string>();
      if (auto qm = be.ifNoneExist.find('?'); qm != std::string::npos) be.ifNoneExist = be.ifNoneExist.substr(qm + 1);
    }
    if (auto im = req->find("ifMatch"); im != req->end() && im->is_string()) {
      std::int64_t v;
      if (!parseETag(im->get<std::string>(), v))
        return makeError(ErrorCode::kInvalid, "ifMatch is not a version ETag", be.where + ".request.ifMatch");
      be.ifMatch = v;
    }
    if (be.method == "GET") {
      be.getPath = path;
      be.getParams = parseQueryString(query);
      return {};
    }
    if (be.method != "POST" && be.method != "PUT" && be.method != "DELETE")
      return makeError(ErrorCode::kMethodNotAllowed, "request.method '" + be.method + "' is not supported in a Bundle",
                       be.where + ".request.method");
    if (!isResourceType(typePart))
      return makeError(ErrorCode::kInvalid, "request.url '" + u + "' does not start with a resource type", be.where + ".request.url");
    be.type = typePart;
    if (be.method == "POST") {
      if (!rest.empty() || !query.empty())
        return makeError(ErrorCode::kInvalid, "a POST entry's url is the resource type alone", be.where + ".request.url");
    } else if (!query.empty()) {
      if (!rest.empty()) return makeError(ErrorCode::kInvalid, "a conditional url is Type?params", be.where + ".request.url");
      be.conditional = true;
      be.condParams = parseQueryString(query);
    } else {
      if (rest.empty() || rest.find('/') != std::string::npos || !isValidId(rest))
        return makeError(ErrorCode::kInvalid, "request.url must be Type/id or Type?params", be.where + ".request.url");
      be.id = rest;
    }
    if (be.method == "DELETE") return {};
    auto res = e.find("resource");
    if (res == e.end()) return makeError(ErrorCode::kInvalid, "a " + be.method + " entry needs a resource", be.where + ".resource");
    auto c = checkResource(*res, be.type, be.where + ".resource");
    if (!c.ok()) return c;
    Span rs = findMember(text, span, "resource");
    be.in.json = *res;
    be.in.text = text;
    be.in.span = rs;
    be.hasResource = true;
    if (be.method == "PUT" && !be.conditional) {
      auto bid = res->find("id");
      if (bid == res->end() || bid->get<std::string>() != be.id)
        return makeError(ErrorCode::kInvalid, "the resource's id must equal the id in request.url", be.where + ".resource.id");
    }
    // A transaction is validated whole once its entries are understood; a batch entry alone.
    if (!transaction_) {
      return validateWhole(h_.o_, text.substr(rs.begin, rs.end - rs.begin), be.type, be.where + ".resource");
    }
    return {};
  }

  // --- transaction: all or nothing -----------------------------------------------------------

  // The interaction a write entry stands for.
  static Interaction interactionOf(const BundleEntry& e) {
    return e.method == "DELETE" ? Interaction::kDelete : e.method == "POST" ? Interaction::kCreate : Interaction::kUpdate;
  }

  FhirResponse runTransaction() {
    if (h_.guard_)
      for (auto& e : entries_) {
        if (e.method == "GET") continue;
        auto a = h_.guard_->allowType(e.type, interactionOf(e));
        if (!a.ok()) return errorResponse(at(e, a.error()));
      }
    preparePlain();
    std::optional<Error> failure;
    auto r = h_.store_.write([&](WriteTxn& txn) -> Result<void> {
      auto res = transactionIn(txn);
      if (!res.ok()) failure = res.error();
      else res = h_.attachAudit(txn, 200);
      return res;
    });
    if (!r.ok()) return errorResponse(failure ? *failure : r.error());
    return responseBundle("transaction-response");
  }

  Result<void> transactionIn(WriteTxn& txn) {
    // 1. Resolve the target of every entry and the ids of new resources.
    std::set<std::string> targets;
    for (auto& e : entries_) {
      if (e.method == "GET") continue;
      auto r = resolveTarget(txn, e);
      if (!r.ok()) return at(e, r.error());
      if (!e.id.empty() && !targets.insert(e.type + "/" + e.id).second)
        return at(e, makeError(ErrorCode::kInvalid, "two entries of the transaction change " + e.type + "/" + e.id));
      if (!e.fullUrl.empty() && !e.id.empty()) refs_[e.fullUrl] = e.type + "/" + e.id;
    }
    // 2. Execute in the order of the specification: DELETE, POST, PUT, GET.
    std::vector<BundleEntry*> order;
    for (auto& e : entries_) order.push_back(&e);
    std::stable_sort(order.begin(), order.end(),
                     [](const BundleEntry* a, const BundleEntry* b) { return methodOrder(a->method) < methodOrder(b->method); });
    for (BundleEntry* e : order) {
      auto r = execute(txn, *e);
      if (!r.ok()) return at(*e, r.error());
    }
    return {};
  }

  // The single writer's time is the limit of every write: what does not need the database is done
  // before the unit, on the request's thread. New resources of unconditional POSTs get their ids
  // here, and an entry whose references all resolve without a lookup (to such entries, to entries
  // with a literal id, or plain ones) has its body rewritten and its index rows extracted here too.
  // Conditional creates and references (Type?params) are settled inside the unit, as before.
  void preparePlain() {
    for (auto& e : entries_)
      if (e.method == "POST" && e.ifNoneExist.empty() && !e.error) e.id = newId();
    for (auto& e : entries_)
      if (!e.id.empty() && !e.fullUrl.empty()) refs_[e.fullUrl] = e.type + "/" + e.id;
    for (auto& e : entries_) {
      if (e.error || !e.hasResource || e.id.empty() || (e.method != "POST" && e.method != "PUT") || e.conditional) continue;
      bool needsLookup = false;
      ReferenceRewriter rw = [this, &needsLookup](const std::string& ref) -> const std::string* {
        auto it = refs_.find(ref);
        if (it != refs_.end()) return &it->second;
        if (ref.rfind("urn:uuid:", 0) == 0 || ref.rfind("urn:oid:", 0) == 0) needsLookup = true;
        auto qm = ref.find('?');
        if (qm != std::string::npos && isResourceType(ref.substr(0, qm))) needsLookup = true;
        return nullptr;
      };
      PreparedResource p = prepare(e.type, e.id, e.in, rw, h_.req_.baseUrl);
      if (!needsLookup) e.prepared = std::move(p);
    }
  }

  // Settles which resource a write entry acts on: a POST whose ifNoneExist matches one resource
  // becomes that resource (nothing to write), other POSTs get a new id; a conditional PUT or
  // DELETE takes its single match (a PUT with none creates, with the body's id or a new one; a
  // DELETE with none has nothing to do). More than one match is 412.
  Result<void> resolveTarget(WriteTxn& txn, BundleEntry& e) {
    if (e.method == "POST") {
      if (!e.ifNoneExist.empty()) {
        auto m = conditionalMatches(txn, e.type, parseQueryString(e.ifNoneExist), h_.o_.search, h_.guard_);
        if (!m.ok()) return m.error();
        if (m->size() > 1) return makeError(ErrorCode::kPreconditionFailed, "ifNoneExist matches more than one " + e.type);
        if (m->size() == 1) {
          e.id = m->front().id;
          e.outcome = WriteOutcome{200, m->front(), false};
          e.done = true;
          return {};
        }
      }
      if (e.id.empty()) e.id = newId();
      return {};
    }
    if (!e.conditional) return {};
    auto m = conditionalMatches(txn, e.type, e.condParams, h_.o_.search, h_.guard_);
    if (!m.ok()) return m.error();
    if (m->size() > 1) return makeError(ErrorCode::kPreconditionFailed, "the condition matches more than one " + e.type);
    if (m->size() == 1) {
      e.id = m->front().id;
    } else if (e.method == "PUT") {
      auto bid = e.in.json.find("id");
      e.id = bid != e.in.json.end() ? bid->get<std::string>() : newId();
      if (bid != e.in.json.end()) {
        // As for a conditional update on its own: the body's id may not name another resource.
        auto cur = txn.currentHead(e.type, e.id);
        if (!cur.ok()) return cur.error();
        if (cur->has_value() && !(*cur)->deleted)
          return makeError(ErrorCode::kConflict, e.type + "/" + e.id + " exists but does not match the condition");
      }
    } else {
      e.done = true;  // conditional delete of nothing
      e.outcome.status = 204;
    }
    return {};
  }

  Error at(const BundleEntry& e, Error err) {
    if (err.location.empty()) err.location = e.where;
    err.message = e.where + ": " + err.message;
    return err;
  }

  // The rewriter given to the body writer: urn:uuid and fullUrl references to other entries,
  // and conditional references (Type?params), which must match exactly one resource.
  ReferenceRewriter rewriter(WriteTxn& txn, std::optional<Error>& problem) {
    return [this, &txn, &problem](const std::string& ref) -> const std::string* {
      auto it = refs_.find(ref);
      if (it != refs_.end()) return &it->second;
      if (ref.rfind("urn:uuid:", 0) == 0 || ref.rfind("urn:oid:", 0) == 0) {
        if (!problem) problem = makeError(ErrorCode::kInvalid, "the reference '" + ref + "' names no entry of the transaction");
        return nullptr;
      }
      auto qm = ref.find('?');
      if (qm == std::string::npos) return nullptr;
      std::string type = ref.substr(0, qm);
      if (!isResourceType(type)) return nullptr;
      auto m = conditionalMatches(txn, type, parseQueryString(ref.substr(qm + 1)), h_.o_.search, h_.guard_);
      if (!m.ok()) {
        if (!problem) problem = m.error();
        return nullptr;
      }
      if (m->size() != 1) {
        if (!problem)
          problem = makeError(ErrorCode::kPreconditionFailed, "the conditional reference '" + ref + "' matches " +
                                                                  (m->empty() ? "nothing" : "more than one resource"));
        return nullptr;
      }
      return &(refs_[ref] = type + "/" + m->front().id);
    };
  }

  Result<void> execute(WriteTxn& txn, BundleEntry& e) {
    if (e.done || e.error) return {};
    if (e.method == "GET") return get(txn, e);
    std::optional<Error> problem;
    ReferenceRewriter rw = transaction_ ? rewriter(txn, problem) : ReferenceRewriter();
    Result<WriteOutcome> w = makeError(ErrorCode::kInternal, "not executed");
    if (e.method == "DELETE") {
      w = deleteIn(txn, e.type, e.id, e.ifMatch, h_.guard_);
    } else {
      PreparedResource p = e.prepared ? std::move(*e.prepared) : prepare(e.type, e.id, e.in, rw, h_.req_.baseUrl);
      if (problem) return *problem;
      w = e.method == "POST" ? createIn(txn, e.type, e.id, p, h_.guard_) : updateIn(txn, e.type, e.id, p, e.ifMatch, h_.guard_);
    }
    if (problem) return *problem;
    if (!w.ok()) return w.error();
    e.outcome = std::move(w.value());
    e.done = true;
    return {};
  }

  Result<void> get(WriteTxn& txn, BundleEntry& e) {
    std::string path = e.getPath;
    auto slash = path.find('/');
    std::string type = path.substr(0, slash);
    std::string id = slash == std::string::npos ? "" : path.substr(slash + 1);
    if (!isResourceType(type)) return makeError(ErrorCode::kNotFound, "'" + type + "' is not a FHIR R4 resource type");
    if (h_.guard_) {
      auto a = h_.guard_->allowType(type, id.empty() ? Interaction::kSearch : Interaction::kRead);
      if (!a.ok()) return a;
    }
    if (id.empty()) {
      auto ps = parseSearch(type, e.getParams, h_.o_.search, h_.prefer_.strict, h_.req_.baseUrl);
      if (!ps.ok()) return ps.error();
      auto g = h_.guardSearch(*ps);
      if (!g.ok()) return g;
      auto body = h_.runSearch(txn, *ps, type);
      if (!body.ok()) return body.error();
      e.getBody = std::move(body.value());
    } else {
      if (!isValidId(id)) return makeError(ErrorCode::kNotFound, "GET " + path + " is not supported in a Bundle");
      auto cur = txn.current(type, id);
      if (!cur.ok()) return cur.error();
      if (!cur->has_value()) return makeError(ErrorCode::kNotFound, type + "/" + id + " is not known");
      if (h_.guard_) {
        auto vis = h_.visible(**cur);
        if (!vis.ok()) return vis.error();
        if (!*vis) return makeError(ErrorCode::kNotFound, type + "/" + id + " is not known");
        h_.guard_->touched(**cur);
      }
      if ((*cur)->deleted) return makeError(ErrorCode::kGone, type + "/" + id + " was deleted");
      e.getBody = (*cur)->body;
      e.outcome.version = **cur;
    }
    e.getStatus = 200;
    e.done = true;
    return {};
  }

  // --- batch: each entry on its own -----------------------------------------------------------

  FhirResponse runBatch() {
    if (h_.guard_)
      for (auto& e : entries_) {
        if (e.method == "GET" || e.error) continue;
        auto a = h_.guard_->allowType(e.type, interactionOf(e));
        if (!a.ok()) e.error = a.error();
      }
    auto r = h_.store_.write([&](WriteTxn& txn) -> Result<void> {
      for (auto& e : entries_) {
        if (e.error) continue;
        auto one = txn.atomically([&]() -> Result<void> {
          auto r = resolveTarget(txn, e);
          if (!r.ok()) return r;
          return execute(txn, e);
        });
        if (!one.ok()) {
          e.error = one.error();
          e.done = false;
        }
      }
      return h_.attachAudit(txn, 200);
    });
    if (!r.ok()) return errorResponse(r.error());
    return responseBundle("batch-response");
  }

  FhirResponse responseBundle(const char* type) {
    std::string out;
    appendBundleHead(out, type);
    out += ",\"entry\":[";
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const BundleEntry& e = entries_[i];
      if (i) out += ',';
      out += '{';
      if (e.error) {
        const ErrorInfo& info = errorInfo(e.error->code);
        out += "\"response\":{\"status\":\"" + std::to_string(info.httpStatus) + "\",\"outcome\":";
        out += !e.error->outcome.empty() ? e.error->outcome
                                         : operationOutcome(Issue{"error", info.fhirIssueCode, e.error->message,
                                                                  e.error->location.empty() ? e.where : e.error->location});
        out += "}}";
        continue;
      }
      if (e.method == "GET") {
        out += "\"resource\":" + e.getBody + ",\"response\":{\"status\":\"200 OK\"";
        if (e.outcome.version.version) out += ",\"etag\":\"W/\\\"" + std::to_string(e.outcome.version.version) + "\\\"\"";
        out += "}}";
        continue;
      }
      const ResourceVersion& v = e.outcome.version;
      bool hasVersion = v.version > 0;
      if (hasVersion) {
        out += "\"fullUrl\":";
        appendJsonString(out, h_.req_.baseUrl + "/" + v.type + "/" + v.id);
        out += ',';
        if (!v.deleted && h_.prefer_.ret == Prefer::kRepresentation) out += "\"resource\":" + v.body + ",";
      }
      out += "\"response\":{\"status\":\"" + statusLine(e.outcome.status) + "\"";
      if (hasVersion) {
        if (e.method != "DELETE") {
          out += ",\"location\":";
          appendJsonString(out, v.type + "/" + v.id + "/_history/" + std::to_string(v.version));
        }
        out += ",\"etag\":";
        appendJsonString(out, etagOf(v.version));
        out += ",\"lastModified\":\"" + formatInstant(v.lastUpdatedMs) + "\"";
      }
      out += "}}";
    }
    out += "]}";
    FhirResponse r;
    r.headers.emplace_back("Content-Type", kJsonContentType);
    r.body = std::move(out);
    return r;
  }

  FhirService::Impl& h_;
  bool transaction_;
  std::vector<BundleEntry> entries_;
  std::map<std::string, std::string> refs_;
};

FhirResponse FhirService::Impl::bundle() {
  auto ct = checkContentType(req_.contentType);
  if (!ct.ok()) return errorResponse(ct.error());
  Incoming in;
  auto p = parseResource(req_.body, o_.json, in);
  if (!p.ok()) return errorResponse(p.error());
  auto c = checkResource(in.json, "", "");
  if (!c.ok()) return errorResponse(c.error());
  if (in.json["resourceType"] != "Bundle")
    return errorResponse(ErrorCode::kInvalid, "POST to the FHIR base takes a batch or transaction Bundle", "resourceType");
  auto t = in.json.find("type");
  std::string type = t != in.json.end() && t->is_string() ? t->get<std::string>() : "";
  if (type != "batch" && type != "transaction")
    return errorResponse(ErrorCode::kInvalid,
                         "Bundle.type '" + type + "' cannot be processed here: send a batch or transaction (store other Bundles at /Bundle)",
                         "Bundle.type");
  BundleProcessor bp(*this, type == "transaction");
  return bp.run(in.json, in.text, in.span);
}

FhirResponse FhirService::Impl::capability() {
  Json cs = Json::object();
  cs["resourceType"] = "CapabilityStatement";
  cs["status"] = "active";
  cs["date"] = formatInstant(nowMs()).substr(0, 10);
  cs["publisher"] = "Passerelle";
  cs["kind"] = "instance";
  cs["software"] = {{"name", "Passerelle"}, {"version", o_.softwareVersion}};
  cs["implementation"] = {{"description", "Passerelle FHIR R4 gateway"}, {"url", req_.baseUrl}};
  cs["fhirVersion"] = "4.0.1";
  cs["format"] = Json::array({"application/fhir+json", "json", "application/fhir+xml", "xml"});
  Json rest = Json::object();
  rest["mode"] = "server";
  rest["documentation"] =
      "Every write is validated against the FHIR R4 base specification (422 with every issue). "
      "Every version is kept. Search supports every parameter listed for each type (from the R4 definitions), "
      "with their modifiers and prefixes, one level of chaining, _has, _sort, _include and _revinclude (:iterate), "
      "_summary, _elements, _total and _count with cursor paging. JSON and XML are served (_format, Accept).";
  Json resources = Json::array();
  for (auto type : resourceTypes()) {
    Json r = Json::object();
    r["type"] = std::string(type);
    Json inter = Json::array();
    for (const char* code : {"read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"})
      inter.push_back({{"code", code}});
    r["interaction"] = inter;
    r["versioning"] = "versioned-update";
    r["readHistory"] = true;
    r["updateCreate"] = true;
    r["conditionalCreate"] = true;
    r["conditionalRead"] = "not-supported";
    r["conditionalUpdate"] = true;
    r["conditionalDelete"] = "single";
    Json params = Json::array();
    Json includes = Json::array({"*"});
    for (const auto* d : search::SearchDefinitions::r4().forType(std::string(type))) {
      params.push_back({{"name", d->code}, {"definition", d->url}, {"type", search::kindName(d->kind)}});
      if (d->kind == search::ParamKind::kReference && d->type != "Resource") includes.push_back(d->type + ":" + d->code);
    }
    r["searchInclude"] = includes;
    r["searchParam"] = params;
    if (type == "Patient")
      r["operation"] = Json::array({{{"name", "everything"}, {"definition", "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                                     {"documentation", "GET only, with _since and _type; what the caller may read of the patient's compartment"}}});
    resources.push_back(std::move(r));
  }
  rest["resource"] = std::move(resources);
  Json inter = Json::array();
  for (const char* code : {"transaction", "batch", "search-system", "history-system"}) inter.push_back({{"code", code}});
  rest["interaction"] = inter;
  rest["operation"] = Json::array({{{"name", "validate"}, {"definition", "http://hl7.org/fhir/OperationDefinition/Resource-validate"}}});
  cs["rest"] = Json::array({rest});
  FhirResponse r;
  r.headers.emplace_back("Content-Type", kJsonContentType);
  r.body = cs.dump();
  return r;
}

namespace {

// Where a media type of _format or Accept points: JSON, XML, either (*/*), or neither.
enum class MediaKind { kJson, kXml, kAny, kOther };

MediaKind mediaKind(std::string media) {
  media = lower(media.substr(0, media.find(';')));
  media.erase(0, media.find_first_not_of(" \t"));
  media.erase(media.find_last_not_of(" \t") + 1);
  for (char& c : media)
    if (c == ' ') c = '+';  // _format=application/fhir+xml unescaped: its '+' arrives as a space
  if (media == "json" || media == "application/json" || media == "application/fhir+json" || media == "application/json+fhir")
    return MediaKind::kJson;
  if (media == "xml" || isXmlMediaType(media)) return MediaKind::kXml;
  if (media == "*/*" || media == "application/*" || media == "*") return MediaKind::kAny;
  return MediaKind::kOther;
}

}  // namespace

Result<WireFormat> responseFormat(const FhirRequest& req) {
  // _format first (it overrides Accept), then Accept by its q-values; JSON when nothing decides.
  for (const auto& [k, v] : req.query) {
    if (k != "_format") continue;
    switch (mediaKind(v)) {
      case MediaKind::kJson: return WireFormat::kJson;
      case MediaKind::kXml: return WireFormat::kXml;
      default:
        return makeError(ErrorCode::kNotAcceptable, "_format '" + v + "' is not supported: JSON (json, application/fhir+json) "
                                                   "and XML (xml, application/fhir+xml) are served");
    }
  }
  if (req.accept.empty()) return WireFormat::kJson;
  double json = -1, xml = -1;
  std::size_t start = 0;
  while (start <= req.accept.size()) {
    std::size_t comma = req.accept.find(',', start);
    std::string entry = req.accept.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    double q = 1;
    for (std::size_t semi = entry.find(';'); semi != std::string::npos; semi = entry.find(';', semi + 1)) {
      std::string param = lower(entry.substr(semi + 1, entry.find(';', semi + 1) - semi - 1));
      param.erase(0, param.find_first_not_of(" \t"));
      if (param.rfind("q=", 0) == 0) q = std::atof(param.c_str() + 2);
    }
    if (q > 0) {
      switch (mediaKind(entry)) {
        case MediaKind::kJson: json = std::max(json, q); break;
        case MediaKind::kXml: xml = std::max(xml, q); break;
        case MediaKind::kAny: json = std::max(json, q); break;  // the default format
        case MediaKind::kOther: break;
      }
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (json < 0 && xml < 0)
    return makeError(ErrorCode::kNotAcceptable, "Accept '" + req.accept + "' cannot be met: JSON (application/fhir+json) "
                                                "and XML (application/fhir+xml) are served");
  return xml > json ? WireFormat::kXml : WireFormat::kJson;
}

Result<void> xmlBodyToJson(FhirRequest& req) {
  if (!isXmlMediaType(req.contentType)) return {};
  std::string ct = lower(req.contentType);
  if (auto cs = ct.find("charset="); cs != std::string::npos) {
    std::string charset = ct.substr(cs + 8);
    charset = charset.substr(0, charset.find(';'));
    if (charset != "utf-8" && charset != "\"utf-8\"")
      return makeError(ErrorCode::kUnsupportedMediaType, "charset '" + charset + "' is not supported: use UTF-8");
  }
  req.contentType = "application/fhir+json";
  if (req.body.empty()) return {};
  std::string json;
  std::vector<Issue> issues;
  if (fhirXmlToJson(req.body, json, issues)) {
    req.body = std::move(json);
    return {};
  }
  // Not XML at all (fatal) is a bad request; XML that is not FHIR is unprocessable, as for JSON.
  bool fatal = false;
  std::string first;
  for (const auto& i : issues) {
    fatal = fatal || i.severity == "fatal";
    if (first.empty() && (i.severity == "error" || i.severity == "fatal"))
      first = i.diagnostics + (i.expression.empty() ? "" : " (" + i.expression + ")");
  }
  Error e = makeError(fatal ? ErrorCode::kInvalid : ErrorCode::kUnprocessable, "the XML is not a FHIR R4 resource: " + first);
  e.outcome = operationOutcome(issues);
  return e;
}

void answerAsXml(FhirResponse& response) {
  for (auto& [name, value] : response.headers) {
    if (name != "Content-Type" || value.rfind("application/fhir+json", 0) != 0) continue;
    if (response.body.empty()) {
      value = kXmlContentType;
      return;
    }
    std::string xml;
    std::vector<Issue> issues;
    if (!fhirJsonToXml(response.body, xml, issues)) {
      log::error("fhir.xml_answer", {{"status", std::to_string(response.status)},
                                     {"error", issues.empty() ? std::string("?") : issues.front().diagnostics}});
      response.status = 500;
      xml.clear();
      issues.insert(issues.begin(), Issue{"fatal", "exception", "the answer cannot be written as XML", ""});
      std::vector<Issue> ignored;
      fhirJsonToXml(operationOutcome(issues), xml, ignored);
    }
    response.body = std::move(xml);
    value = kXmlContentType;
    return;
  }
}

FhirService::FhirService(store::ResourceStore& store, FhirServiceOptions options) : store_(store), options_(std::move(options)) {}

FhirResponse FhirService::handle(const FhirRequest& request) {
  auto format = responseFormat(request);
  FhirResponse r;
  try {
    if (!format.ok()) {
      r = errorResponse(format.error());
    } else if (isXmlMediaType(request.contentType)) {
      // An XML body is JSON before anything else sees it.
      FhirRequest json = request;
      auto converted = xmlBodyToJson(json);
      if (!converted.ok()) {
        r = errorResponse(converted.error());
      } else {
        Impl impl(store_, options_, json);
        r = impl.run();
      }
    } else {
      Impl impl(store_, options_, request);
      r = impl.run();
    }
  } catch (const std::exception& ex) {
    log::error("fhir.unexpected", {{"path", request.path}, {"error", ex.what()}});
    r = errorResponse(ErrorCode::kInternal, "the request could not be completed");
  }
  if (format.ok() && *format == WireFormat::kXml) answerAsXml(r);
  return r;
}

}  // namespace passerelle::fhir
