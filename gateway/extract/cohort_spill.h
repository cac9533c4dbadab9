// How an extract holds a cohort of a million patients within bounded memory: texts interned once
// (patient ids, references, codes), patients as fixed-size records, and what is numerous (the
// encounters and measures, tens of millions) written as fixed-size records to bucket files on disk,
// a bucket per range of patients, so that it is read back one range of patients at a time.
// Not thread-safe: one extract owns its instances.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::extract {

// Each distinct text once, numbered from 0 in the order first added.
class Interned {
 public:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;
  std::uint32_t add(std::string_view text);
  std::uint32_t find(std::string_view text) const;  // kNone when absent
  std::string_view text(std::uint32_t id) const {
    return id == kNone ? std::string_view() : std::string_view(arena_.data() + starts_[id], starts_[id + 1] - starts_[id]);
  }
  std::size_t size() const { return starts_.size() - 1; }
  std::size_t bytes() const { return arena_.capacity() + starts_.capacity() * sizeof(std::uint64_t) + slots_.capacity() * sizeof(std::uint32_t); }

 private:
  void rehash(std::size_t slots);
  std::string arena_;
  std::vector<std::uint64_t> starts_{0};
  std::vector<std::uint32_t> slots_;  // open addressing: id + 1, 0 when free
};

// A date (YYYY, YYYY-MM, YYYY-MM-DD, or the day of a dateTime) as the number YYYYMMDD, the missing
// parts 0; 0 when it is not one. Ordered like the text; unpackDate gives the text back.
std::int32_t packDate(std::string_view text);
std::string unpackDate(std::int32_t date);

// Records of one size, each filed under its patient number, read back by range of patients.
class Spill {
 public:
  // Files `prefix`-<n>, one per `perBucket` patients of `patients`.
  Spill(std::filesystem::path prefix, std::size_t recordSize, std::uint32_t patients, std::uint32_t perBucket);
  ~Spill();  // the files removed
  Spill(const Spill&) = delete;
  Spill& operator=(const Spill&) = delete;

  bool add(std::uint32_t patient, const void* record);  // false (see error()) when a file cannot be written
  bool finish();                                        // everything written out
  std::size_t buckets() const { return buckets_.size(); }
  std::uint32_t perBucket() const { return perBucket_; }
  // The records of bucket `b`, grouped by patient in the order added: `order` gets, for each patient
  // of the bucket (from b * perBucket), the index of its first record in `records` (one more entry
  // at the end: the number of records).
  bool read(std::size_t b, std::vector<char>& records, std::vector<std::uint32_t>& order);
  std::uint64_t records() const { return count_; }
  const std::string& error() const { return error_; }

 private:
  struct Bucket {
    std::string path, buffer;
    int fd = -1;
  };
  bool flush(Bucket& b);
  std::vector<Bucket> buckets_;
  std::size_t size_;
  std::uint32_t patients_, perBucket_;
  std::uint64_t count_ = 0;
  std::string error_;
  std::vector<char> scratch_;
};

}  // namespace passerelle::extract
