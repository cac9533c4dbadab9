// Resumable SFTP upload on libcurl (see sftp_upload.h). One easy handle per upload, so that its few
// requests (sizes, reading back, writing, renaming) share one SSH connection: libcurl keeps it open
// between the transfers of a handle.
#include "connectors/sftp/sftp_upload.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>

namespace passerelle::sftp {
namespace {

std::once_flag curlOnce;

constexpr std::size_t kMaxNameBytes = 250;          // so that "<name>.part" fits in 255 bytes
constexpr std::int64_t kTailCheckBytes = 64 * 1024;  // how much of an earlier file is read back
constexpr std::size_t kFingerprintChars = 43;        // base64 of 32 bytes, without padding
const std::string kPartSuffix = ".part";

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

bool readable(const std::string& path) { return std::ifstream(path, std::ios::binary).good(); }

// The folder of Options::url, checked.
struct Folder {
  std::string url;         // normalised, ending with '/'
  std::string serverPath;  // as the server resolves it: absolute, or relative to the home folder
};

bool parseFolder(const std::string& url, Folder& out, std::string& error) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    error = "the folder URL '" + url + "' is not a valid URL";
    return false;
  }
  auto get = [&](CURLUPart which, unsigned int flags, std::string& value) {
    char* p = nullptr;
    if (curl_url_get(u.get(), which, &p, flags) != CURLUE_OK || !p) return false;
    value = p;
    curl_free(p);
    return true;
  };
  std::string scheme, path, ignored;
  if (!get(CURLUPART_SCHEME, 0, scheme) || scheme != "sftp") {
    error = "the folder URL '" + url + "' is not an sftp:// URL";
    return false;
  }
  if (get(CURLUPART_USER, 0, ignored) || get(CURLUPART_PASSWORD, 0, ignored)) {
    error = "the folder URL must not hold a user name or password (the user is Options::user)";
    return false;
  }
  if (get(CURLUPART_QUERY, 0, ignored) || get(CURLUPART_FRAGMENT, 0, ignored)) {
    error = "the folder URL '" + url + "' has a query or a fragment";
    return false;
  }
  if (!get(CURLUPART_PATH, CURLU_URLDECODE, path) || path.empty() || path.back() != '/') {
    error = "the folder URL '" + url + "' does not end with '/'";
    return false;
  }
  if (hasControl(path) || path.find_first_of("\"\\") != std::string::npos) {
    error = "the folder path of '" + url + "' holds a control character, '\"' or '\\'";
    return false;
  }
  if (!get(CURLUPART_URL, 0, out.url)) {
    error = "the folder URL '" + url + "' is not a valid URL";
    return false;
  }
  // libcurl expands "/~/" in a URL's path but not in quote commands, where the server resolves a
  // relative path from the home folder.
  out.serverPath = path.rfind("/~/", 0) == 0 ? path.substr(3) : path;
  return true;
}

// Options::hostKeySha256 as libcurl compares it: base64 without the prefix and padding.
bool parseFingerprint(std::string text, std::string& out, std::string& error) {
  if (text.rfind("SHA256:", 0) == 0) text.erase(0, 7);
  while (!text.empty() && text.back() == '=') text.pop_back();
  bool base64 = std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  });
  if (text.size() != kFingerprintChars || !base64) {
    error = "hostKeySha256 is not a SHA-256 fingerprint in base64 as `ssh-keygen -lf` prints it (43 characters after \"SHA256:\")";
    return false;
  }
  out = std::move(text);
  return true;
}

std::size_t onRead(char* buffer, std::size_t size, std::size_t n, void* user);
std::size_t onWrite(char* data, std::size_t size, std::size_t n, void* user);
int onHostKey(CURL*, const struct curl_khkey*, const struct curl_khkey*, enum curl_khmatch match, void* user);

// The bytes an upload hands to libcurl, from an offset.
struct Source {
  const std::string* bytes = nullptr;
  std::size_t position = 0;
  std::int64_t handed = 0;
};

// The bytes of a read-back, at most `limit` of them.
struct Sink {
  std::string bytes;
  std::size_t limit = 0;
  bool overflow = false;
};

// One SSH connection to the server, through which the requests of one upload go.
class Session {
 public:
  Session(const Options& options, std::string fingerprint) : o_(options), fingerprint_(std::move(fingerprint)), curl_(curl_easy_init()) {}
  ~Session() {
    if (curl_) curl_easy_cleanup(curl_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool ready() const { return curl_ != nullptr; }

  std::string escape(const std::string& s) {
    char* e = curl_easy_escape(curl_, s.data(), static_cast<int>(s.size()));
    std::string out = e ? e : "";
    curl_free(e);
    return out;
  }

  struct Stat {
    bool exists = false;
    std::int64_t size = 0;
  };

  // Whether the file at `url` exists, and its size. With `renameFrom`, that server path is first
  // renamed to `renameTo` in the same request. For sftp, libcurl's NOBODY request opens the file for
  // reading and reports its size as the download's content length.
  CURLcode stat(const std::string& url, Stat& out, const std::string* renameFrom = nullptr, const std::string* renameTo = nullptr) {
    out = Stat{};
    prepare(url);
    curl_easy_setopt(curl_, CURLOPT_NOBODY, 1L);
    struct curl_slist* quote = nullptr;
    if (renameFrom) {
      std::string command = "rename \"" + *renameFrom + "\" \"" + *renameTo + "\"";
      quote = curl_slist_append(quote, command.c_str());
      curl_easy_setopt(curl_, CURLOPT_QUOTE, quote);
    }
    CURLcode rc = curl_easy_perform(curl_);
    curl_slist_free_all(quote);
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND && !renameFrom) return CURLE_OK;
    if (rc != CURLE_OK) return rc;
    // libcurl reports an empty file's size as unknown (-1).
    curl_off_t size = -1;
    curl_easy_getinfo(curl_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &size);
    out.exists = true;
    out.size = size < 0 ? 0 : size;
    return CURLE_OK;
  }

  // Whether the first `size` bytes of the file at `url` end like the first `size` of `bytes` (the
  // last kTailCheckBytes of them are compared).
  CURLcode endsLike(const std::string& url, const std::string& bytes, std::int64_t size, bool& same) {
    same = false;
    if (size > static_cast<std::int64_t>(bytes.size())) return CURLE_OK;
    if (size == 0) {
      same = true;
      return CURLE_OK;
    }
    std::int64_t from = std::max<std::int64_t>(0, size - kTailCheckBytes);
    Sink sink;
    sink.limit = static_cast<std::size_t>(size - from);
    prepare(url);
    std::string range = std::to_string(from) + "-" + std::to_string(size - 1);
    curl_easy_setopt(curl_, CURLOPT_RANGE, range.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, onWrite);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &sink);
    CURLcode rc = curl_easy_perform(curl_);
    if (rc == CURLE_WRITE_ERROR && sink.overflow) return CURLE_OK;  // more than asked: not the same
    if (rc != CURLE_OK) return rc;
    same = sink.bytes.size() == sink.limit && bytes.compare(static_cast<std::size_t>(from), sink.limit, sink.bytes) == 0;
    return CURLE_OK;
  }

  // Writes `bytes` from `offset` on to the file at `url`: appended to it when offset > 0, else
  // replacing it. `sent`: the bytes handed to libcurl. libcurl opens the file with SFTP's APPEND flag
  // under CURLOPT_APPEND, and truncates it otherwise; the read callback starts at `offset`.
  CURLcode send(const std::string& url, const std::string& bytes, std::int64_t offset, std::int64_t& sent) {
    Source source;
    source.bytes = &bytes;
    source.position = static_cast<std::size_t>(offset);
    prepare(url);
    curl_easy_setopt(curl_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl_, CURLOPT_READFUNCTION, onRead);
    curl_easy_setopt(curl_, CURLOPT_READDATA, &source);
    curl_easy_setopt(curl_, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(bytes.size()) - offset);
    if (offset > 0) curl_easy_setopt(curl_, CURLOPT_APPEND, 1L);
    if (o_.maxBytesPerSecond > 0) curl_easy_setopt(curl_, CURLOPT_MAX_SEND_SPEED_LARGE, static_cast<curl_off_t>(o_.maxBytesPerSecond));
    CURLcode rc = curl_easy_perform(curl_);
    sent = source.handed;
    return rc;
  }

  // What went wrong in the last request, in one phrase.
  std::string failure(CURLcode rc) const {
    std::string detail = error_[0] ? error_ : curl_easy_strerror(rc);
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == '.')) detail.pop_back();
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
        return "could not resolve the server's name: " + detail;
      case CURLE_COULDNT_CONNECT:
        return "could not connect to the server: " + detail;
      case CURLE_OPERATION_TIMEDOUT:
        return "timed out: " + detail;
      case CURLE_SEND_ERROR:
      case CURLE_RECV_ERROR:
      case CURLE_GOT_NOTHING:
        return "the connection to the server was lost: " + detail;
      case CURLE_PEER_FAILED_VERIFICATION:
        if (knownHostsMatch_ == CURLKHMATCH_MISMATCH)
          return "the server's host key is not the one known_hosts file '" + o_.knownHosts + "' holds for it";
        if (knownHostsMatch_ == CURLKHMATCH_MISSING) return "known_hosts file '" + o_.knownHosts + "' holds no host key for this server";
        return "the server's host key does not have the configured SHA-256 fingerprint: " + detail;
      case CURLE_LOGIN_DENIED:
        return "authentication as '" + o_.user + "' with the key '" + o_.privateKey + "' refused: " + detail;
      case CURLE_REMOTE_ACCESS_DENIED:
        return "permission denied: " + detail;
      case CURLE_REMOTE_DISK_FULL:
        return "the server's disk is full: " + detail;
      case CURLE_REMOTE_FILE_NOT_FOUND:
        return "no such file or folder on the server: " + detail;
      default:
        return detail;
    }
  }

  void onKnownHost(int match) { knownHostsMatch_ = match; }

 private:
  // The settings every request shares; the connection survives curl_easy_reset.
  void prepare(const std::string& url) {
    curl_easy_reset(curl_);
    error_[0] = '\0';
    knownHostsMatch_ = -1;
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_PROTOCOLS_STR, "sftp");
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(curl_, CURLOPT_CONNECTTIMEOUT_MS, o_.connectTimeoutMs);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, o_.timeoutMs);
    curl_easy_setopt(curl_, CURLOPT_USERNAME, o_.user.c_str());
    curl_easy_setopt(curl_, CURLOPT_SSH_AUTH_TYPES, static_cast<long>(CURLSSH_AUTH_PUBLICKEY));
    curl_easy_setopt(curl_, CURLOPT_SSH_PRIVATE_KEYFILE, o_.privateKey.c_str());
    if (!o_.publicKey.empty()) curl_easy_setopt(curl_, CURLOPT_SSH_PUBLIC_KEYFILE, o_.publicKey.c_str());
    if (!fingerprint_.empty()) curl_easy_setopt(curl_, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, fingerprint_.c_str());
    if (!o_.knownHosts.empty()) {
      curl_easy_setopt(curl_, CURLOPT_SSH_KNOWNHOSTS, o_.knownHosts.c_str());
      curl_easy_setopt(curl_, CURLOPT_SSH_KEYFUNCTION, onHostKey);
      curl_easy_setopt(curl_, CURLOPT_SSH_KEYDATA, this);
    }
  }

  const Options& o_;
  std::string fingerprint_;
  CURL* curl_ = nullptr;
  char error_[CURL_ERROR_SIZE] = {};
  int knownHostsMatch_ = -1;  // a curl_khmatch once the known_hosts file was consulted
};

std::size_t onRead(char* buffer, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<Source*>(user);
  std::size_t k = std::min(size * n, s->bytes->size() - s->position);
  std::memcpy(buffer, s->bytes->data() + s->position, k);
  s->position += k;
  s->handed += static_cast<std::int64_t>(k);
  return k;
}

std::size_t onWrite(char* data, std::size_t size, std::size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  if (s->bytes.size() + size * n > s->limit) {
    s->overflow = true;
    return 0;
  }
  s->bytes.append(data, size * n);
  return size * n;
}

// Accepts only a host key that the known_hosts file holds for this server; the Session learns why
// a key was refused.
int onHostKey(CURL*, const struct curl_khkey*, const struct curl_khkey*, enum curl_khmatch match, void* user) {
  static_cast<Session*>(user)->onKnownHost(match);
  return match == CURLKHMATCH_OK ? CURLKHSTAT_FINE : CURLKHSTAT_REJECT;
}

}  // namespace

bool validName(std::string_view name, std::string& why) {
  if (name.empty()) {
    why = "the file name is empty";
  } else if (name.size() > kMaxNameBytes) {
    why = "the file name is longer than " + std::to_string(kMaxNameBytes) + " bytes";
  } else if (name == "." || name == "..") {
    why = "the file name '" + std::string(name) + "' names a folder";
  } else if (hasControl(name)) {
    why = "the file name holds a control character";
  } else if (name.find_first_of("/\\\"") != std::string_view::npos) {
    why = "the file name '" + std::string(name) + "' holds '/', '\\' or '\"'";
  } else {
    return true;
  }
  return false;
}

Outcome upload(const Options& options, const std::string& name, const std::string& bytes) {
  Outcome out;
  auto fail = [&out](std::string error) {
    out.ok = false;
    out.error = std::move(error);
    return out;
  };
  std::string why, fingerprint;
  Folder folder;
  if (!validName(name, why)) return fail("SFTP upload refused: " + why);
  const std::string refused = "SFTP upload of '" + name + "' refused: ";
  if (!parseFolder(options.url, folder, why)) return fail(refused + why);
  if (options.user.empty()) return fail(refused + "no user name");
  if (options.privateKey.empty() || !readable(options.privateKey))
    return fail(refused + "the private key file '" + options.privateKey + "' cannot be read");
  if (!options.publicKey.empty() && !readable(options.publicKey))
    return fail(refused + "the public key file '" + options.publicKey + "' cannot be read");
  if (options.hostKeySha256.empty() && options.knownHosts.empty())
    return fail(refused + "the server's host key is not configured (hostKeySha256 or knownHosts): an unverified server is not used");
  if (!options.hostKeySha256.empty() && !parseFingerprint(options.hostKeySha256, fingerprint, why)) return fail(refused + why);
  if (!options.knownHosts.empty() && !readable(options.knownHosts))
    return fail(refused + "the known_hosts file '" + options.knownHosts + "' cannot be read");

  std::call_once(curlOnce, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  Session session(options, fingerprint);
  if (!session.ready()) return fail("SFTP upload of '" + name + "' failed: libcurl could not be initialised");
  const std::string partName = name + kPartSuffix;
  const std::string finalUrl = folder.url + session.escape(name), partUrl = folder.url + session.escape(partName);
  const std::string finalPath = folder.serverPath + name, partPath = folder.serverPath + partName;
  const auto total = static_cast<std::int64_t>(bytes.size());
  out.remotePath = finalPath;
  const std::string what = "SFTP upload of '" + name + "' to " + folder.url;
  auto failed = [&](const std::string& step, CURLcode rc) { return fail(what + " failed " + step + ": " + session.failure(rc)); };

  // 1. Already delivered?
  Session::Stat existing;
  bool same = false;
  if (CURLcode rc = session.stat(finalUrl, existing); rc != CURLE_OK) return failed("while looking for an existing '" + name + "'", rc);
  if (existing.exists) {
    if (existing.size != total)
      return fail(what + " refused: '" + name + "' is already there with " + std::to_string(existing.size) + " bytes instead of " +
                  std::to_string(total) + ", and is not overwritten");
    if (CURLcode rc = session.endsLike(finalUrl, bytes, total, same); rc != CURLE_OK)
      return failed("while reading back the existing '" + name + "'", rc);
    if (!same) return fail(what + " refused: '" + name + "' is already there with other bytes of the same size, and is not overwritten");
    out.ok = true;
    out.alreadyDelivered = true;
    return out;
  }

  // 2. What an earlier attempt left.
  Session::Stat part;
  if (CURLcode rc = session.stat(partUrl, part); rc != CURLE_OK) return failed("while looking for an earlier '" + partName + "'", rc);
  std::int64_t offset = 0;
  if (part.exists && part.size > 0 && part.size <= total) {
    if (CURLcode rc = session.endsLike(partUrl, bytes, part.size, same); rc != CURLE_OK)
      return failed("while reading back the earlier '" + partName + "'", rc);
    if (same) offset = part.size;
  }
  out.resumedFrom = offset;

  // 3. The rest of the bytes.
  const bool complete = part.exists && part.size == total && offset == total;
  if (!complete) {
    std::int64_t sent = 0;
    CURLcode rc = session.send(partUrl, bytes, offset, sent);
    out.bytesSent = sent;
    if (rc != CURLE_OK) {
      std::string step = "while writing '" + partName + "'";
      if (sent > 0) step += ", interrupted at byte " + std::to_string(offset + sent) + " of " + std::to_string(total);
      if (offset > 0) step += " (resumed from byte " + std::to_string(offset) + ")";
      std::string cause = session.failure(rc);
      if (rc == CURLE_SSH) {
        // libcurl says no more than this for a lost connection as for a write the server refused;
        // a server still answering tells them apart.
        Session::Stat kept;
        if (session.stat(partUrl, kept) == CURLE_OK && kept.exists)
          cause = "the server stopped storing it at byte " + std::to_string(kept.size) + " (a full disk or a quota?): " + cause;
        else
          cause = "the connection to the server was lost: " + cause;
      }
      return fail(what + " failed " + step + ": " + cause);
    }
  }

  // 4. Checked, renamed, checked again.
  if (CURLcode rc = session.stat(partUrl, part); rc != CURLE_OK) return failed("while checking the size of '" + partName + "'", rc);
  if (!part.exists || part.size != total)
    return fail(what + " failed: '" + partName + "' holds " + std::to_string(part.size) + " bytes instead of " + std::to_string(total) +
                " after the upload");
  Session::Stat renamed;
  if (CURLcode rc = session.stat(finalUrl, renamed, &partPath, &finalPath); rc != CURLE_OK)
    return failed("while renaming '" + partName + "' to '" + name + "'", rc);
  if (renamed.size != total)
    return fail(what + " failed: '" + name + "' holds " + std::to_string(renamed.size) + " bytes instead of " + std::to_string(total) +
                " after the rename");
  out.ok = true;
  return out;
}

}  // namespace passerelle::sftp
