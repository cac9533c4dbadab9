// The gateway process minus main(): opens the store, builds the FHIR service, generates the
// development certificate when HTTPS has none, starts the listeners. Used by `passerelle serve`
// and by integration tests, which start it in-process on port 0.
#pragma once

#include <memory>

#include "gateway/common/status.h"
#include "gateway/config/config.h"

namespace passerelle::app {

class Gateway {
 public:
  static Result<std::unique_ptr<Gateway>> start(const config::Config& config);
  ~Gateway();
  int httpPort() const;
  int httpsPort() const;
  int mllpPort() const;  // 0 without an MLLP listener
  // Drains in-flight requests (up to server.drain_seconds), then closes the store.
  void stop();

 struct State;

 private:
  Gateway();
  std::unique_ptr<State> s_;
};

// Applies the configuration's log level and format.
void configureLogging(const config::Config& config);

}  // namespace passerelle::app
