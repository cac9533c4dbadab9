// The HTTP/HTTPS front: TLS versions, body limits, health and metrics, concurrent clients.
#include <gtest/gtest.h>

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/StreamSocket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

// Tries a TLS handshake limited to [minVersion, maxVersion]; returns the negotiated version or 0.
int handshake(int port, int minVersion, int maxVersion) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);  // let the client offer old versions: the server must refuse
  SSL_CTX_set_min_proto_version(ctx, minVersion);
  SSL_CTX_set_max_proto_version(ctx, maxVersion);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  int version = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) version = SSL_version(ssl);
    SSL_free(ssl);
  }
  close(fd);
  SSL_CTX_free(ctx);
  return version;
}

}  // namespace

TEST(HttpFrontTest, ServesFhirOverHttpsWithTheGeneratedCertificate) {
  TestGateway gw({}, true);
  ASSERT_GT(gw.httpsPort(), 0);
  HttpClient client(gw.httpsPort(), true, gw.dataDir() + "/tls/dev-server.crt");
  auto r = client.send("POST", "/fhir/Patient", R"({"resourceType":"Patient","active":true})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.header("Location").rfind("https://127.0.0.1:" + std::to_string(gw.httpsPort()) + "/fhir/Patient/", 0), 0u);
  std::string id = r.json()["id"];
  EXPECT_EQ(client.get("/fhir/Patient/" + id).status, 200);
}

TEST(HttpFrontTest, RefusesTlsBelow12) {
  TestGateway gw({}, true);
  EXPECT_EQ(handshake(gw.httpsPort(), TLS1_VERSION, TLS1_1_VERSION), 0);
  EXPECT_EQ(handshake(gw.httpsPort(), TLS1_2_VERSION, TLS1_2_VERSION), TLS1_2_VERSION);
  EXPECT_EQ(handshake(gw.httpsPort(), TLS1_3_VERSION, TLS1_3_VERSION), TLS1_3_VERSION);
}

TEST(HttpFrontTest, BodyOverTheLimitIs413AndTheServerGoesOn) {
  TestGateway gw({"limits.body_bytes=2048"});
  HttpClient client(gw.httpPort());
  std::string big = R"({"resourceType":"Patient","text":{"status":"generated","div":")" + std::string(4000, 'a') + "\"}}";
  auto r = client.send("POST", "/fhir/Patient", big);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.json()["issue"][0]["code"], "too-costly");
  // Chunked, without a Content-Length.
  Poco::Net::HTTPClientSession s("127.0.0.1", static_cast<Poco::UInt16>(gw.httpPort()));
  Poco::Net::HTTPRequest req("POST", "/fhir/Patient", Poco::Net::HTTPMessage::HTTP_1_1);
  req.setChunkedTransferEncoding(true);
  req.setContentType("application/fhir+json");
  s.sendRequest(req) << big;
  Poco::Net::HTTPResponse resp;
  s.receiveResponse(resp);
  EXPECT_EQ(resp.getStatus(), 413);
  HttpClient again(gw.httpPort());
  EXPECT_EQ(again.get("/healthz").status, 200);
}

TEST(HttpFrontTest, HealthAndMetrics) {
  // No daily sweep: its claim is a write of its own, at a moment of its own, in the units counted.
  TestGateway gw({"network.sweep_interval_seconds=0"});
  HttpClient client(gw.httpPort());
  auto units = [](const std::string& body) {
    const std::string name = "\npasserelle_store_units_total ";
    auto at = body.find(name);
    return at == std::string::npos ? -1L : std::stol(body.substr(at + name.size()));
  };
  // Start-up may have written (the search definitions' fingerprint): count from here.
  long before = units(client.get("/metrics").body);
  ASSERT_GE(before, 0);
  EXPECT_EQ(client.get("/healthz").status, 200);
  client.send("POST", "/fhir/Patient", R"({"resourceType":"Patient"})");
  client.get("/fhir/Patient/none");
  auto m = client.get("/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("passerelle_http_requests_total 4"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("passerelle_http_responses_total{class=\"4xx\"} 1"), std::string::npos);
  EXPECT_EQ(units(m.body), before + 1);
  auto at = m.body.find("\npasserelle_store_wal_frames_total ");
  ASSERT_NE(at, std::string::npos);
  if (!testStorageIsPostgresql()) EXPECT_GT(std::stol(m.body.substr(at + 35)), 0);  // the create wrote pages to SQLite's log
  auto nf = client.get("/elsewhere");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.json()["resourceType"], "OperationOutcome");
}

TEST(HttpFrontTest, GarbageOnTheSocketDoesNotStopTheServer) {
  TestGateway gw;
  for (const std::string& junk : {std::string("\x16\x03\x01\x00\x05hello"), std::string("GET / HTTP/9.9\r\n\r\n"),
                                 std::string(100000, 'A'), std::string("POST /fhir/Patient HTTP/1.1\r\nContent-Length: -5\r\n\r\n")}) {
    Poco::Net::StreamSocket sock(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(gw.httpPort())));
    try {
      sock.sendBytes(junk.data(), static_cast<int>(junk.size()));
      char buf[256];
      sock.setReceiveTimeout(Poco::Timespan(2, 0));
      sock.receiveBytes(buf, sizeof buf);
    } catch (...) {
    }
  }
  HttpClient client(gw.httpPort());
  EXPECT_EQ(client.get("/healthz").status, 200);
}

TEST(HttpFrontTest, ConcurrentWritersAllLand) {
  TestGateway gw;
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      HttpClient c(gw.httpPort());
      for (int i = 0; i < 25; ++i)
        if (c.send("POST", "/fhir/Patient", R"({"resourceType":"Patient","active":true})").status == 201) ++created;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 200);
  HttpClient c(gw.httpPort());
  EXPECT_EQ(c.get("/fhir/Patient?_summary=count").json()["total"], 200);
}
