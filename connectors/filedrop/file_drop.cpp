// File drop (see file_drop.h): Linux, inotify with polling as fallback.
#include "connectors/filedrop/file_drop.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <thread>

namespace passerelle::filedrop {

namespace fs = std::filesystem;

namespace {

std::string errnoText(int e) { return std::strerror(e); }

// fsync of a folder, so that a rename into or out of it survives a crash.
bool syncFolder(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool inProgressName(const std::string& name) {
  auto endsWith = [&](std::string_view s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  return name.empty() || name[0] == '.' || endsWith(".tmp") || endsWith(".part") || endsWith(".partial") ||
         endsWith(".TMP") || endsWith(".PART");
}

std::string stamp() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char b[20];
  std::strftime(b, sizeof b, "%Y%m%dT%H%M%SZ", &tm);
  return b;
}

}  // namespace

Folders Folders::under(const fs::path& root) { return {root / "inbox", root / "outbox", root / "done", root / "quarantine"}; }

bool Folders::create(std::string& error) const {
  for (const fs::path* p : {&inbox, &outbox, &done, &quarantine}) {
    std::error_code ec;
    fs::create_directories(*p, ec);
    if (ec) {
      error = "cannot create " + p->string() + ": " + ec.message();
      return false;
    }
    fs::permissions(*p, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec, fs::perm_options::replace, ec);
    if (::access(p->c_str(), W_OK | X_OK) != 0) {
      error = "cannot write in " + p->string() + ": " + errnoText(errno);
      return false;
    }
  }
  return true;
}

bool safeFileName(std::string_view name) {
  if (name.empty() || name.size() > 200 || name[0] == '.' || name == "..") return false;
  for (char c : name)
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return false;
  return true;
}

bool writeAtomically(const fs::path& dir, const std::string& name, std::string_view bytes, std::string& error, unsigned mode) {
  if (!safeFileName(name)) {
    error = "'" + name + "' is not a file name this folder takes";
    return false;
  }
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(random()));
  fs::path tmp = dir / ("." + name + "." + suffix + ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) {
    error = "cannot create " + tmp.string() + ": " + errnoText(errno);
    return false;
  }
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    error = what + " " + (dir / name).string() + ": " + errnoText(e);
    return false;
  };
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    error = "cannot close " + tmp.string() + ": " + errnoText(e);
    return false;
  }
  if (::rename(tmp.c_str(), (dir / name).c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    error = "cannot rename to " + (dir / name).string() + ": " + errnoText(e);
    return false;
  }
  if (!syncFolder(dir)) {
    error = "cannot sync the folder " + dir.string() + ": " + errnoText(errno);
    return false;
  }
  return true;
}

struct Watcher::Impl {
  Folders folders;
  WatchOptions options;
  Handler handler;
  Report report;
  struct Seen {
    std::uintmax_t size = 0;
    std::int64_t mtime = 0;  // nanoseconds
    std::chrono::steady_clock::time_point since, retryAt;
  };
  std::map<std::string, Seen> seen;
  std::mutex scanMutex;
  std::thread thread;
  std::atomic<bool> running{false};
  int inotifyFd = -1;
  int stopFd = -1;

  void log(const std::string& file, const std::string& event, const std::string& detail) {
    if (report) report(file, event, detail);
  }

  // A name for `name` in `dir` that is not taken yet (the name itself, or with a time stamp).
  static std::string freeName(const fs::path& dir, const std::string& name) {
    std::string candidate = name;
    for (int k = 1; ::access((dir / candidate).c_str(), F_OK) == 0 && k < 1000; ++k)
      candidate = name + "." + stamp() + (k > 1 ? "-" + std::to_string(k) : "");
    return candidate;
  }

  // Moves inbox/name to dir/target; syncs both folders.
  bool move(const std::string& name, const fs::path& dir, const std::string& target) {
    if (::rename((folders.inbox / name).c_str(), (dir / target).c_str()) != 0) {
      log(name, "move-failed", "to " + dir.string() + ": " + errnoText(errno));
      return false;
    }
    syncFolder(dir);
    syncFolder(folders.inbox);
    return true;
  }

  bool quarantine(const std::string& name, const std::string& why) {
    // The reason first: a crash between the two leaves the file in the inbox, offered again.
    std::string target = freeName(folders.quarantine, name), error;
    std::string text = "file: " + name + "\nquarantined: " + stamp() + "\nreason: " + why + "\n";
    if (!writeAtomically(folders.quarantine, target + ".error.txt", text, error)) {
      log(name, "quarantine-failed", error);
      return false;
    }
    if (!move(name, folders.quarantine, target)) return false;
    log(name, "quarantined", why);
    return true;
  }

  // What became of one file handed over: taken (done/ or quarantine/), to wait (retry, changed
  // while read: `again` holds its new state), or gone.
  struct Outcome {
    enum class Kind { kTaken, kWait, kChanged, kGone } kind = Kind::kWait;
    Seen again;
  };

  // Reads one stable file, hands it to the handler and moves it as the handler decides.
  Outcome take(const std::string& name, const struct stat& st, std::chrono::steady_clock::time_point now) {
    Outcome out;
    if (static_cast<std::size_t>(st.st_size) > options.maxBytes) {
      out.kind = quarantine(name, "the file has " + std::to_string(st.st_size) + " bytes, more than the " +
                                      std::to_string(options.maxBytes) + " this installation takes")
                     ? Outcome::Kind::kTaken
                     : Outcome::Kind::kWait;
      return out;
    }
    DroppedFile file;
    file.name = name;
    int fd = ::open((folders.inbox / name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      log(name, "vanished", errnoText(errno));
      out.kind = Outcome::Kind::kGone;
      return out;
    }
    file.bytes.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    bool readOk = true;
    while (true) {
      if (got == file.bytes.size()) file.bytes.resize(file.bytes.size() + 4096);
      ssize_t n = ::read(fd, file.bytes.data() + got, file.bytes.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        readOk = false;
        break;
      }
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
      if (got > options.maxBytes) break;
    }
    file.bytes.resize(got);
    struct stat after{};
    bool same = ::fstat(fd, &after) == 0 && after.st_size == st.st_size && after.st_mtim.tv_sec == st.st_mtim.tv_sec &&
                after.st_mtim.tv_nsec == st.st_mtim.tv_nsec && got == static_cast<std::size_t>(st.st_size);
    ::close(fd);
    if (!readOk) {
      log(name, "unreadable", errnoText(errno));
      return out;
    }
    if (!same) {
      // It changed while read: not complete yet, wait until it is stable again.
      out.kind = Outcome::Kind::kChanged;
      out.again = Seen{static_cast<std::uintmax_t>(after.st_size),
                       static_cast<std::int64_t>(after.st_mtim.tv_sec) * 1000000000 + after.st_mtim.tv_nsec, now, {}};
      log(name, "changed-while-read", "offered again once stable");
      return out;
    }
    file.sha256 = sha256Hex(file.bytes);
    Decision d;
    try {
      d = handler(file);
    } catch (const std::exception& e) {
      d = Decision::retryLater(std::string("the handler failed: ") + e.what());
    }
    switch (d.kind) {
      case Decision::Kind::kStored:
        if (move(name, folders.done, freeName(folders.done, name))) {
          out.kind = Outcome::Kind::kTaken;
          log(name, "done", d.reason.empty() ? "stored" : d.reason);
        }
        break;
      case Decision::Kind::kQuarantine:
        if (quarantine(name, d.reason)) out.kind = Outcome::Kind::kTaken;
        break;
      case Decision::Kind::kRetryLater:
        log(name, "retry-later", d.reason);
        break;
    }
    return out;
  }

  std::size_t scan() {
    std::lock_guard<std::mutex> lock(scanMutex);
    auto now = std::chrono::steady_clock::now();
    std::map<std::string, bool> present;
    std::error_code ec;
    fs::directory_iterator it(folders.inbox, ec), end;
    if (ec) {
      log(folders.inbox.string(), "inbox-unreadable", ec.message());
      return 0;
    }
    // The files stable since the last scans, in name order.
    std::vector<std::pair<std::string, struct stat>> ready;
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      std::string name = it->path().filename().string();
      if (inProgressName(name)) continue;
      struct stat st{};
      if (::lstat(it->path().c_str(), &st) != 0) continue;  // gone meanwhile
      if (!S_ISREG(st.st_mode)) {
        if (!seen.count(name)) log(name, "skipped", "not a regular file (a folder or a link): left in the inbox");
        seen[name] = Seen{};
        present[name] = true;
        continue;
      }
      present[name] = true;
      std::int64_t mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      auto s = seen.find(name);
      if (s == seen.end() || s->second.size != static_cast<std::uintmax_t>(st.st_size) || s->second.mtime != mtime) {
        seen[name] = Seen{static_cast<std::uintmax_t>(st.st_size), mtime, now, {}};
        continue;
      }
      if (now - s->second.since < options.stableFor || now < s->second.retryAt) continue;
      ready.emplace_back(name, st);
    }
    std::sort(ready.begin(), ready.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    // Handed over by `workers` threads at once (their commits grouped by the store).
    std::vector<Outcome> outcomes(ready.size());
    std::size_t workers = std::max<std::size_t>(1, std::min<std::size_t>(options.workers, ready.size()));
    if (workers == 1) {
      for (std::size_t k = 0; k < ready.size(); ++k) outcomes[k] = take(ready[k].first, ready[k].second, now);
    } else {
      std::atomic<std::size_t> next{0};
      std::vector<std::thread> pool;
      for (std::size_t w = 0; w < workers; ++w)
        pool.emplace_back([&] {
          for (std::size_t k; (k = next++) < ready.size();) outcomes[k] = take(ready[k].first, ready[k].second, now);
        });
      for (auto& t : pool) t.join();
    }
    std::size_t handled = 0;
    for (std::size_t k = 0; k < ready.size(); ++k) {
      const std::string& name = ready[k].first;
      switch (outcomes[k].kind) {
        case Outcome::Kind::kTaken:
          ++handled;
          seen.erase(name);
          break;
        case Outcome::Kind::kGone:
          seen.erase(name);
          break;
        case Outcome::Kind::kChanged:
          seen[name] = outcomes[k].again;
          break;
        case Outcome::Kind::kWait:
          seen[name].retryAt = now + options.retryAfter;
          break;
      }
    }
    for (auto s = seen.begin(); s != seen.end();) s = present.count(s->first) ? std::next(s) : seen.erase(s);
    return handled;
  }

  void loop() {
    while (running.load()) {
      scan();
      auto wait = options.pollEvery;
      {
        std::lock_guard<std::mutex> lock(scanMutex);
        bool pending = false;
        for (const auto& [name, s] : seen)
          if (s.size || s.mtime) pending = true;
        if (pending) wait = std::min(wait, std::max(std::chrono::milliseconds(20), options.stableFor / 2));
      }
      pollfd fds[2] = {{stopFd, POLLIN, 0}, {inotifyFd, POLLIN, 0}};
      int n = ::poll(fds, inotifyFd >= 0 ? 2 : 1, static_cast<int>(wait.count()));
      if (n > 0 && (fds[0].revents & POLLIN)) break;
      if (n > 0 && inotifyFd >= 0 && (fds[1].revents & POLLIN)) {
        char buf[8192];
        while (::read(inotifyFd, buf, sizeof buf) > 0) {
        }
      }
    }
  }
};

Watcher::Watcher(Folders folders, WatchOptions options, Handler handler, Report report) : impl_(std::make_unique<Impl>()) {
  impl_->folders = std::move(folders);
  impl_->options = options;
  impl_->handler = std::move(handler);
  impl_->report = std::move(report);
}

Watcher::~Watcher() { stop(); }

bool Watcher::start(std::string& error) {
  if (impl_->running.load()) return true;
  if (!impl_->folders.create(error)) return false;
  impl_->stopFd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->stopFd < 0) {
    error = "eventfd: " + errnoText(errno);
    return false;
  }
  if (impl_->options.useInotify) {
    impl_->inotifyFd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (impl_->inotifyFd >= 0 &&
        ::inotify_add_watch(impl_->inotifyFd, impl_->folders.inbox.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY | IN_ATTRIB) < 0) {
      impl_->log(impl_->folders.inbox.string(), "polling", std::string("inotify unavailable: ") + errnoText(errno));
      ::close(impl_->inotifyFd);
      impl_->inotifyFd = -1;
    }
  }
  impl_->running = true;
  impl_->thread = std::thread([this] { impl_->loop(); });
  return true;
}

void Watcher::stop() {
  if (!impl_ || !impl_->running.exchange(false)) return;
  std::uint64_t one = 1;
  (void)!::write(impl_->stopFd, &one, sizeof one);
  if (impl_->thread.joinable()) impl_->thread.join();
  if (impl_->inotifyFd >= 0) ::close(impl_->inotifyFd);
  ::close(impl_->stopFd);
  impl_->inotifyFd = impl_->stopFd = -1;
}

std::size_t Watcher::scanOnce() { return impl_->scan(); }

bool Watcher::usingInotify() const { return impl_->inotifyFd >= 0; }

}  // namespace passerelle::filedrop
