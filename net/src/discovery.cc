#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>

#include "tandem/net/beacon.h"

namespace tandem::net {

// g++ 12 reports -Wmismatched-new-delete for the frame of the coroutine below (Asio's
// awaitable frames pair their own operator new and delete; a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// LAN discovery: a UDP multicast beacon every few seconds. The beacon is sealed with a
// key derived from the group key (crypto_secretbox), so strangers see random bytes;
// members learn a device's key and port, and the device with the smaller key dials.
awaitable<void> Core::Discovery() {
  if (listen_address_.empty()) {
    Log("--discover needs --listen: discovery is off", LogLevel::kWarn);
    co_return;
  }

  const uint16_t my_port =
      static_cast<uint16_t>(std::stoi(listen_address_.substr(listen_address_.rfind(':') + 1)));
  // A specific IPv4 listen address is announced; otherwise peers dial the beacon's source.
  std::array<uint8_t, 4> my_ip{};
  {
    boost::system::error_code ec;
    auto a = asio::ip::make_address(listen_address_.substr(0, listen_address_.rfind(':')), ec);
    if (!ec && a.is_v4() && !a.is_unspecified()) my_ip = a.to_v4().to_bytes();
  }
  auto sockp = std::make_shared<asio::ip::udp::socket>(io_);
  auto& sock = *sockp;
  auto group = asio::ip::make_address(kDiscoveryGroup);
  asio::ip::udp::endpoint group_ep(group, kDiscoveryPort);
  try {
    sock.open(asio::ip::udp::v4());
    sock.set_option(asio::ip::udp::socket::reuse_address(true));
    sock.bind(asio::ip::udp::endpoint(asio::ip::address_v4::any(), kDiscoveryPort));
    sock.set_option(asio::ip::multicast::join_group(group));
    sock.set_option(asio::ip::multicast::enable_loopback(true));
  } catch (const boost::system::system_error& e) {
    Log("discovery unavailable: " + e.code().message(), LogLevel::kWarn);
    co_return;
  }
  Log("discovery on " + std::string(kDiscoveryGroup) + ":" + std::to_string(kDiscoveryPort));
  // Sender.
  asio::co_spawn(
      io_,
      [this, sockp, group_ep, my_port, my_ip]() -> awaitable<void> {
        auto& out = *sockp;
        bool send_failed = false;
        asio::steady_timer t(io_);
        while (!stopping_) {
          Beacon b;
          b.public_key = self_.public_key;
          b.port = my_port;
          b.ipv4 = my_ip;
          const std::string pkt = SealBeacon(BeaconKey(group_key_), b);
          boost::system::error_code ec;
          co_await out.async_send_to(asio::buffer(pkt), group_ep,
                                     asio::redirect_error(use_awaitable, ec));
          // Said once: without a multicast route nobody will find this device.
          if (ec && !send_failed)
            Log("discovery: cannot send beacons: " + ec.message() +
                    " (no multicast route? give --peer instead)",
                LogLevel::kWarn);
          send_failed = bool(ec);
          t.expires_after(seconds(2));
          co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
        }
      },
      asio::detached);
  // Receiver.
  char buf[512];
  while (!stopping_) {
    asio::ip::udp::endpoint from;
    boost::system::error_code ec;
    size_t n = co_await sock.async_receive_from(asio::buffer(buf), from,
                                                asio::redirect_error(use_awaitable, ec));
    if (ec) break;
    // Sealed with the group key, or (from a member that has not heard of a rotation yet)
    // with one it replaced, for the grace period.
    std::optional<Beacon> beacon;
    bool stale = false;
    for (const auto& k : accepted_keys()) {
      beacon = OpenBeacon(BeaconKey(k), std::string_view(buf, n));
      if (beacon) break;
      stale = true;
    }
    if (!beacon) continue;  // another group's beacon, or noise
    const Key32& pk = beacon->public_key;
    if (pk == self_.public_key) continue;
    // The smaller key dials, so two members do not connect to each other twice; a member
    // with a retired key cannot read our beacons, so we dial it.
    if (!stale && std::memcmp(self_.public_key.data(), pk.data(), 32) > 0) continue;
    std::string device = DeviceId(pk);
    bool connected = false;
    for (const auto& c : conns_)
      if (c->peer_key() && *c->peer_key() == pk) connected = true;
    if (connected || discovered_.count(device) || discovered_.size() >= kMaxDiscoveredDials)
      continue;
    // At most one dial per device every few seconds, whatever the beacons say.
    auto last = last_discovered_dial_.find(device);
    if (last != last_discovered_dial_.end() && SteadyClock::now() - last->second < seconds(5))
      continue;
    last_discovered_dial_[device] = SteadyClock::now();
    if (last_discovered_dial_.size() > 1024) last_discovered_dial_.clear();
    const uint16_t port = beacon->port;
    const std::array<uint8_t, 4> ip = beacon->ipv4;
    std::string host = ip == std::array<uint8_t, 4>{} ? from.address().to_string()
                                                      : asio::ip::address_v4(ip).to_string();
    std::string address = host + ":" + std::to_string(port);
    Log("discovered " + device + " at " + address);
    discovered_.insert(device);
    // Its own row: a --peer with the same address keeps its own.
    const std::string row = "discovered:" + address;
    auto& st = peers_[row];
    st.address = address;
    st.direction = "outgoing (discovered)";
    ++dials_running_;
    asio::co_spawn(io_, DialDiscovered(address, device, row, &st), asio::detached);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace tandem::net
