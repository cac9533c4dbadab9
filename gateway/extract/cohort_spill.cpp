// Compact cohort storage of the extracts (see cohort_spill.h).
#include "gateway/extract/cohort_spill.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

namespace passerelle::extract {

namespace {

std::uint64_t hashOf(std::string_view text) { return std::hash<std::string_view>{}(text); }

constexpr std::size_t kBuffer = 1 << 16;

}  // namespace

// ---- Interned ---------------------------------------------------------------------------------

void Interned::rehash(std::size_t slots) {
  slots_.assign(slots, 0);
  for (std::uint32_t id = 0; id < size(); ++id) {
    std::size_t at = hashOf(text(id)) & (slots - 1);
    while (slots_[at]) at = (at + 1) & (slots - 1);
    slots_[at] = id + 1;
  }
}

std::uint32_t Interned::find(std::string_view t) const {
  if (slots_.empty()) return kNone;
  std::size_t mask = slots_.size() - 1;
  for (std::size_t at = hashOf(t) & mask; slots_[at]; at = (at + 1) & mask)
    if (text(slots_[at] - 1) == t) return slots_[at] - 1;
  return kNone;
}

std::uint32_t Interned::add(std::string_view t) {
  if (std::uint32_t id = find(t); id != kNone) return id;
  if ((size() + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 64 : slots_.size() * 2);
  auto id = static_cast<std::uint32_t>(size());
  arena_.append(t);
  starts_.push_back(arena_.size());
  std::size_t mask = slots_.size() - 1, at = hashOf(t) & mask;
  while (slots_[at]) at = (at + 1) & mask;
  slots_[at] = id + 1;
  return id;
}

// ---- dates ------------------------------------------------------------------------------------

std::int32_t packDate(std::string_view t) {
  auto digits = [&](std::size_t at, std::size_t n, int& out) {
    if (t.size() < at + n) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      out = out * 10 + (t[i] - '0');
    }
    return true;
  };
  int y = 0, m = 0, d = 0;
  if (!digits(0, 4, y) || y == 0) return 0;
  if (t.size() > 4) {
    if (t[4] != '-' || !digits(5, 2, m) || m < 1 || m > 12) return 0;
    if (t.size() > 7) {
      if (t[7] != '-' || !digits(8, 2, d) || d < 1 || d > 31) return 0;
    }
  }
  return y * 10000 + m * 100 + d;
}

std::string unpackDate(std::int32_t date) {
  if (date <= 0) return {};
  int y = date / 10000, m = date / 100 % 100, d = date % 100;
  char buf[10] = {static_cast<char>('0' + y / 1000 % 10), static_cast<char>('0' + y / 100 % 10), static_cast<char>('0' + y / 10 % 10),
                  static_cast<char>('0' + y % 10), '-', static_cast<char>('0' + m / 10), static_cast<char>('0' + m % 10), '-',
                  static_cast<char>('0' + d / 10), static_cast<char>('0' + d % 10)};
  return std::string(buf, d ? 10 : m ? 7 : 4);
}

// ---- Spill ------------------------------------------------------------------------------------

Spill::Spill(std::filesystem::path prefix, std::size_t recordSize, std::uint32_t patients, std::uint32_t perBucket)
    : size_(recordSize), patients_(patients), perBucket_(perBucket ? perBucket : 1) {
  std::size_t n = patients ? (patients + perBucket_ - 1) / perBucket_ : 1;
  buckets_.resize(n);
  for (std::size_t i = 0; i < n; ++i) buckets_[i].path = prefix.string() + "-" + std::to_string(i);
}

Spill::~Spill() {
  for (auto& b : buckets_) {
    if (b.fd >= 0) ::close(b.fd);
    if (!b.path.empty()) ::unlink(b.path.c_str());
  }
}

bool Spill::flush(Bucket& b) {
  if (b.buffer.empty()) return true;
  if (b.fd < 0) {
    b.fd = ::open(b.path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (b.fd < 0) {
      error_ = b.path + ": " + std::strerror(errno);
      return false;
    }
  }
  const char* p = b.buffer.data();
  std::size_t left = b.buffer.size();
  while (left) {
    ssize_t n = ::write(b.fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = b.path + ": " + std::strerror(errno);
      return false;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  b.buffer.clear();
  return true;
}

bool Spill::add(std::uint32_t patient, const void* record) {
  if (patient >= patients_) return true;
  Bucket& b = buckets_[patient / perBucket_];
  if (b.buffer.capacity() < kBuffer) b.buffer.reserve(kBuffer);
  b.buffer.append(reinterpret_cast<const char*>(&patient), sizeof patient);
  b.buffer.append(static_cast<const char*>(record), size_);
  ++count_;
  return b.buffer.size() + sizeof patient + size_ <= kBuffer || flush(b);
}

bool Spill::finish() {
  for (auto& b : buckets_) {
    if (!flush(b)) return false;
    std::string().swap(b.buffer);
  }
  return true;
}

bool Spill::read(std::size_t index, std::vector<char>& records, std::vector<std::uint32_t>& order) {
  Bucket& b = buckets_[index];
  records.clear();
  std::uint32_t first = static_cast<std::uint32_t>(index) * perBucket_;
  std::uint32_t count = std::min(perBucket_, patients_ - first);
  order.assign(count + 1, 0);
  if (b.fd < 0) return true;
  off_t end = ::lseek(b.fd, 0, SEEK_END);
  if (end < 0) {
    error_ = b.path + ": " + std::strerror(errno);
    return false;
  }
  scratch_.resize(static_cast<std::size_t>(end));
  std::size_t got = 0;
  while (got < scratch_.size()) {
    ssize_t n = ::pread(b.fd, scratch_.data() + got, scratch_.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_ = b.path + ": " + (n == 0 ? std::string("shorter than written") : std::strerror(errno));
      return false;
    }
    got += static_cast<std::size_t>(n);
  }
  // A counting sort by patient, stable: each patient's records in the order they were added.
  std::size_t stride = sizeof(std::uint32_t) + size_, n = scratch_.size() / stride;
  std::vector<std::uint32_t> next(count + 1, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t patient;
    std::memcpy(&patient, scratch_.data() + i * stride, sizeof patient);
    ++order[patient - first + 1];
  }
  for (std::uint32_t p = 0; p < count; ++p) order[p + 1] += order[p];
  records.resize(n * size_);
  for (std::uint32_t p = 0; p <= count; ++p) next[p] = order[p];
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t patient;
    std::memcpy(&patient, scratch_.data() + i * stride, sizeof patient);
    std::memcpy(records.data() + static_cast<std::size_t>(next[patient - first]++) * size_, scratch_.data() + i * stride + sizeof patient, size_);
  }
  return true;
}

}  // namespace passerelle::extract
