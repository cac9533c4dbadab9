// The audit journal's segments, appends and reader (see journal.h).
#include "gateway/audit/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gateway/audit/checkpoint_file.h"
#include "gateway/audit/record_codec.h"

namespace passerelle::audit::internal {

namespace {

constexpr char kMagic[8] = {'P', 'A', 'U', 'D', 'J', 'N', 'L', '1'};
constexpr std::size_t kHeaderBytes = 64;
constexpr std::size_t kMaxFrameText = 16u << 20;
constexpr std::size_t kKeepFree = 4;  // free segments kept for reuse; more are deleted
constexpr const char* kSuffix = ".paj";

void putU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t getU32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
void putI64(char* p, std::int64_t v) {
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((u >> (8 * i)) & 0xff);
}
std::int64_t getI64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return static_cast<std::int64_t>(v);
}

Error ioError(const std::string& what, const std::string& path, int err) {
  return makeError(err == ENOSPC || err == EDQUOT ? ErrorCode::kStorageFull : ErrorCode::kUnavailable,
                   "audit journal: " + what + " " + path + ": " + std::strerror(err));
}

Result<void> syncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ioError("cannot open folder", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ioError("cannot sync folder", dir, err);
  return {};
}

// The segment files of a folder with the first seq their header names (0: no valid header).
struct Found {
  std::string path;
  std::int64_t firstSeq = 0;
  std::int64_t name = 0;
};

std::vector<Found> listSegments(const std::string& dir) {
  std::vector<Found> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string file = e.path().filename().string();
    if (file.size() <= 12 || file.rfind("segment-", 0) != 0 || file.substr(file.size() - 4) != kSuffix) continue;
    Found f;
    f.path = e.path().string();
    f.name = std::atoll(file.substr(8, file.size() - 12).c_str());
    std::ifstream in(f.path, std::ios::binary);
    char head[kHeaderBytes];
    if (in.read(head, kHeaderBytes) && std::memcmp(head, kMagic, sizeof kMagic) == 0) f.firstSeq = getI64(head + 8);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

JournalIo JournalIo::system() {
  JournalIo io;
  io.pwrite = [](int fd, const void* data, std::size_t n, long offset) -> long {
    return static_cast<long>(::pwrite(fd, data, n, static_cast<off_t>(offset)));
  };
  io.fdatasync = [](int fd) { return ::fdatasync(fd); };
  return io;
}

void appendFrame(std::string& out, std::string_view text, std::string_view hashHex) {
  putU32(out, static_cast<std::uint32_t>(text.size()));
  out.append(text);
  out.append(hashHex);
}

Result<std::int64_t> readJournal(const std::string& dir, std::int64_t afterSeq, std::string_view afterHash,
                                 const std::function<bool(const JournalFrame&)>& fn) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return std::int64_t{0};
  std::vector<Found> found = listSegments(dir);
  found.erase(std::remove_if(found.begin(), found.end(), [](const Found& f) { return f.firstSeq <= 0; }), found.end());
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.firstSeq < b.firstSeq; });
  std::int64_t expected = afterSeq + 1, given = 0;
  std::string prev(afterHash);
  codec::ChainHasher hasher;
  char computed[codec::kHashHex];
  std::string data;
  codec::RecordView view;
  for (const Found& f : found) {
    if (f.firstSeq > expected) break;  // a gap: nothing after it continues the chain
    std::ifstream in(f.path, std::ios::binary);
    if (!in) return makeError(ErrorCode::kInternal, "audit journal: cannot read " + f.path);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    std::size_t at = kHeaderBytes;
    std::int64_t seqHere = f.firstSeq;
    bool stop = false;
    while (at + 4 <= data.size()) {
      std::size_t len = getU32(data.data() + at);
      if (len == 0 || len > kMaxFrameText || at + 4 + len + codec::kHashHex > data.size()) break;
      std::string_view text(data.data() + at + 4, len);
      std::string_view hash(data.data() + at + 4 + len, codec::kHashHex);
      if (!codec::decodeView(text, view) || view.seq != seqHere) break;  // end of this segment's data
      if (view.seq > expected) {
        stop = true;
        break;
      }
      if (view.seq == expected) {
        if (!hasher.hash(prev, text, computed) || std::string_view(computed, codec::kHashHex) != hash) {
          stop = true;  // does not continue the chain: an older cycle's frame or a torn write
          break;
        }
        if (!fn(JournalFrame{view.seq, text, hash})) return given + 1;
        ++given;
        prev.assign(hash);
        ++expected;
      }
      ++seqHere;
      at += 4 + len + codec::kHashHex;
    }
    if (stop) break;
  }
  return given;
}

struct Journal::Segment {
  std::string path;
  int fd = -1;
  std::int64_t name = 0;
  std::int64_t firstSeq = 0;  // 0: nothing written in this cycle
  std::int64_t lastSeq = 0;
  std::size_t used = 0;  // bytes written in this cycle (header included)
  bool free = true;
  ~Segment() {
    if (fd >= 0) ::close(fd);
  }
};

Journal::Journal(std::string dir, std::size_t segmentBytes, JournalIo io)
    : dir_(std::move(dir)), segmentBytes_(std::max<std::size_t>(segmentBytes, 4096)), io_(std::move(io)) {}

Journal::~Journal() = default;

Result<std::unique_ptr<Journal>> Journal::open(const std::string& dir, std::size_t segmentBytes, JournalIo io) {
  if (auto r = makeDirs(dir); !r.ok()) return r.error();
  std::unique_ptr<Journal> j(new Journal(dir, segmentBytes, std::move(io)));
  // What the folder holds was read (and stored elsewhere) before the journal is opened for
  // appends: every segment is free.
  for (const Found& f : listSegments(dir)) {
    auto s = std::make_unique<Segment>();
    s->path = f.path;
    s->name = f.name;
    s->fd = ::open(f.path.c_str(), O_RDWR | O_CLOEXEC);
    if (s->fd < 0) return ioError("cannot open", f.path, errno);
    j->nextName_ = std::max(j->nextName_, f.name + 1);
    j->segments_.push_back(std::move(s));
  }
  std::sort(j->segments_.begin(), j->segments_.end(),
            [](const std::unique_ptr<Segment>& a, const std::unique_ptr<Segment>& b) { return a->name < b->name; });
  return j;
}

Result<std::unique_ptr<Journal::Segment>> Journal::createSegment(bool zeroFill) {
  auto s = std::make_unique<Segment>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s->name = nextName_++;
  }
  char file[40];
  std::snprintf(file, sizeof file, "segment-%012lld%s", static_cast<long long>(s->name), kSuffix);
  s->path = (std::filesystem::path(dir_) / file).string();
  s->fd = ::open(s->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (s->fd < 0) return ioError("cannot create", s->path, errno);
  int rc = 0;
  if (zeroFill) {
    std::string zeros(1u << 20, '\0');
    for (std::size_t at = 0; at < segmentBytes_ && rc == 0; at += zeros.size()) {
      std::size_t n = std::min(zeros.size(), segmentBytes_ - at);
      if (::pwrite(s->fd, zeros.data(), n, static_cast<off_t>(at)) != static_cast<ssize_t>(n)) rc = errno ? errno : EIO;
    }
  } else {
    rc = ::posix_fallocate(s->fd, 0, static_cast<off_t>(segmentBytes_));
  }
  if (rc == 0 && ::fsync(s->fd) != 0) rc = errno;
  if (rc != 0) {
    ::unlink(s->path.c_str());
    return ioError("cannot reserve space for", s->path, rc);
  }
  if (auto d = syncDir(dir_); !d.ok()) {
    ::unlink(s->path.c_str());
    return d.error();
  }
  return s;
}

Result<Journal::Segment*> Journal::freshSegment() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : segments_)
      if (s->free) {
        s->free = false;
        s->firstSeq = s->lastSeq = 0;
        s->used = 0;
        return s.get();
      }
  }
  // None ready: a new file, its space reserved so that appends do not grow it.
  auto s = createSegment(false);
  if (!s.ok()) return s.error();
  s.value()->free = false;
  std::lock_guard<std::mutex> lock(mutex_);
  segments_.push_back(std::move(s.value()));
  return segments_.back().get();
}

Result<void> Journal::prepareSpare() {
  {
    // Only once the current segment is half used: a gateway that writes little never pays for it.
    std::lock_guard<std::mutex> lock(mutex_);
    if (!current_ || current_->used < segmentBytes_ / 2) return {};
    for (auto& s : segments_)
      if (s->free) return {};
  }
  auto s = createSegment(true);
  if (!s.ok()) return s.error();
  std::lock_guard<std::mutex> lock(mutex_);
  segments_.push_back(std::move(s.value()));
  return {};
}

Result<void> Journal::writeInto(Segment& s, std::string_view frames, std::int64_t firstSeq, std::int64_t lastSeq) {
  std::string buf;
  std::string_view out = frames;
  std::size_t at = s.used;
  if (s.used == 0) {
    buf.assign(kHeaderBytes, '\0');
    std::memcpy(buf.data(), kMagic, sizeof kMagic);
    putI64(buf.data() + 8, firstSeq);
    buf.append(frames);
    out = buf;
  }
  std::size_t done = 0;
  while (done < out.size()) {
    long n = io_.pwrite(s.fd, out.data() + done, out.size() - done, static_cast<long>(at + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ioError("cannot write", s.path, errno);
    }
    if (n == 0) return ioError("cannot write", s.path, EIO);
    done += static_cast<std::size_t>(n);
  }
  if (io_.fdatasync(s.fd) != 0) return ioError("cannot sync", s.path, errno);
  std::lock_guard<std::mutex> lock(mutex_);
  if (s.used == 0) s.firstSeq = firstSeq;
  s.lastSeq = lastSeq;
  s.used = at + out.size();
  return {};
}

Result<void> Journal::append(std::string_view frames, std::int64_t firstSeq) {
  while (!frames.empty()) {
    if (!current_) {
      auto s = freshSegment();
      if (!s.ok()) return s.error();
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = s.value();
    }
    std::size_t used = current_->used == 0 ? kHeaderBytes : current_->used;
    std::size_t room = segmentBytes_ > used ? segmentBytes_ - used : 0;
    // The whole frames that fit; a frame larger than a segment goes alone into an empty one.
    std::size_t fit = 0;
    std::int64_t fitLast = firstSeq - 1;
    while (fit < frames.size()) {
      std::size_t size = 4 + getU32(frames.data() + fit) + codec::kHashHex;
      if (fit + size > room) {
        if (fit == 0 && current_->used == 0) {
          fit = size;
          ++fitLast;
        }
        break;
      }
      fit += size;
      ++fitLast;
    }
    if (fit == 0) {  // full: the rest goes into the next segment
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = nullptr;
      continue;
    }
    // On failure the segment stays current and the next append rewrites the same place: frames
    // of a failed append that did reach the disk are overwritten, or no longer continue the chain.
    if (auto r = writeInto(*current_, frames.substr(0, fit), firstSeq, fitLast); !r.ok()) return r;
    frames.remove_prefix(fit);
    firstSeq = fitLast + 1;
  }
  return {};
}

void Journal::release(std::int64_t seq) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::size_t freeCount = 0;
  for (auto& s : segments_) {
    if (s.get() != current_ && !s->free && s->lastSeq <= seq) s->free = true;
    freeCount += s->free;
  }
  // Keep a few free segments for reuse; delete the others (a backlog that has drained).
  for (auto it = segments_.begin(); it != segments_.end() && freeCount > kKeepFree;) {
    if ((*it)->free) {
      ::unlink((*it)->path.c_str());
      it = segments_.erase(it);
      --freeCount;
    } else {
      ++it;
    }
  }
}

}  // namespace passerelle::audit::internal
