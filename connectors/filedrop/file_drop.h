// File drop: the transport of GP software that exchanges files. Per installation a folder with
//   inbox/       files the software drops for the network
//   outbox/      files the network writes for the software (atomically: temp file, fsync, rename)
//   done/        inbox files taken, once what they carry is durably stored
//   quarantine/  inbox files refused, each with `<name>.error.txt` beside it saying what is wrong where
// A file is taken only when complete: names starting with '.' or ending in .tmp, .part or
// .partial are being written (the write-then-rename convention) and skipped; other files must keep
// the same size and modification time for `stableFor` before they are read, and again after.
// The inbox is watched with inotify (a scan on each event), with polling as fallback and as a
// safety net. Knows no format and no FHIR: a handler decides what each file is.
// Thread-safety: a Watcher runs its own thread; scanOnce may be called from any thread (scans are
// serialised). With `workers` > 1 the handler is called from that many threads at once.
#pragma once

#include "mappings/common/sha256.h"

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace passerelle::filedrop {

struct Folders {
  std::filesystem::path inbox, outbox, done, quarantine;
  // The four under one root: root/inbox, root/outbox, root/done, root/quarantine.
  static Folders under(const std::filesystem::path& root);
  // Creates what is missing (mode 0750); false with `error` when one cannot be made or written to.
  bool create(std::string& error) const;
};

struct WatchOptions {
  std::chrono::milliseconds stableFor{1000};  // unchanged that long before a file is read
  std::chrono::milliseconds pollEvery{2000};  // a scan at least that often (inotify or not)
  std::size_t maxBytes = 32u << 20;           // larger files are quarantined unread
  bool useInotify = true;                     // false: polling only
  std::chrono::milliseconds retryAfter{5000}; // a file the handler asked to retry waits that long
  std::size_t workers = 1;                    // files handed to the handler at once (in threads)
};

// A complete file taken from the inbox.
struct DroppedFile {
  std::string name;     // its name in the inbox
  std::string bytes;    // its content
  std::string sha256;   // of the content, lower-case hex
};

// What the handler made of a file: stored (moved to done/), refused (moved to quarantine/ with the
// reason), or not now (left in the inbox and offered again later: the store was unavailable...).
struct Decision {
  enum class Kind { kStored, kQuarantine, kRetryLater };
  Kind kind = Kind::kStored;
  std::string reason;  // for kQuarantine: what is wrong where; for the others: a note for the log
  static Decision stored(std::string note = {}) { return {Kind::kStored, std::move(note)}; }
  static Decision quarantine(std::string why) { return {Kind::kQuarantine, std::move(why)}; }
  static Decision retryLater(std::string why) { return {Kind::kRetryLater, std::move(why)}; }
};

class Watcher {
 public:
  using Handler = std::function<Decision(const DroppedFile&)>;
  // A line worth logging: a file taken, quarantined, vanished or unreadable, a folder problem.
  using Report = std::function<void(const std::string& file, const std::string& event, const std::string& detail)>;

  Watcher(Folders folders, WatchOptions options, Handler handler, Report report);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Starts the watching thread (inotify when it can, polling otherwise); false with `error` when
  // the folders cannot be made.
  bool start(std::string& error);
  // Stops the thread; a file being handled finishes first.
  void stop();
  // One pass over the inbox: files seen stable are read and handed to the handler; returns how
  // many were handled (stored or quarantined). Used by the thread, and by tests directly.
  std::size_t scanOnce();
  bool usingInotify() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Writes `bytes` as dir/name so that readers see either nothing or the whole file: a temporary
// file in the same folder (".name.<random>.tmp"), written, fsynced, renamed, the folder fsynced.
// False with `error` (the temporary file removed) on any failure, a full disk included. `mode`: the
// file's permissions (before the umask).
bool writeAtomically(const std::filesystem::path& dir, const std::string& name, std::string_view bytes, std::string& error,
                     unsigned mode = 0640);

// The SHA-256 of `bytes`, lower-case hex.
using ::passerelle::sha256Hex;

// A file name safe to create in a folder: no path separator, no leading '.', no control
// characters, at most 200 bytes.
bool safeFileName(std::string_view name);

}  // namespace passerelle::filedrop
