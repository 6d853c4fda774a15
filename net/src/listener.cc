#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>

namespace tandem::net {

// True the first time this node sees this (authenticated) message 1; remembers the last
// kReplayMemory of them. Only messages that passed mac1 are remembered, so strangers
// cannot flush the memory; each recorded message replays at most once per
// kReplayMemory legitimate handshakes (and once per restart).
bool Core::FirstSeen(const std::string& m1) {
  std::string h(16, '\0');  // an unkeyed BLAKE2b-128 digest: 16 bytes per message
  crypto_generichash(reinterpret_cast<uint8_t*>(h.data()), h.size(),
                     reinterpret_cast<const uint8_t*>(m1.data()), m1.size(), nullptr, 0);
  if (!seen_first_.insert(h).second) return false;
  seen_order_.push_back(h);
  if (seen_order_.size() > kReplayMemory) {
    seen_first_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
  return true;
}

// An inbound connection leaves the handshake phase (registered or gone).
void Core::HandshakeEnded(const std::shared_ptr<Conn>& c) {
  if (c->initiator()) return;
  if (c->vouched_) {
    c->vouched_ = false;
    vouched_.erase(c->vouch_pos_);
    return;
  }
  if (!c->queued_) return;  // once per inbound connection
  unauthenticated_.erase(c->queue_pos_);
  c->queued_ = false;
  --handshaking_;
  auto it = handshaking_by_ip_.find(c->remote_ip());
  if (it != handshaking_by_ip_.end() && --it->second == 0) handshaking_by_ip_.erase(it);
}

void Core::Vouch(const std::shared_ptr<Conn>& c) {
  if (c->initiator() || !c->queued_) return;
  if (vouched_.size() >= kMaxVouchedHandshakes) {
    // Only a holder of the group key (a member, or a revoked device until the key is
    // replaced) gets here: as with strangers, the oldest makes room, never the newest.
    for (auto& w : vouched_) {
      auto old = w.lock();
      if (!old || old->evicted()) continue;
      Log("too many handshakes past mac1 at once: ending the oldest", LogLevel::kWarn);
      old->Evict();
      break;
    }
  }
  HandshakeEnded(c);  // out of the strangers' queue and counts
  c->vouched_ = true;
  c->vouch_pos_ = vouched_.insert(vouched_.end(), c);
}

std::chrono::seconds Core::vouched_timeout() const {
  const auto t = handshake_timeout();
  return vouched_.size() > kMaxVouchedHandshakes / 2 ? std::min(t, kBusyHandshakeTimeout) : t;
}

void Core::EvictOldest(const std::string& ip, bool same_ip) {
  for (auto& w : unauthenticated_) {
    auto c = w.lock();
    if (!c || c->evicted() || (same_ip && c->remote_ip() != ip)) continue;
    if (evictions_++ == 0 || evictions_ % 1000 == 0)
      Log("too many connections without a finished handshake: ending the oldest (" +
              std::to_string(evictions_) + " so far)",
          LogLevel::kWarn);
    c->Evict();
    return;
  }
}

// Accepts connections until the node stops. Unauthenticated handshakes are capped apart
// from sessions, and per source address, so strangers cannot crowd out members or the
// process's descriptors. At a cap the oldest unauthenticated connection makes room (from
// the same address first), never the newest: a member connecting now gets a slot. Once
// its message 1 arrives and proves the group key (mac1, not a replay) the connection is
// vouched for and no stranger can evict it any more: a member always gets through, and
// a flood of connections costs it at most its own first message's trip. Vouched
// handshakes are capped too (the oldest makes room), for holders of the group key.
// (Cookie replies, as WireGuard has, would prove the source address; TCP already does.)
awaitable<void> Core::Accept(tcp::acceptor acceptor) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (stopping_) co_return;
    if (ec) {
      // Out of descriptors (or similar): do not spin; let connections finish.
      Log("accept failed: " + ec.message(), LogLevel::kWarn);
      asio::steady_timer pause(io_, milliseconds(200));
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    std::string address, ip;
    {
      boost::system::error_code e2;
      auto ep = sock.remote_endpoint(e2);
      ip = e2 ? "?" : ep.address().to_string();
      address = e2 ? "?" : ip + ":" + std::to_string(ep.port());
    }
    if (conns_.size() >= kMaxConnections) {
      CountRefusal("busy");
      if (!overload_logged_) {
        Log("refused " + address + ": too many connections", LogLevel::kWarn);
        Emit({NodeEventKind::kRefused, "", address, "too many connections"});
      }
      overload_logged_ = true;
      // Say so, so that the peer does not blame its key.
      const std::string busy = BusyFrame();
      sock.non_blocking(true, ec);
      sock.write_some(asio::buffer(busy), ec);
      continue;
    }
    overload_logged_ = false;
    auto per_ip = handshaking_by_ip_.find(ip);
    if (per_ip != handshaking_by_ip_.end() && per_ip->second >= kMaxHandshakesPerIp)
      EvictOldest(ip, true);
    else if (handshaking_ >= kMaxHandshakes)
      EvictOldest(ip, false);
    RefreshKeys();
    sock.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Conn>(*this, std::move(sock), false, address, ip);
    ++handshaking_;
    ++handshaking_by_ip_[ip];
    conn->queue_pos_ = unauthenticated_.insert(unauthenticated_.end(), conn);
    conn->queued_ = true;
    asio::co_spawn(
        io_,
        [conn, address]() -> awaitable<void> {
          PeerStatus scratch;
          scratch.address = address;
          scratch.direction = "incoming";
          co_await conn->Run(&scratch);
        },
        asio::detached);
  }
}

}  // namespace tandem::net
