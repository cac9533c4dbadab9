// The SFTP upload against a real OpenSSH server: /usr/sbin/sshd started by each test over a
// temporary folder on a free port, with keys made by ssh-keygen, logging in as the current user
// (skipped, saying so, when sshd or ssh-keygen is absent). Checked on the server's disk: delivery
// under the final name only, host key verification, refused names and settings, an upload cut by
// killing the server then resumed, a `.part` from other bytes, an upload already delivered.
#include "connectors/sftp/sftp_upload.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/support/ssh_server.h"
#include "tests/support/test_gateway.h"

namespace passerelle::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;


std::string run(const std::string& command) { return runCommand(command); }

std::string randomBytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = random();
    for (std::size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
  }
  return s;
}

std::int64_t fileSize(const std::string& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  return ec ? -1 : static_cast<std::int64_t>(size);
}

class SftpUploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kSshd)) GTEST_SKIP() << "no OpenSSH server at " << kSshd << " (Debian package openssh-server)";
    if (!fs::exists(kKeygen)) GTEST_SKIP() << "no " << kKeygen << " (Debian package openssh-client)";
    std::string error;
    ASSERT_TRUE(server_.setUp(error)) << error;
  }

  void TearDown() override {
    if (HasFailure()) std::cerr << "sshd's log:\n" << readFile(dir_.path() + "/sshd.log");
  }

  sftp::Options options() const {
    sftp::Options o;
    o.url = server_.url();
    o.user = currentUser();
    o.privateKey = dir_.path() + "/user_key";
    o.publicKey = dir_.path() + "/user_key.pub";
    o.hostKeySha256 = server_.fingerprint();
    o.connectTimeoutMs = 5000;
    o.timeoutMs = 60000;
    return o;
  }

  std::string remote(const std::string& name) const { return server_.remote() + "/" + name; }
  bool remoteEmpty() const { return fs::is_empty(server_.remote()); }

  TempDir dir_;
  SshServer server_{dir_.path()};
};

TEST_F(SftpUploadTest, DeliversTheBytesUnderTheFinalNameWithNoPartLeft) {
  const std::string bytes = randomBytes(5u << 20, 1);
  sftp::Outcome r = sftp::upload(options(), "extract-1.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(r.resumedFrom, 0);
  EXPECT_EQ(r.bytesSent, static_cast<std::int64_t>(bytes.size()));
  EXPECT_FALSE(r.alreadyDelivered);
  EXPECT_EQ(r.remotePath, remote("extract-1.p7m"));
  EXPECT_TRUE(readFile(remote("extract-1.p7m")) == bytes);
  EXPECT_FALSE(fs::exists(remote("extract-1.p7m.part")));
  // A name that needs escaping in the URL (space, '%', UTF-8), and the fingerprint without its prefix.
  sftp::Options bare = options();
  bare.hostKeySha256 = server_.fingerprint().substr(7);
  const std::string name = "évaluation 2024 %41.p7m";
  r = sftp::upload(bare, name, "small");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(readFile(remote(name)), "small");
  EXPECT_FALSE(fs::exists(remote(name + ".part")));
  EXPECT_EQ(std::distance(fs::directory_iterator(server_.remote()), fs::directory_iterator()), 2);
}

TEST_F(SftpUploadTest, RefusesAServerWhoseHostKeyFingerprintDiffers) {
  sftp::Options o = options();
  std::string other = run(kKeygen + " -lf " + dir_.path() + "/other_key.pub");
  o.hostKeySha256 = other.substr(other.find("SHA256:"), 7 + 43);
  ASSERT_NE(o.hostKeySha256, server_.fingerprint());
  sftp::Outcome r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("host key does not have the configured SHA-256 fingerprint"), std::string::npos) << r.error;
  EXPECT_TRUE(remoteEmpty());
}

TEST_F(SftpUploadTest, ChecksTheHostKeyAgainstAKnownHostsFile) {
  sftp::Options o = options();
  o.hostKeySha256.clear();
  o.knownHosts = dir_.path() + "/known_hosts";
  std::ofstream(o.knownHosts) << server_.knownHostsLine("other_key.pub", server_.port());
  sftp::Outcome r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("host key is not the one known_hosts file"), std::string::npos) << r.error;
  std::ofstream(o.knownHosts) << server_.knownHostsLine("host_key.pub", server_.port() == 2222 ? 2223 : 2222);
  r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("holds no host key for this server"), std::string::npos) << r.error;
  EXPECT_TRUE(remoteEmpty());
  std::ofstream(o.knownHosts) << server_.knownHostsLine("host_key.pub", server_.port());
  r = sftp::upload(o, "extract.p7m", "bytes");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(readFile(remote("extract.p7m")), "bytes");
}

TEST_F(SftpUploadTest, RefusesBeforeConnectingWithoutAHostKey) {
  // A listener of the test's own stands for the server: no connection may reach it.
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ::fcntl(listener, F_SETFL, O_NONBLOCK);
  sftp::Options o = options();
  o.url = "sftp://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + server_.remote() + "/";
  o.hostKeySha256.clear();
  sftp::Outcome r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("host key is not configured"), std::string::npos) << r.error;
  o.hostKeySha256 = "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48";
  r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("not a SHA-256 fingerprint"), std::string::npos) << r.error;
  o.hostKeySha256.clear();
  o.knownHosts = dir_.path() + "/absent_known_hosts";
  r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("known_hosts file"), std::string::npos) << r.error;
  EXPECT_LT(::accept(listener, nullptr, nullptr), 0);  // nothing connected
  ::close(listener);
  EXPECT_TRUE(remoteEmpty());
}

TEST_F(SftpUploadTest, RefusesUnsafeNames) {
  for (const std::string& name : {std::string("../x"), std::string("a/b"), std::string(""), std::string(".."), std::string("."),
                                  std::string("a\nb"), std::string("a\\b"), std::string("a\"b"), std::string("a\0b", 3), std::string(251, 'x')}) {
    sftp::Outcome r = sftp::upload(options(), name, "bytes");
    EXPECT_FALSE(r.ok) << name;
    EXPECT_EQ(r.error.rfind("SFTP upload refused: ", 0), 0u) << r.error;
  }
  EXPECT_TRUE(remoteEmpty());
  std::string why;
  EXPECT_TRUE(sftp::validName("extract 2024-05 (v2).p7m", why)) << why;
  EXPECT_TRUE(sftp::validName(std::string(250, 'x'), why)) << why;
}

TEST_F(SftpUploadTest, SaysWhatFailed) {
  sftp::Options o = options();
  o.privateKey = dir_.path() + "/other_key";  // not in authorized_keys
  o.publicKey = dir_.path() + "/other_key.pub";
  sftp::Outcome r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("authentication as '" + currentUser() + "'"), std::string::npos) << r.error;
  o = options();
  o.url = "sftp://127.0.0.1:" + std::to_string(server_.port()) + server_.remote() + "/missing/";
  r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("no such file or folder"), std::string::npos) << r.error;
  o = options();
  o.url = "sftp://127.0.0.1:" + std::to_string(freePort()) + server_.remote() + "/";
  r = sftp::upload(o, "extract.p7m", "bytes");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("could not connect"), std::string::npos) << r.error;
  for (const std::string& url : {server_.url() + "x", std::string("https://127.0.0.1/x/"), std::string("sftp://user@127.0.0.1/x/")}) {
    o.url = url;
    r = sftp::upload(o, "extract.p7m", "bytes");
    EXPECT_FALSE(r.ok) << url;
    EXPECT_NE(r.error.find("refused: the folder URL"), std::string::npos) << r.error;
  }
  EXPECT_TRUE(remoteEmpty());
}

TEST_F(SftpUploadTest, SaysPermissionDenied) {
  sftp::Options o = options();
  if (::geteuid() == 0) {
    // Root ignores file modes: the test logs in as nobody, to whom the folder (root's, 0755) is
    // read-only; sshd reads authorized_keys as that user.
    if (!::getpwnam("nobody")) GTEST_SKIP() << "no user 'nobody' to log in as";
    o.user = "nobody";
    fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                                     fs::perms::others_exec);
  } else {
    fs::permissions(server_.remote(), fs::perms::owner_read | fs::perms::owner_exec);
  }
  sftp::Outcome r = sftp::upload(o, "extract.p7m", "bytes");
  fs::permissions(server_.remote(), fs::perms::owner_all);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("while writing 'extract.p7m.part': permission denied"), std::string::npos) << r.error;
  EXPECT_TRUE(remoteEmpty());
}

TEST_F(SftpUploadTest, SaysWhereTheServerStoppedStoring) {
  server_.kill();
  std::string error;
  ASSERT_TRUE(server_.start(error, 100000)) << error;
  const std::string bytes = randomBytes(1u << 20, 7);
  sftp::Outcome r = sftp::upload(options(), "extract.p7m", bytes);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("the server stopped storing it at byte 100000 (a full disk or a quota?)"), std::string::npos) << r.error;
  EXPECT_FALSE(fs::exists(remote("extract.p7m")));
  EXPECT_EQ(fileSize(remote("extract.p7m.part")), 100000);
  // Once there is room again, the upload resumes there.
  server_.kill();
  ASSERT_TRUE(server_.start(error)) << error;
  r = sftp::upload(options(), "extract.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, 100000);
  EXPECT_TRUE(readFile(remote("extract.p7m")) == bytes);
}

TEST_F(SftpUploadTest, ResumesAnUploadCutByTheServersDeath) {
  const std::string bytes = randomBytes(16u << 20, 2);
  const auto total = static_cast<std::int64_t>(bytes.size());
  const std::string part = remote("extract.p7m.part");
  sftp::Options slow = options();
  slow.maxBytesPerSecond = 2 << 20;
  sftp::Outcome cut;
  std::atomic<bool> done{false};
  std::thread uploader([&] {
    cut = sftp::upload(slow, "extract.p7m", bytes);
    done = true;
  });
  auto until = std::chrono::steady_clock::now() + 20s;
  while (!done && fileSize(part) <= (3 << 20) && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
  const std::int64_t seen = fileSize(part);
  server_.kill();
  uploader.join();
  ASSERT_GT(seen, 3 << 20);
  EXPECT_FALSE(cut.ok);
  EXPECT_NE(cut.error.find("interrupted at byte"), std::string::npos) << cut.error;
  EXPECT_NE(cut.error.find("the connection to the server was lost"), std::string::npos) << cut.error;
  EXPECT_FALSE(fs::exists(remote("extract.p7m")));
  const std::int64_t kept = fileSize(part);
  EXPECT_GE(kept, seen);
  EXPECT_LT(kept, total);

  std::string error;
  ASSERT_TRUE(server_.start(error)) << error;  // same port, same keys
  sftp::Options o = options();
  o.hostKeySha256 = server_.fingerprint().substr(7);
  sftp::Outcome r = sftp::upload(o, "extract.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, kept);
  EXPECT_EQ(r.bytesSent, total - kept);
  EXPECT_LT(r.bytesSent, total);
  EXPECT_TRUE(readFile(remote("extract.p7m")) == bytes);
  EXPECT_FALSE(fs::exists(part));
}

TEST_F(SftpUploadTest, StartsOverAPartLeftByOtherBytes) {
  const std::string bytes = randomBytes(1u << 20, 3);
  // Shorter, from other bytes (an earlier package of the same name): its end differs.
  std::ofstream(remote("extract.p7m.part"), std::ios::binary) << randomBytes(300000, 4);
  sftp::Outcome r = sftp::upload(options(), "extract.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, 0);
  EXPECT_EQ(r.bytesSent, static_cast<std::int64_t>(bytes.size()));
  EXPECT_TRUE(readFile(remote("extract.p7m")) == bytes);
  // Longer than the bytes.
  std::ofstream(remote("other.p7m.part"), std::ios::binary) << bytes << "more";
  r = sftp::upload(options(), "other.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, 0);
  EXPECT_TRUE(readFile(remote("other.p7m")) == bytes);
  // A true prefix is resumed, and a complete one only renamed.
  std::ofstream(remote("third.p7m.part"), std::ios::binary) << bytes.substr(0, 400000);
  r = sftp::upload(options(), "third.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, 400000);
  EXPECT_EQ(r.bytesSent, static_cast<std::int64_t>(bytes.size()) - 400000);
  EXPECT_TRUE(readFile(remote("third.p7m")) == bytes);
  std::ofstream(remote("fourth.p7m.part"), std::ios::binary) << bytes;
  r = sftp::upload(options(), "fourth.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.resumedFrom, static_cast<std::int64_t>(bytes.size()));
  EXPECT_EQ(r.bytesSent, 0);
  EXPECT_TRUE(readFile(remote("fourth.p7m")) == bytes);
  for (const char* name : {"extract.p7m.part", "other.p7m.part", "third.p7m.part", "fourth.p7m.part"}) EXPECT_FALSE(fs::exists(remote(name))) << name;
}

TEST_F(SftpUploadTest, AnUploadAlreadyDeliveredIsNotSentAgain) {
  sftp::Options o = options();
  o.publicKey.clear();  // derived from the private key
  const std::string bytes = randomBytes(200000, 5);
  sftp::Outcome r = sftp::upload(o, "extract.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  ASSERT_FALSE(r.alreadyDelivered);
  r = sftp::upload(o, "extract.p7m", bytes);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.alreadyDelivered);
  EXPECT_EQ(r.bytesSent, 0);
  EXPECT_FALSE(fs::exists(remote("extract.p7m.part")));
  // Other bytes under the same name are refused, and the delivered file is left as it was.
  r = sftp::upload(o, "extract.p7m", randomBytes(200000, 6));
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("already there with other bytes of the same size"), std::string::npos) << r.error;
  r = sftp::upload(o, "extract.p7m", "short");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("already there with 200000 bytes instead of 5"), std::string::npos) << r.error;
  EXPECT_TRUE(readFile(remote("extract.p7m")) == bytes);
  EXPECT_FALSE(fs::exists(remote("extract.p7m.part")));
}

}  // namespace
}  // namespace passerelle::testing
