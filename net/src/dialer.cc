#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>

namespace tandem::net {

// g++ 12 reports -Wmismatched-new-delete for the frames of the coroutines below in some
// builds (ASan): Asio's awaitable frames pair their own operator new and delete; a known
// false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// Connects to one peer, trying its addresses in turn (an invite's hints are
// alternatives for one device), and runs connections until the daemon stops: live mode
// reconnects with jittered exponential backoff, interval mode every N seconds, once
// mode not at all. The caller has counted this dial in dials_running_.
awaitable<void> Core::Dial(std::vector<std::string> addresses, PeerStatus* status,
                           bool persistent) {
  SteadyClock::duration backoff = kMinBackoff;
  asio::steady_timer wait(io_);
  bool retried = false;
  size_t key_index = 0;  // into accepted_keys(): the current key first
  while (!stopping_) {
    bool ok = false, connected = false, again = false, first_gate = false;
    const auto started = SteadyClock::now();
    RefreshKeys();
    for (const auto& address : addresses) {
      std::string host;
      uint16_t port = 0;
      Status st = ParseHostPort(address, &host, &port);
      if (!st.ok()) {
        Log("bad peer address " + address + ": " + st.message(), LogLevel::kError);
        ++status->errors;
        status->last_error = st.message();
        Emit({NodeEventKind::kError, "", address, "bad peer address: " + st.message()});
        continue;
      }
      try {
        tcp::resolver::results_type endpoints;
        boost::system::error_code lit;
        auto ip = asio::ip::make_address(host, lit);
        // Literal addresses skip the resolver (and its one shared thread).
        std::vector<tcp::endpoint> eps;
        if (!lit) {
          eps.emplace_back(ip, port);
        } else {
          tcp::resolver resolver(io_);
          auto res = co_await resolver.async_resolve(host, std::to_string(port), use_awaitable);
          for (const auto& e : res) eps.push_back(e.endpoint());
        }
        // The socket is shared with the connect deadline's handler, which may run after
        // this frame has moved on.
        auto sock = std::make_shared<tcp::socket>(io_);
        auto deadline = std::make_shared<asio::steady_timer>(io_, handshake_timeout());
        deadline->async_wait([sock, deadline](boost::system::error_code ec) {
          boost::system::error_code ignored;
          if (!ec) sock->close(ignored);
        });
        co_await asio::async_connect(*sock, eps, use_awaitable);
        deadline->cancel();
        boost::system::error_code ec;
        sock->set_option(tcp::no_delay(true), ec);
        status->address = address;
        connected = true;
        auto conn = std::make_shared<Conn>(*this, std::move(*sock), true, address);
        conn->set_key_index(key_index);
        ok = co_await conn->Run(status);
        again = conn->sync_again();
        // Each session the peer ends for what this device may read (an admin changing
        // several permits) is followed by another, as long as each gets somewhere.
        if (conn->ended_for_permissions_with_progress()) retried = false;
        first_gate = conn->closed_at_first_gate();
        if (ok) retried = false;  // a later one gets its own retry
        break;
      } catch (const boost::system::system_error& e) {
        ++status->errors;
        status->last_error = "connect: " + e.code().message();
        Log("cannot connect to " + address + ": " + e.code().message(), LogLevel::kWarn);
        Emit({NodeEventKind::kError, "", address, "cannot connect: " + e.code().message()});
      }
    }
    // The session found this replica rolled back or copied and gave it a new replica id
    // (the next session, under that id, is the real one), or found a rebase due, or ended
    // because what the peer may read changed: once, at once.
    if (again && !retried) {
      retried = true;
      continue;
    }
    // Refused at the first gate: the peer may not have heard of a rotation of the group
    // key yet. Each key it replaced (within the grace period) is tried once, at once.
    if (first_gate && key_index + 1 < accepted_keys().size()) {
      ++key_index;
      continue;
    }
    key_index = 0;
    if (opt_.mode == NodeMode::kOnce) {
      if (!ok) ++failures_;
      break;
    }
    if (stopping_ || !persistent) break;
    if (opt_.mode == NodeMode::kInterval) {
      wait.expires_after(seconds(opt_.interval_s));
    } else {
      // A session that lasted is a healthy peer; one that ends at once (a failure, or
      // an interval-mode peer that closes after catching up) backs off like a failure.
      const bool lasted = connected && SteadyClock::now() - started > seconds(10);
      backoff =
          ok && lasted ? kMinBackoff : std::min<SteadyClock::duration>(backoff * 2, kMaxBackoff);
      // Jitter, so that peers restarting together do not retry in lockstep.
      auto jitter = milliseconds(randombytes_uniform(static_cast<uint32_t>(
          std::chrono::duration_cast<milliseconds>(backoff).count() / 4 + 1)));
      wait.expires_after(backoff + jitter);
    }
    boost::system::error_code ec;
    co_await wait.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  if (--dials_running_ == 0 && opt_.mode == NodeMode::kOnce) {
    NodeEvent e{NodeEventKind::kDone, "", "", ""};
    e.ok = failures_ == 0;
    if (!e.ok) e.message = std::to_string(failures_) + " peer(s) did not catch up";
    Emit(std::move(e));
    Stop();
  }
}

// One connection to a discovered device; the next beacon dials again if it ends.
awaitable<void> Core::DialDiscovered(std::string address, std::string device, std::string row,
                                     PeerStatus* st) {
  std::vector<std::string> addresses{address};
  co_await Dial(addresses, st, false);
  discovered_.erase(device);
  if (st->sessions == 0) peers_.erase(row);  // never connected: nothing worth showing
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// The group key and a pending join live in files other processes change (`tandem
// join`, a `tandem sync` that redeems the invite): re-read before each dial.
void Core::RefreshKeys() {
  if (auto keys = LoadGroupKeys(opt_.files); keys.ok()) {
    group_key_ = keys->current;
    retired_keys_ = keys->previous;
  }
  if (auto j = LoadJoin(opt_.files); j.ok()) join_ = *j;
}

}  // namespace tandem::net
