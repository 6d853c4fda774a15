// Prometheus metrics for a running sync node: `tandem serve --metrics HOST:PORT` serves
// the text exposition format at http://HOST:PORT/metrics (prometheus-cpp, civetweb).
// Every scrape reads the node's snapshot and the replica as they are then; nothing is
// counted twice. Names and meanings are in docs/metrics.md.
#pragma once

#include <memory>
#include <string>

#include "tandem/device/device.h"
#include "tandem/net/node.h"

namespace tandem::metrics {

class Server {
 public:
  // Listens on HOST:PORT (port 0: any free port). The device and the node must outlive
  // the server. kIo if the address cannot be bound, kInvalidArgument if malformed.
  static Result<std::unique_ptr<Server>> Start(const std::string& address, device::Device& device,
                                               net::Node& node);
  ~Server();
  // HOST:PORT as bound.
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// The families a scrape returns, as exposition text (for tests and `tandem status`).
std::string Render(device::Device& device, net::Node& node);

}  // namespace tandem::metrics
