// The audit journal: where a record first becomes durable. The writer appends each group of
// records as one write and one fdatasync into a segment file; the indexer then copies them into the
// audit database (which queries and the verifier read) and releases the segments the database holds
// durably, which are reused (a reused file is rewritten in place, cheaper to sync than one that
// grows). Internal to the audit library.
//
// A segment starts with a 64-byte header ("PAUDJNL1", the first seq it holds) followed by frames:
// <u32 little-endian length><canonical text><64 hex digits of the chain hash>. Nothing else marks
// where the data ends: a reader follows the chain (seq + 1, SHA-256 over the previous hash and the
// text) and stops at the first frame that does not continue it (a torn write, or an older cycle's
// frames in a reused segment).
//
// Thread-safety: append() is called by one thread (the writer); release() and stats() by any.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/common/status.h"

namespace passerelle::audit::internal {

// The system calls the journal makes, replaceable by tests to inject failures.
struct JournalIo {
  std::function<long(int fd, const void* data, std::size_t n, long offset)> pwrite;
  std::function<int(int fd)> fdatasync;
  static JournalIo system();
};

// One record found in a journal.
struct JournalFrame {
  std::int64_t seq = 0;
  std::string_view text;  // the canonical text
  std::string_view hash;  // 64 hex digits
};

// Calls `fn` for each frame of the journal in `dir` that continues the chain after (afterSeq,
// afterHash), in order; stops at the first frame that does not (or when fn returns false). A missing
// folder holds nothing. Returns the number of frames given to fn.
Result<std::int64_t> readJournal(const std::string& dir, std::int64_t afterSeq, std::string_view afterHash,
                                 const std::function<bool(const JournalFrame&)>& fn);

// Appends one frame to `out`.
void appendFrame(std::string& out, std::string_view text, std::string_view hashHex);

class Journal {
 public:
  // Opens (creates) the folder. `segmentBytes`: the size of each segment file.
  static Result<std::unique_ptr<Journal>> open(const std::string& dir, std::size_t segmentBytes, JournalIo io = JournalIo::system());
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Writes `frames` (whole frames of consecutive records from firstSeq, in order) after what was
  // appended before and makes them durable. On failure nothing of it counts: the next append
  // starts where this one did.
  Result<void> append(std::string_view frames, std::int64_t firstSeq);
  // Everything up to `seq` is durable elsewhere: segments holding nothing later may be reused.
  void release(std::int64_t seq);
  // Makes one free segment ready, written with zeros, when there is none and the current one is
  // half used (syncing a write into space that was only reserved also commits file-system
  // metadata, about twice the cost). Call it off the appending thread; append() reserves a segment
  // itself when none is ready.
  Result<void> prepareSpare();

 private:
  struct Segment;
  Journal(std::string dir, std::size_t segmentBytes, JournalIo io);
  Result<Segment*> freshSegment();
  Result<std::unique_ptr<Segment>> createSegment(bool zeroFill);
  Result<void> writeInto(Segment& s, std::string_view frames, std::int64_t firstSeq, std::int64_t lastSeq);

  std::string dir_;
  std::size_t segmentBytes_;
  JournalIo io_;
  mutable std::mutex mutex_;  // guards the segment list (release() runs on another thread)
  std::vector<std::unique_ptr<Segment>> segments_;
  Segment* current_ = nullptr;  // writer only
  std::int64_t nextName_ = 0;  // guarded by mutex_
};

}  // namespace passerelle::audit::internal
