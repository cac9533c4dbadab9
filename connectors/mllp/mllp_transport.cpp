// MLLP listener and sender on Poco::Net (TCPServer, StreamSocket; SecureStreamSocket for TLS).
#include "connectors/mllp/mllp_transport.h"

#include <Poco/Net/Context.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnection.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/Net/X509Certificate.h>
#include <Poco/ThreadPool.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <chrono>
#include <mutex>
#include <set>
#include <vector>

#include "connectors/mllp/mllp_framer.h"

namespace passerelle::mllp {
namespace {

constexpr const char* kCiphers = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!eNULL:!MD5:!RC4:!3DES";

std::once_flag sslOnce;
void initSsl() {
  std::call_once(sslOnce, [] { Poco::Net::initializeSSL(); });
}

Poco::Net::Context::Ptr tlsContext(const TlsSettings& t, bool server) {
  initSsl();
  Poco::Net::Context::VerificationMode mode =
      server ? (t.caFile.empty() ? Poco::Net::Context::VERIFY_NONE
                                 : t.requirePeerCertificate ? Poco::Net::Context::VERIFY_STRICT : Poco::Net::Context::VERIFY_RELAXED)
             : Poco::Net::Context::VERIFY_STRICT;
  Poco::Net::Context::Ptr ctx = new Poco::Net::Context(server ? Poco::Net::Context::TLS_SERVER_USE : Poco::Net::Context::TLS_CLIENT_USE,
                                                       t.privateKey, t.certificate, t.caFile, mode, 9, false, kCiphers);
  ctx->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
  return ctx;
}

std::string fingerprint(const Poco::Net::X509Certificate& cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  std::string out;
  if (X509_digest(const_cast<X509*>(cert.certificate()), EVP_sha256(), md, &n) != 1) return out;
  static const char* hex = "0123456789abcdef";
  for (unsigned int i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

bool sendAll(Poco::Net::StreamSocket& s, const std::string& bytes) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    int n = s.sendBytes(bytes.data() + at, static_cast<int>(bytes.size() - at));
    if (n <= 0) return false;
    at += static_cast<std::size_t>(n);
  }
  return true;
}

const char* problemName(MllpDecoder::Problem p) {
  switch (p) {
    case MllpDecoder::Problem::kBytesOutsideAFrame: return "bytes-outside-a-frame";
    case MllpDecoder::Problem::kFrameTooLarge: return "frame-too-large";
    case MllpDecoder::Problem::kStartInsideAFrame: return "start-inside-a-frame";
    case MllpDecoder::Problem::kEndWithoutReturn: return "end-without-return";
  }
  return "framing";
}

}  // namespace

struct Listener::Impl {
  ListenerOptions options;
  Handler handler;
  Report report;
  bool secure = false;
  std::unique_ptr<Poco::ThreadPool> pool;
  std::unique_ptr<Poco::Net::TCPServer> server;
  int port = 0;
  std::mutex mutex;
  std::set<int> open;  // the sockets of live connections
  bool stopping = false;

  void note(const Peer& p, const std::string& event, const std::string& detail) {
    if (report) report(p, event, detail);
  }
};

namespace {

class Connection : public Poco::Net::TCPServerConnection {
 public:
  Connection(const Poco::Net::StreamSocket& s, Listener::Impl& l) : TCPServerConnection(s), l_(l) {}

  void run() override {
    Peer peer;
    try {
      peer.address = socket().peerAddress().toString();
    } catch (const Poco::Exception&) {
      return;
    }
    if (l_.secure) {
      try {
        Poco::Net::SecureStreamSocket ss(socket());
        ss.completeHandshake();
        if (ss.havePeerCertificate()) {
          Poco::Net::X509Certificate cert = ss.peerCertificate();
          peer.certificateSubject = cert.subjectName();
          peer.certificateFingerprint = fingerprint(cert);
        }
      } catch (const Poco::Exception& ex) {
        l_.note(peer, "tls-failed", ex.displayText());
        return;
      }
    }
    int fd = socket().impl()->sockfd();
    {
      std::lock_guard<std::mutex> lock(l_.mutex);
      if (l_.stopping) return;
      l_.open.insert(fd);
    }
    serve(peer);
    std::lock_guard<std::mutex> lock(l_.mutex);
    l_.open.erase(fd);
  }

 private:
  void serve(const Peer& peer) {
    std::vector<std::string> frames;
    bool tooLarge = false;
    MllpDecoder decoder(l_.options.maxFrameBytes,
                        {[&](std::string_view f) { frames.emplace_back(f); },
                         [&](MllpDecoder::Problem p, std::size_t n) {
                           if (p == MllpDecoder::Problem::kFrameTooLarge) tooLarge = true;
                           l_.note(peer, problemName(p), std::to_string(n) + " bytes");
                         }});
    socket().setReceiveTimeout(Poco::Timespan(std::max(1, l_.options.idleTimeoutSeconds), 0));
    std::vector<char> buf(64 * 1024);
    for (;;) {
      int n = 0;
      try {
        n = socket().receiveBytes(buf.data(), static_cast<int>(buf.size()));
      } catch (const Poco::TimeoutException&) {
        l_.note(peer, "idle-timeout", decoder.inFrame() ? "closed with an unfinished frame of " + std::to_string(decoder.pending()) + " bytes"
                                                        : "closed after " + std::to_string(l_.options.idleTimeoutSeconds) + " s without data");
        return;
      } catch (const Poco::Exception& ex) {
        l_.note(peer, "connection-error", ex.displayText() + (decoder.inFrame() ? " (inside a frame: dropped)" : ""));
        return;
      }
      if (n <= 0) {
        if (decoder.inFrame()) l_.note(peer, "closed-inside-a-frame", std::to_string(decoder.pending()) + " bytes dropped");
        return;
      }
      decoder.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
      for (auto& f : frames) {
        std::optional<std::string> answer = l_.handler(peer, f);
        if (!answer) return;
        try {
          if (!sendAll(socket(), frame(*answer))) return;
        } catch (const Poco::Exception& ex) {
          l_.note(peer, "connection-error", "while answering: " + ex.displayText());
          return;
        }
      }
      frames.clear();
      if (tooLarge) {
        l_.note(peer, "closed", "a frame over " + std::to_string(l_.options.maxFrameBytes) + " bytes");
        return;
      }
    }
  }

  Listener::Impl& l_;
};

class Factory : public Poco::Net::TCPServerConnectionFactory {
 public:
  explicit Factory(Listener::Impl& l) : l_(l) {}
  Poco::Net::TCPServerConnection* createConnection(const Poco::Net::StreamSocket& s) override { return new Connection(s, l_); }

 private:
  Listener::Impl& l_;
};

}  // namespace

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Listener> Listener::start(const ListenerOptions& options, Handler handler, Report report, std::string& error) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  impl->report = std::move(report);
  try {
    Poco::Net::SocketAddress at(options.host, static_cast<Poco::UInt16>(options.port));
    std::unique_ptr<Poco::Net::ServerSocket> sock;
    if (options.tls) {
      impl->secure = true;
      sock = std::make_unique<Poco::Net::SecureServerSocket>(at, 64, tlsContext(*options.tls, true));
    } else {
      sock = std::make_unique<Poco::Net::ServerSocket>(at, 64);
    }
    impl->port = sock->address().port();
    int threads = std::max(1, options.maxConnections);
    impl->pool = std::make_unique<Poco::ThreadPool>(1, threads + 1, 60);
    auto* params = new Poco::Net::TCPServerParams;
    params->setMaxThreads(threads);
    params->setMaxQueued(threads);
    impl->server = std::make_unique<Poco::Net::TCPServer>(new Factory(*impl), *impl->pool, *sock, params);
    impl->server->start();
  } catch (const Poco::Exception& ex) {
    error = "cannot listen on " + options.host + ":" + std::to_string(options.port) + ": " + ex.displayText();
    return nullptr;
  }
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

Listener::~Listener() { stop(); }

int Listener::port() const { return impl_->port; }

void Listener::stop() {
  if (!impl_ || !impl_->server) return;
  impl_->server->stop();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
    for (int fd : impl_->open) ::shutdown(fd, SHUT_RDWR);
  }
  impl_->pool->joinAll();
  impl_->server.reset();
}

struct Sender::Impl {
  SenderOptions o;
  Poco::Net::Context::Ptr ctx;
  std::unique_ptr<Poco::Net::StreamSocket> sock;
  std::vector<char> buf = std::vector<char>(64 * 1024);

  std::string connect() {
    try {
      Poco::Net::SocketAddress at(o.host, static_cast<Poco::UInt16>(o.port));
      Poco::Timespan timeout(static_cast<long>(o.connectTimeoutMs) * 1000);
      if (o.tls) {
        if (!ctx) ctx = tlsContext(*o.tls, false);
        auto s = std::make_unique<Poco::Net::SecureStreamSocket>(ctx);
        s->setPeerHostName(o.tls->serverName.empty() ? o.host : o.tls->serverName);
        s->connect(at, timeout);
        s->completeHandshake();
        sock = std::move(s);
      } else {
        auto s = std::make_unique<Poco::Net::StreamSocket>();
        s->connect(at, timeout);
        sock = std::move(s);
      }
      sock->setNoDelay(true);
    } catch (const Poco::Exception& ex) {
      sock.reset();
      return "cannot connect to " + o.host + ":" + std::to_string(o.port) + ": " + ex.displayText();
    }
    return {};
  }
};

Sender::Sender(SenderOptions options) : impl_(std::make_unique<Impl>()) { impl_->o = std::move(options); }
Sender::~Sender() { close(); }

void Sender::close() {
  if (!impl_->sock) return;
  try {
    impl_->sock->close();
  } catch (const Poco::Exception&) {
  }
  impl_->sock.reset();
}

Sender::Outcome Sender::exchange(std::string_view message) {
  Outcome out;
  Impl& m = *impl_;
  if (!m.sock) {
    out.error = m.connect();
    if (!out.error.empty()) return out;
  }
  std::optional<std::string> answer;
  std::string problem;
  MllpDecoder decoder(m.o.maxFrameBytes, {[&](std::string_view f) {
                                            if (!answer) answer.emplace(f);
                                          },
                                          [&](MllpDecoder::Problem p, std::size_t) { problem = problemName(p); }});
  try {
    if (!sendAll(*m.sock, frame(message))) {
      close();
      out.error = "the connection closed while sending";
      return out;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(m.o.answerTimeoutMs);
    while (!answer) {
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) throw Poco::TimeoutException();
      m.sock->setReceiveTimeout(Poco::Timespan(left));
      int n = m.sock->receiveBytes(m.buf.data(), static_cast<int>(m.buf.size()));
      if (n <= 0) {
        close();
        out.error = "the peer closed the connection without answering" + (problem.empty() ? std::string() : " (" + problem + ")");
        return out;
      }
      decoder.feed(std::string_view(m.buf.data(), static_cast<std::size_t>(n)));
    }
  } catch (const Poco::TimeoutException&) {
    close();
    out.error = "no answer within " + std::to_string(m.o.answerTimeoutMs) + " ms";
    return out;
  } catch (const Poco::Exception& ex) {
    close();
    out.error = ex.displayText();
    return out;
  }
  out.answered = true;
  out.answer = std::move(*answer);
  return out;
}

}  // namespace passerelle::mllp
