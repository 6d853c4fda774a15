#include "tandem/metrics/metrics.h"

#include <netdb.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "tandem/net/group.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void Add(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

// A peer's labels: its device (or its address before the handshake said who it is), the
// direction, and for connections we dial, the address (a device may be dialled at two).
std::vector<ClientMetric::Label> PeerLabels(const net::PeerSnapshot& p) {
  std::vector<ClientMetric::Label> l{{"device", p.device}, {"direction", p.direction}};
  if (p.direction != "incoming" || p.device.empty()) l.push_back({"address", p.address});
  return l;
}

std::vector<MetricFamily> Collect(device::Device& device, net::Node& node) {
  const net::NodeSnapshot s = node.Snapshot();
  const uint64_t now = storage::SystemClockMs();
  std::vector<MetricFamily> out;

  auto up = Family("tandem_node_running", "1 while the sync node runs", MetricType::Gauge);
  Add(up, s.running ? 1 : 0);
  out.push_back(std::move(up));

  auto connected =
      Family("tandem_peers_connected", "Peers with an open connection", MetricType::Gauge);
  size_t n = 0;
  for (const auto& p : s.peers) n += p.connected ? 1 : 0;
  Add(connected, static_cast<double>(n));
  out.push_back(std::move(connected));

  auto pending =
      Family("tandem_peer_pending_changes",
             "Changes of ours the peer has not acknowledged (while connected)", MetricType::Gauge);
  auto since = Family("tandem_peer_seconds_since_caught_up",
                      "Seconds since the last session with the peer caught up", MetricType::Gauge);
  auto peer_up =
      Family("tandem_peer_connected", "1 while connected to the peer", MetricType::Gauge);
  auto bytes_in = Family("tandem_peer_received_bytes_total", "Bytes received from the peer",
                         MetricType::Counter);
  auto bytes_out =
      Family("tandem_peer_sent_bytes_total", "Bytes sent to the peer", MetricType::Counter);
  auto msgs_in =
      Family("tandem_peer_received_messages_total", "Sync messages received", MetricType::Counter);
  auto msgs_out =
      Family("tandem_peer_sent_messages_total", "Sync messages sent", MetricType::Counter);
  auto f_in = Family("tandem_peer_fields_received_total", "Field states applied from the peer",
                     MetricType::Counter);
  auto f_out =
      Family("tandem_peer_fields_sent_total", "Field states sent to the peer", MetricType::Counter);
  auto f_ref = Family("tandem_peer_fields_refused_total",
                      "Field states from the peer not applied (filtered, revoked, quarantined)",
                      MetricType::Counter);
  auto f_q = Family("tandem_peer_fields_quarantined_total",
                    "Field states from the peer held for breaking a schema", MetricType::Counter);
  auto b_in = Family("tandem_peer_blob_bytes_received_total",
                     "Blob chunk bytes fetched from the peer", MetricType::Counter);
  auto b_out = Family("tandem_peer_blob_bytes_sent_total", "Blob chunk bytes sent to the peer",
                      MetricType::Counter);
  auto errors = Family("tandem_peer_errors_total", "Connections to or from the peer that failed",
                       MetricType::Counter);
  for (const auto& p : s.peers) {
    const auto l = PeerLabels(p);
    if (p.pending_changes) Add(pending, static_cast<double>(*p.pending_changes), l);
    if (p.last_sync_ms)
      Add(since, p.last_sync_ms < now ? static_cast<double>(now - p.last_sync_ms) / 1000 : 0, l);
    Add(peer_up, p.connected ? 1 : 0, l);
    Add(bytes_in, static_cast<double>(p.bytes_in), l);
    Add(bytes_out, static_cast<double>(p.bytes_out), l);
    Add(msgs_in, static_cast<double>(p.messages_in), l);
    Add(msgs_out, static_cast<double>(p.messages_out), l);
    Add(f_in, static_cast<double>(p.fields_received), l);
    Add(f_out, static_cast<double>(p.fields_sent), l);
    Add(f_ref, static_cast<double>(p.fields_refused), l);
    Add(f_q, static_cast<double>(p.fields_quarantined), l);
    Add(b_in, static_cast<double>(p.blob_bytes_received), l);
    Add(b_out, static_cast<double>(p.blob_bytes_sent), l);
    Add(errors, static_cast<double>(p.errors), l);
  }
  for (auto* f : {&pending, &since, &peer_up, &bytes_in, &bytes_out, &msgs_in, &msgs_out, &f_in,
                  &f_out, &f_ref, &f_q, &b_in, &b_out, &errors})
    out.push_back(std::move(*f));

  auto refused = Family("tandem_connections_refused_total",
                        "Connections refused, by reason (busy, handshake, replay, revoked, "
                        "not_member, invite)",
                        MetricType::Counter);
  for (const char* reason : {"busy", "handshake", "replay", "revoked", "not_member", "invite"}) {
    auto it = s.refused_by_reason.find(reason);
    Add(refused, it == s.refused_by_reason.end() ? 0 : static_cast<double>(it->second),
        {{"reason", reason}});
  }
  out.push_back(std::move(refused));

  auto held = Family("tandem_quarantined_changes",
                     "Changes from peers held for breaking a schema (tandem quarantine)",
                     MetricType::Gauge);
  auto q = device.replica().Quarantined();
  if (q.ok()) Add(held, static_cast<double>(q->size()));
  out.push_back(std::move(held));

  auto size = Family("tandem_store_bytes", "Bytes the replica's data file takes on disk",
                     MetricType::Gauge);
  struct stat st;
  if (::stat((device.layout().dir + "/data.mdb").c_str(), &st) == 0)
    Add(size, static_cast<double>(st.st_blocks) * 512);
  out.push_back(std::move(size));

  if (auto* lmdb = dynamic_cast<storage::LmdbStore*>(&device.replica().store())) {
    const auto c = lmdb->CommitLatencies();
    auto commits = Family("tandem_commit_seconds",
                          "Time this process's commits took (durable ones include fsync)",
                          MetricType::Histogram);
    ClientMetric m;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < c.kBounds.size(); ++i) {
      cumulative += c.buckets[i];
      m.histogram.bucket.push_back({cumulative, c.kBounds[i]});
    }
    cumulative += c.buckets.back();
    m.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
    m.histogram.sample_count = c.count;
    m.histogram.sample_sum = c.sum_seconds;
    commits.metric.push_back(std::move(m));
    out.push_back(std::move(commits));
  }
  return out;
}

class NodeCollectable : public prometheus::Collectable {
 public:
  NodeCollectable(device::Device& d, net::Node& n) : device_(d), node_(n) {}
  std::vector<MetricFamily> Collect() const override { return metrics::Collect(device_, node_); }

 private:
  device::Device& device_;
  net::Node& node_;
};

}  // namespace

struct Server::Impl {
  std::shared_ptr<NodeCollectable> collectable;
  std::unique_ptr<prometheus::Exposer> exposer;
};

namespace {

// Why binding host:port fails, as the system says it ("" if it does not): the HTTP
// server's own message ("null context when constructing CivetServer") says nothing.
std::string BindError(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    return ::gai_strerror(rc);
  std::string why;
  const int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    why = std::strerror(errno);
  } else {
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return why;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const std::string& address, device::Device& device,
                                              net::Node& node) {
  std::string host;
  uint16_t port = 0;
  TANDEM_RETURN_IF_ERROR(net::ParseHostPort(address, &host, &port));
  auto impl = std::make_unique<Impl>();
  impl->collectable = std::make_shared<NodeCollectable>(device, node);
  try {
    // Scrapes are rare and each reads a snapshot, but a client that sends half a request
    // and waits holds a serving thread: a few threads, and a short wait for a request,
    // keep a scraper answered beside a few such clients (a request comes whole at once).
    impl->exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", address, "num_threads", "4", "request_timeout_ms", "3000"});
  } catch (const std::exception& e) {
    const std::string why = BindError(host, port);
    return Status::Io("metrics: cannot listen on " + address + ": " +
                      (why.empty() ? e.what() : why) +
                      (port != 0 ? " (choose another port with --metrics HOST:PORT, or 0)" : ""));
  }
  impl->exposer->RegisterCollectable(impl->collectable);
  const auto ports = impl->exposer->GetListeningPorts();
  const std::string bound =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
      std::to_string(ports.empty() ? port : static_cast<uint16_t>(ports.front()));
  return std::unique_ptr<Server>(new Server(std::move(impl), bound));
}

Server::Server(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}
Server::~Server() = default;

std::string Render(device::Device& device, net::Node& node) {
  return prometheus::TextSerializer().Serialize(Collect(device, node));
}

}  // namespace tandem::metrics
