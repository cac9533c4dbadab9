// Resumable file upload over SFTP (libcurl with libssh2), for files that must reach a partner whole:
// the bytes go to `<name>.part` in the partner's folder, appended to what an interrupted earlier
// attempt left there, and only a complete `.part` is renamed to `<name>`, so the partner never sees a
// half-written file under its final name. Knows nothing of what the bytes are.
// The server is always verified (a SHA-256 host key fingerprint or a known_hosts file) and the
// client logs in with a key pair only, never a password.
// Thread-safety: upload() has no shared state; several uploads may run at once.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace passerelle::sftp {

struct Options {
  // The folder the file goes to, ending with '/': sftp://host[:port]/absolute/folder/, or
  // sftp://host[:port]/~/folder/ for a folder relative to the user's home. The folder must exist.
  // Its path may not hold '"', '\\' or control characters.
  std::string url;
  std::string user;
  // The client's key pair, OpenSSH or PEM files; there is no passphrase option, so the private key
  // must not be protected by one. An empty publicKey is derived from the private key. Public-key
  // authentication only.
  std::string privateKey;
  std::string publicKey;
  // The server's host key: its SHA-256 fingerprint in base64 as `ssh-keygen -lf` prints it (with or
  // without the "SHA256:" prefix, with or without '=' padding), or a known_hosts file holding an
  // entry for the host (as "[host]:port" when the port is not 22), or both. One is required.
  std::string hostKeySha256;
  std::string knownHosts;
  // Limits for each of the few SFTP requests an upload makes (connect, and the whole request).
  long connectTimeoutMs = 10000;
  long timeoutMs = 30 * 60 * 1000;
  std::int64_t maxBytesPerSecond = 0;  // upload speed limit; 0: unlimited
};

struct Outcome {
  bool ok = false;
  // When not ok: one sentence saying which step failed (configuration, connection, host key,
  // authentication, permission, disk full, interruption after N bytes...) with libcurl's detail.
  std::string error;
  std::int64_t resumedFrom = 0;   // bytes of an earlier `.part` kept and appended to
  std::int64_t bytesSent = 0;     // bytes sent by this call
  bool alreadyDelivered = false;  // the final file was already there with these bytes: nothing sent
  std::string remotePath;         // the final file's path on the server (relative to the home folder
                                  // for a /~/ URL), set once the options and name are accepted
};

// Whether `name` may name the uploaded file (false with `why`): not empty, at most 250 bytes, not "."
// or "..", no '/', '\\', '"' or control character.
bool validName(std::string_view name, std::string& why);

// Uploads `bytes` as <folder>/<name>, in these steps, over one connection:
//   1. if <name> already exists: ok without sending anything (alreadyDelivered) when it has the size
//      of `bytes` and ends with the same bytes; otherwise it fails, and that file is left untouched;
//   2. if <name>.part exists, is not larger than `bytes` and its last bytes (up to 64 KiB) are the
//      same as `bytes` at that offset, the rest is appended to it (resumedFrom); otherwise it is
//      overwritten from the start;
//   3. the size of <name>.part is checked against `bytes`, then it is renamed to <name> (SFTP's
//      rename fails when <name> exists, so a file that appeared meanwhile is not overwritten) and
//      the size of <name> checked.
// Reading the server's files back (sizes, the last bytes) needs read permission on them.
// A failed upload leaves <name>.part for the next attempt, which resumes it when called with the
// same bytes: the caller keeps the bytes (not, for instance, a new encryption of the same content)
// until an upload succeeds.
Outcome upload(const Options& options, const std::string& name, const std::string& bytes);

}  // namespace passerelle::sftp
