// Baseline for the FHIR REST benchmarks: the cheapest possible Poco::Net::HTTPServer, with the same
// server parameters as a production front end, answering every request 200 with a fixed FHIR Patient.
// Whatever Passerelle's read path costs on top of this is the cost of routing, storage and serialization.
//
//   passerelle_bench_trivial [PORT]     (0 or nothing = a free port)
//
// Prints "listening http=127.0.0.1:PORT" on stdout once listening; exits 0 on SIGTERM or SIGINT.
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

namespace {

// About 500 bytes, the size of a small but realistic Patient.
constexpr std::string_view kPatient =
    R"({"resourceType":"Patient","id":"bench-trivial-0001","identifier":[{"use":"official",)"
    R"("system":"urn:oid:1.2.250.1.213.1.4.8","value":"1850375123456"}],"active":true,)"
    R"("name":[{"use":"official","family":"Martin","given":["Claire","Sophie"]}],)"
    R"("telecom":[{"system":"phone","value":"+33 1 23 45 67 89","use":"mobile"},)"
    R"({"system":"email","value":"claire.martin@example.org"}],"gender":"female",)"
    R"("birthDate":"1985-03-07","address":[{"use":"home","line":["12 rue des Lilas"],)"
    R"("city":"Melun","postalCode":"77000","country":"FR"}]})";

class FixedPatientHandler final : public Poco::Net::HTTPRequestHandler {
 public:
  void handleRequest(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response) override {
    // Drain any request body so the connection stays usable for the next keep-alive request.
    auto& body = request.stream();
    char sink[4096];
    while (body.read(sink, sizeof sink) || body.gcount() > 0) {
    }
    response.setStatus(Poco::Net::HTTPResponse::HTTP_OK);
    response.setContentType("application/fhir+json");
    response.sendBuffer(kPatient.data(), kPatient.size());
  }
};

class FixedPatientFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  Poco::Net::HTTPRequestHandler* createRequestHandler(const Poco::Net::HTTPServerRequest&) override {
    return new FixedPatientHandler;
  }
};

int parse_port(const char* text) {
  if (text == nullptr) return 0;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < 0 || value > 65535) return -1;
  return static_cast<int>(value);
}

}  // namespace

int main(int argc, char** argv) {
  const int port = parse_port(argc > 1 ? argv[1] : nullptr);
  if (port < 0) {
    std::cerr << "usage: " << argv[0] << " [PORT]\n";
    return 2;
  }

  // Block the termination signals before any thread starts, so every thread inherits the mask
  // and the main thread alone receives them through sigwait.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
    std::cerr << "pthread_sigmask failed\n";
    return 1;
  }

  try {
    Poco::ThreadPool pool("bench-http", 2, 128);
    auto* params = new Poco::Net::HTTPServerParams;  // reference-counted, owned by the server
    params->setKeepAlive(true);
    params->setMaxThreads(64);
    params->setMaxQueued(256);
    params->setMaxKeepAliveRequests(0);  // 0 = unlimited requests per connection

    Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port)));
    Poco::Net::HTTPServer server(new FixedPatientFactory, pool, socket, params);
    server.start();

    std::printf("listening http=127.0.0.1:%u\n", static_cast<unsigned>(socket.address().port()));
    std::fflush(stdout);

    int received = 0;
    sigwait(&signals, &received);

    server.stopAll(true);
    pool.joinAll();
  } catch (const Poco::Exception& e) {
    std::cerr << "trivial server: " << e.displayText() << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "trivial server: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
