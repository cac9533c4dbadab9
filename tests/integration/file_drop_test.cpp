// The file-drop transport on real folders: complete files only, done/ after the handler stored,
// quarantine/ with the reason beside, retries, the watcher thread (inotify and polling), atomic
// exports.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "connectors/filedrop/file_drop.h"

namespace passerelle::filedrop {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class FileDrop : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/passerelle-filedrop-XXXXXX";
    root_ = mkdtemp(tmpl);
    folders_ = Folders::under(root_);
    std::string error;
    ASSERT_TRUE(folders_.create(error)) << error;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void put(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out << bytes;
  }
  // Written as GP software should: a temporary name, then renamed.
  void drop(const std::string& name, const std::string& bytes) {
    put(folders_.inbox / (name + ".part"), bytes);
    fs::rename(folders_.inbox / (name + ".part"), folders_.inbox / name);
  }
  static std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::vector<std::string> names(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  WatchOptions quick() {
    WatchOptions o;
    o.stableFor = 50ms;
    o.pollEvery = 100ms;
    o.retryAfter = 100ms;
    return o;
  }
  // Scans until `done` holds or two seconds pass.
  template <class F>
  bool scanUntil(Watcher& w, F done) {
    for (int i = 0; i < 100 && !done(); ++i) {
      w.scanOnce();
      std::this_thread::sleep_for(25ms);
    }
    return done();
  }

  fs::path root_;
  Folders folders_;
};

TEST_F(FileDrop, ACompleteFileIsHandedOverThenMovedToDone) {
  std::vector<DroppedFile> got;
  Watcher w(folders_, quick(), [&](const DroppedFile& f) { got.push_back(f); return Decision::stored(); }, nullptr);
  drop("resultat.hpr", "contenu");
  EXPECT_EQ(w.scanOnce(), 0u);  // first seen: not yet stable
  ASSERT_TRUE(scanUntil(w, [&] { return !got.empty(); }));
  EXPECT_EQ(got[0].name, "resultat.hpr");
  EXPECT_EQ(got[0].bytes, "contenu");
  EXPECT_EQ(got[0].sha256, sha256Hex("contenu"));
  EXPECT_EQ(got[0].sha256.size(), 64u);
  EXPECT_TRUE(names(folders_.inbox).empty());
  EXPECT_EQ(names(folders_.done), std::vector<std::string>{"resultat.hpr"});
  EXPECT_EQ(read(folders_.done / "resultat.hpr"), "contenu");
}

TEST_F(FileDrop, FilesBeingWrittenAreLeftAlone) {
  int calls = 0;
  Watcher w(folders_, quick(), [&](const DroppedFile&) { ++calls; return Decision::stored(); }, nullptr);
  put(folders_.inbox / "a.hpr.part", "x");
  put(folders_.inbox / ".cache", "x");
  put(folders_.inbox / "b.tmp", "x");
  for (int i = 0; i < 5; ++i) {
    w.scanOnce();
    std::this_thread::sleep_for(30ms);
  }
  EXPECT_EQ(calls, 0);
  // A file still growing is taken only once it keeps its size.
  put(folders_.inbox / "growing.hpr", "part 1");
  w.scanOnce();
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(30ms);
    std::ofstream(folders_.inbox / "growing.hpr", std::ios::app) << " more";
    w.scanOnce();
  }
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(scanUntil(w, [&] { return calls == 1; }));
  EXPECT_EQ(read(folders_.done / "growing.hpr"), "part 1 more more more more");
}

TEST_F(FileDrop, RefusedFilesGoToQuarantineWithTheirReason) {
  Watcher w(folders_, quick(), [&](const DroppedFile&) { return Decision::quarantine("line 7: the birth date '31/02/1962' is not a date"); }, nullptr);
  drop("lettre.hpr", "un");
  ASSERT_TRUE(scanUntil(w, [&] { return names(folders_.inbox).empty(); }));
  drop("lettre.hpr", "deux");  // the same name again
  ASSERT_TRUE(scanUntil(w, [&] { return names(folders_.inbox).empty(); }));
  auto q = names(folders_.quarantine);
  ASSERT_EQ(q.size(), 4u);
  EXPECT_EQ(q[0], "lettre.hpr");
  EXPECT_EQ(q[1].rfind("lettre.hpr.", 0), 0u);
  EXPECT_EQ(read(folders_.quarantine / "lettre.hpr"), "un");
  std::string reason = read(folders_.quarantine / "lettre.hpr.error.txt");
  EXPECT_NE(reason.find("reason: line 7: the birth date '31/02/1962' is not a date"), std::string::npos);
  // The second one under its new name, with its own reason beside it.
  std::string second = q[1].find(".error.txt") == std::string::npos ? q[1] : q[2];
  EXPECT_EQ(read(folders_.quarantine / second), "deux");
  EXPECT_TRUE(fs::exists(folders_.quarantine / (second + ".error.txt")));
  EXPECT_TRUE(names(folders_.done).empty());
}

TEST_F(FileDrop, TooLargeFilesAreQuarantinedUnread) {
  auto o = quick();
  o.maxBytes = 10;
  int calls = 0;
  Watcher w(folders_, o, [&](const DroppedFile&) { ++calls; return Decision::stored(); }, nullptr);
  drop("big.xml", std::string(11, 'x'));
  ASSERT_TRUE(scanUntil(w, [&] { return names(folders_.inbox).empty(); }));
  EXPECT_EQ(calls, 0);
  EXPECT_NE(read(folders_.quarantine / "big.xml.error.txt").find("11 bytes, more than the 10"), std::string::npos);
}

TEST_F(FileDrop, AFileTheHandlerCannotTakeNowIsOfferedAgain) {
  int calls = 0;
  Watcher w(folders_, quick(), [&](const DroppedFile&) {
    ++calls;
    if (calls == 1) return Decision::retryLater("the database is unavailable");
    if (calls == 2) throw std::runtime_error("unexpected");
    return Decision::stored();
  }, nullptr);
  drop("a.json", "{}");
  ASSERT_TRUE(scanUntil(w, [&] { return calls == 1; }));
  EXPECT_EQ(names(folders_.inbox), std::vector<std::string>{"a.json"});
  ASSERT_TRUE(scanUntil(w, [&] { return calls == 2; }));
  EXPECT_EQ(names(folders_.inbox), std::vector<std::string>{"a.json"});
  ASSERT_TRUE(scanUntil(w, [&] { return calls == 3; }));
  EXPECT_EQ(names(folders_.done), std::vector<std::string>{"a.json"});
}

TEST_F(FileDrop, SeveralWorkersTakeEveryFileOnce) {
  auto o = quick();
  o.workers = 4;
  std::mutex m;
  std::map<std::string, int> got;
  std::atomic<int> calls{0};
  Watcher w(folders_, o, [&](const DroppedFile& f) {
    std::lock_guard<std::mutex> lock(m);
    ++got[f.name];
    // Every fifth refused, every seventh asked again once.
    if (f.name.back() == '5') return Decision::quarantine("refused");
    if (f.name.back() == '7' && got[f.name] == 1) return Decision::retryLater("later");
    ++calls;
    return Decision::stored();
  }, nullptr);
  for (int i = 0; i < 60; ++i) drop("f" + std::to_string(100 + i), std::to_string(i));
  ASSERT_TRUE(scanUntil(w, [&] { return names(folders_.inbox).empty(); }));
  EXPECT_EQ(names(folders_.done).size(), 54u);
  EXPECT_EQ(names(folders_.quarantine).size(), 12u);  // 6 files and their reasons
  for (const auto& [name, n] : got) EXPECT_EQ(n, name.back() == '7' ? 2 : 1) << name;
}

TEST_F(FileDrop, LinksAndFoldersAreNotRead) {
  put(root_ / "secret", "not for the gateway");
  fs::create_symlink(root_ / "secret", folders_.inbox / "link.hpr");
  fs::create_directory(folders_.inbox / "sub");
  std::vector<std::string> events;
  int calls = 0;
  Watcher w(folders_, quick(), [&](const DroppedFile&) { ++calls; return Decision::stored(); },
            [&](const std::string& file, const std::string& event, const std::string&) { events.push_back(file + " " + event); });
  for (int i = 0; i < 5; ++i) {
    w.scanOnce();
    std::this_thread::sleep_for(30ms);
  }
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(std::count(events.begin(), events.end(), "link.hpr skipped"), 1);
  EXPECT_TRUE(fs::is_symlink(folders_.inbox / "link.hpr"));
}

void watchesByItself(FileDrop& t, const Folders& folders, bool inotify) {
  WatchOptions o;
  o.stableFor = 50ms;
  o.pollEvery = inotify ? 10s : 100ms;  // with inotify, events alone must wake it
  o.useInotify = inotify;
  std::mutex m;
  std::vector<std::string> got;
  Watcher w(folders, o, [&](const DroppedFile& f) {
    std::lock_guard<std::mutex> lock(m);
    got.push_back(f.name);
    return Decision::stored();
  }, nullptr);
  std::string error;
  ASSERT_TRUE(w.start(error)) << error;
  EXPECT_EQ(w.usingInotify(), inotify);
  for (int i = 0; i < 5; ++i) {
    std::ofstream(folders.inbox / ("f" + std::to_string(i) + ".part")) << i;
    fs::rename(folders.inbox / ("f" + std::to_string(i) + ".part"), folders.inbox / ("f" + std::to_string(i) + ".hpr"));
  }
  for (int i = 0; i < 200; ++i) {
    {
      std::lock_guard<std::mutex> lock(m);
      if (got.size() == 5) break;
    }
    std::this_thread::sleep_for(25ms);
  }
  w.stop();
  EXPECT_EQ(got.size(), 5u);
  (void)t;
}

TEST_F(FileDrop, TheWatcherTakesFilesByItselfWithInotify) { watchesByItself(*this, folders_, true); }
TEST_F(FileDrop, TheWatcherTakesFilesByItselfByPolling) { watchesByItself(*this, folders_, false); }

TEST_F(FileDrop, ExportsAreWrittenWholeOrNotAtAll) {
  std::string error;
  ASSERT_TRUE(writeAtomically(folders_.outbox, "cr-cied.hpr", "contenu", error)) << error;
  EXPECT_EQ(read(folders_.outbox / "cr-cied.hpr"), "contenu");
  EXPECT_EQ(names(folders_.outbox), std::vector<std::string>{"cr-cied.hpr"});  // no temporary file left
  for (const char* bad : {"../escape.hpr", ".hidden", "", "a/b"}) {
    EXPECT_FALSE(writeAtomically(folders_.outbox, bad, "x", error)) << bad;
    EXPECT_FALSE(error.empty());
  }
  EXPECT_FALSE(writeAtomically(root_ / "missing", "a.hpr", "x", error));
  EXPECT_NE(error.find("cannot create"), std::string::npos);
}

TEST_F(FileDrop, AFullDiskLeavesNoPartialExport) {
  fs::path small = root_ / "small";
  fs::create_directory(small);
  if (::geteuid() != 0 || ::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "mounting a small tmpfs needs root: the full-disk case is not run here";
  std::string error;
  bool ok = writeAtomically(small, "big.hpr", std::string(256 * 1024, 'x'), error);
  std::vector<std::string> left = names(small);
  ::umount(small.c_str());
  EXPECT_FALSE(ok);
  EXPECT_NE(error.find("No space left"), std::string::npos) << error;
  EXPECT_TRUE(left.empty());
}

}  // namespace
}  // namespace passerelle::filedrop
