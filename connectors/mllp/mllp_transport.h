// MLLP over TCP, optionally TLS: a listener that hands each framed message to a handler and sends
// back what it answers, and a sender that delivers one message at a time and waits for the answer.
// One connection per socket; messages on a connection are handled in order. Knows no HL7 meaning:
// the handler decides what to answer. Thread-safe as documented per class.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace passerelle::mllp {

struct TlsSettings {
  std::string certificate;  // PEM: this end's certificate (a sender's client certificate; optional there)
  std::string privateKey;   // PEM
  std::string caFile;       // PEM: the authorities trusted for the other end's certificate
  bool requirePeerCertificate = false;  // listener: refuse clients without a valid certificate
  std::string serverName;   // sender: the name expected in the listener's certificate (empty: the host)
};

// Who is on the other end of a listener's connection.
struct Peer {
  std::string address;                 // ip:port
  std::string certificateSubject;      // the verified client certificate's subject ("" without one)
  std::string certificateFingerprint;  // its SHA-256, lower-case hex
};

struct ListenerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: pick a free one
  std::size_t maxFrameBytes = 1 << 20;
  int idleTimeoutSeconds = 60;  // a connection silent that long is closed
  int maxConnections = 32;
  std::optional<TlsSettings> tls;
};

class Listener {
 public:
  // Called on the connection's thread for each complete message. Returns the answer to frame and
  // send back, or nothing to close the connection without one.
  using Handler = std::function<std::optional<std::string>(const Peer&, std::string_view message)>;
  // A line worth logging: a connection's framing problem, an idle or torn connection, a TLS failure.
  using Report = std::function<void(const Peer&, const std::string& event, const std::string& detail)>;

  // Listens, or returns nullptr with `error` set.
  static std::unique_ptr<Listener> start(const ListenerOptions& options, Handler handler, Report report, std::string& error);
  ~Listener();
  int port() const;
  // Stops accepting, closes the open connections (a message being handled finishes first).
  void stop();

  struct Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct SenderOptions {
  std::string host;
  int port = 0;
  int connectTimeoutMs = 5000;
  int answerTimeoutMs = 30000;  // how long to wait for the acknowledgement
  std::size_t maxFrameBytes = 1 << 20;
  std::optional<TlsSettings> tls;
};

// Sends to one peer over one connection, opened when needed and kept open. Not thread-safe: one
// sender per worker.
class Sender {
 public:
  explicit Sender(SenderOptions options);
  ~Sender();
  struct Outcome {
    bool answered = false;  // an answer came back in time
    std::string answer;     // the message answered (unframed)
    std::string error;      // why not (connection refused, timeout, TLS, reset...)
  };
  // Sends `message` and waits for one framed answer. Any failure closes the connection, so the
  // next call starts on a fresh one.
  Outcome exchange(std::string_view message);
  void close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::mllp
