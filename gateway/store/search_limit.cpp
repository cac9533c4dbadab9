// SearchLimit: the calling thread's deadline and client check, applied to SQLite reads through a
// progress handler (see resource_store.h).

#include <atomic>

#include "gateway/store/resource_store.h"
#include "gateway/store/sql_dialect.h"
#include "gateway/store/sqlite_connection.h"

namespace passerelle::store {

struct SearchLimit::State {
  std::chrono::steady_clock::time_point deadline;
  std::function<bool()> clientGone;
  std::chrono::steady_clock::time_point nextCheck{};
  const char* stopped = nullptr;
};

namespace {

thread_local SearchLimit::State* tlLimit = nullptr;
thread_local const char* tlLastStop = nullptr;
std::atomic<std::uint64_t> pastDeadline{0}, abandoned{0}, failures{0};

// How often the client is looked for (a poll() each time).
constexpr auto kClientCheck = std::chrono::milliseconds(2);

int progress(void*) {
  SearchLimit::State* s = tlLimit;
  if (!s) return 0;
  auto now = std::chrono::steady_clock::now();
  if (now >= s->deadline) {
    if (!s->stopped) pastDeadline.fetch_add(1, std::memory_order_relaxed);
    s->stopped = tlLastStop = "deadline";
    return 1;
  }
  if (s->clientGone && now >= s->nextCheck) {
    s->nextCheck = now + kClientCheck;
    if (s->clientGone()) {
      if (!s->stopped) abandoned.fetch_add(1, std::memory_order_relaxed);
      s->stopped = tlLastStop = "client-gone";
      return 1;
    }
  }
  return 0;
}

}  // namespace

SearchLimit::SearchLimit(std::chrono::steady_clock::time_point deadline, std::function<bool()> clientGone)
    : previous_(tlLimit), state_(std::make_unique<State>()) {
  state_->deadline = deadline;
  state_->clientGone = std::move(clientGone);
  tlLimit = state_.get();
  tlLastStop = nullptr;
}

SearchLimit::~SearchLimit() { tlLimit = previous_; }

bool readLimitReached() { return progress(nullptr) != 0; }

bool readLimitActive() { return tlLimit != nullptr; }

Error readStoppedError() {
  return makeError(ErrorCode::kTimeout, tlLastStop && std::string(tlLastStop) == "client-gone"
                                            ? "the search was stopped: its client went away"
                                            : "the search was stopped: it ran past its time limit (search.timeout_ms)");
}

void countDatabaseFailure() { failures.fetch_add(1, std::memory_order_relaxed); }

void readLimitCounters(std::uint64_t& deadline, std::uint64_t& gone, std::uint64_t& failed) {
  deadline = pastDeadline.load(std::memory_order_relaxed);
  gone = abandoned.load(std::memory_order_relaxed);
  failed = failures.load(std::memory_order_relaxed);
}

namespace sqlite {

void countFailure() { countDatabaseFailure(); }

void limitReads(sqlite3* db) {
  // Every 2,000 virtual machine steps: a few microseconds of a search, a clock read each time.
  sqlite3_progress_handler(db, 2000, &progress, nullptr);
}

void limitCounters(std::uint64_t& deadline, std::uint64_t& gone, std::uint64_t& failed) { readLimitCounters(deadline, gone, failed); }

}  // namespace sqlite
}  // namespace passerelle::store
