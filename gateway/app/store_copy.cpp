// `passerelle db copy`: one store into another, then both read back and compared.
#include "gateway/app/store_copy.h"

#include <openssl/evp.h>

#include <map>
#include <memory>

#include "gateway/search/reindex.h"

namespace passerelle::app {
namespace {

using store::ResourceStore;
using store::ResourceVersion;
using store::WriteTxn;

std::string hex(const unsigned char* p, unsigned n) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += k[p[i] >> 4];
    out += k[p[i] & 15];
  }
  return out;
}

std::string count(std::int64_t n, const char* one, const char* many) { return std::to_string(n) + " " + (n == 1 ? one : many); }

}  // namespace

Result<StoreFingerprint> fingerprintStore(ResourceStore& s) {
  StoreFingerprint out;
  auto st = s.status();
  if (!st.ok()) return makeError(st.error().code, "count what it holds: " + st.error().message);
  out.status = std::move(st.value());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return makeError(ErrorCode::kInternal, "SHA-256 is not available");
  std::string type, id;
  std::int64_t version = 0;
  for (;;) {
    auto page = s.scanVersionsByKey(type, id, version, 2000);
    if (!page.ok()) return makeError(page.error().code, "read the versions back: " + page.error().message);
    if (page->empty()) break;
    for (const ResourceVersion& v : page.value()) {
      std::string line = v.type + "|" + v.id + "|" + std::to_string(v.version) + "|" + std::to_string(v.lastUpdatedMs) + "|" +
                         (v.deleted ? "1" : "0") + "|" + v.method + "|" + std::to_string(v.body.size()) + ":";
      EVP_DigestUpdate(ctx.get(), line.data(), line.size());
      EVP_DigestUpdate(ctx.get(), v.body.data(), v.body.size());
      EVP_DigestUpdate(ctx.get(), "\n", 1);
    }
    type = page->back().type;
    id = page->back().id;
    version = page->back().version;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return makeError(ErrorCode::kInternal, "SHA-256 failed");
  out.digest = hex(md, len);
  return out;
}

std::vector<std::string> compareFingerprints(const StoreFingerprint& source, const StoreFingerprint& target) {
  std::vector<std::string> out;
  std::map<std::string, std::pair<store::TypeCount, store::TypeCount>> types;
  for (const auto& t : source.status.types) types[t.type].first = t;
  for (const auto& t : target.status.types) types[t.type].second = t;
  auto differ = [&](const std::string& what, std::int64_t a, std::int64_t b) {
    if (a != b) out.push_back(what + ": " + std::to_string(a) + " on the source, " + std::to_string(b) + " on the target");
  };
  for (const auto& [name, pair] : types) {
    differ(name + " current resources", pair.first.current, pair.second.current);
    differ(name + " deleted resources", pair.first.deleted, pair.second.deleted);
    differ(name + " versions", pair.first.versions, pair.second.versions);
  }
  differ("received messages", source.status.inbox, target.status.inbox);
  differ("deliveries", source.status.deliveries, target.status.deliveries);
  if (source.digest != target.digest)
    out.push_back("the digest of the versions differs: " + source.digest + " on the source, " + target.digest + " on the target");
  return out;
}

Result<CopyReport> copyStore(ResourceStore& from, ResourceStore& to, const CopyOptions& options) {
  auto say = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };
  const int perUnit = std::max(1, options.perUnit);
  CopyReport report;

  // What may be copied: a source at this build's schema, an empty target.
  auto source = from.status();
  if (!source.ok()) return makeError(source.error().code, "source: read its status: " + source.error().message);
  if (source->pending())
    return makeError(ErrorCode::kInvalid, "source: its schema is at version " + std::to_string(source->schemaVersion) + " of " +
                                              std::to_string(source->knownVersion) + ": run 'passerelle db migrate' on it first");
  auto audit = from.pendingAuditRecords();
  if (!audit.ok()) return makeError(audit.error().code, "source: read its audit outbox: " + audit.error().message);
  if (!audit->empty())
    return makeError(ErrorCode::kInvalid, "source: it holds " + count(static_cast<std::int64_t>(audit->size()), "audit record", "audit records") +
                                              " not yet in the audit trail: start the gateway on it once (it hands them to the trail), stop it, then copy");
  auto target = to.status();
  if (!target.ok()) return makeError(target.error().code, "target: read its status: " + target.error().message);
  if (target->current + target->deleted > 0 || target->versions > 0)
    return makeError(ErrorCode::kInvalid, "the target already holds " + std::to_string(target->current + target->deleted) + " resources");
  if (target->inbox > 0 || target->deliveries > 0)
    return makeError(ErrorCode::kInvalid, "the target already holds " + count(target->inbox, "received message", "received messages") + " and " +
                                              count(target->deliveries, "delivery", "deliveries"));

  // Every version in seq order, so that the target numbers them in the same order: its history
  // and its version numbers follow. Index rows come after, from the current versions.
  std::int64_t afterSeq = 0, nextReport = options.progressEvery;
  for (;;) {
    auto page = from.scanVersions(afterSeq, perUnit);
    if (!page.ok()) return makeError(page.error().code, "source: read versions after seq " + std::to_string(afterSeq) + ": " + page.error().message);
    if (page->empty()) break;
    auto w = to.write([&](WriteTxn& txn) -> Result<void> {
      for (const ResourceVersion& v : page.value()) {
        ResourceVersion copy = v;
        copy.seq = 0;
        copy.rid = 0;
        auto r = txn.put(copy, store::IndexRows{});
        if (!r.ok()) return makeError(r.error().code, v.type + "/" + v.id + "/_history/" + std::to_string(v.version) + ": " + r.error().message);
      }
      return {};
    });
    if (!w.ok()) return makeError(w.error().code, "target: write versions: " + w.error().message);
    report.versions += static_cast<std::int64_t>(page->size());
    afterSeq = page->back().seq;
    if (options.progressEvery > 0 && report.versions >= nextReport) {
      say("copied " + std::to_string(report.versions) + " of " + std::to_string(source->versions) + " versions");
      while (nextReport <= report.versions) nextReport += options.progressEvery;
    }
  }
  say("copied " + count(report.versions, "version", "versions"));

  auto meta = from.listMeta();
  if (!meta.ok()) return makeError(meta.error().code, "source: read the kept values: " + meta.error().message);
  for (const auto& [key, value] : meta.value()) {
    auto r = to.setMeta(key, value);
    if (!r.ok()) return makeError(r.error().code, "target: write the kept value '" + key + "': " + r.error().message);
  }
  report.meta = static_cast<std::int64_t>(meta->size());

  for (std::int64_t after = 0;;) {
    auto page = from.scanInbox(after, perUnit);
    if (!page.ok()) return makeError(page.error().code, "source: read the inbox: " + page.error().message);
    if (page->empty()) break;
    auto w = to.write([&](WriteTxn& txn) -> Result<void> {
      for (const auto& m : page.value()) {
        auto r = txn.copyInbox(m);
        if (!r.ok()) return r;
      }
      return {};
    });
    if (!w.ok()) return makeError(w.error().code, "target: write the inbox: " + w.error().message);
    report.inbox += static_cast<std::int64_t>(page->size());
    after = page->back().id;
  }
  for (std::int64_t after = 0;;) {
    auto page = from.scanDeliveries(after, perUnit);
    if (!page.ok()) return makeError(page.error().code, "source: read the outbox: " + page.error().message);
    if (page->empty()) break;
    auto w = to.write([&](WriteTxn& txn) -> Result<void> {
      for (const auto& d : page.value()) {
        auto r = txn.copyDelivery(d);
        if (!r.ok()) return r;
      }
      return {};
    });
    if (!w.ok()) return makeError(w.error().code, "target: write the outbox: " + w.error().message);
    report.deliveries += static_cast<std::int64_t>(page->size());
    after = page->back().id;
  }
  say("copied " + count(report.inbox, "received message", "received messages") + " and " +
      count(report.deliveries, "delivery", "deliveries"));

  auto indexed = search::reindexIfNeeded(to, options.baseUrl, true);
  if (!indexed.ok()) return makeError(indexed.error().code, "target: rebuild the search index: " + indexed.error().message);
  report.indexed = indexed->resources;
  say("indexed " + count(report.indexed, "resource", "resources"));

  auto a = fingerprintStore(from);
  if (!a.ok()) return makeError(a.error().code, "source: " + a.error().message);
  auto b = fingerprintStore(to);
  if (!b.ok()) return makeError(b.error().code, "target: " + b.error().message);
  report.source = std::move(a.value());
  report.target = std::move(b.value());
  report.differences = compareFingerprints(report.source, report.target);
  return report;
}

}  // namespace passerelle::app
