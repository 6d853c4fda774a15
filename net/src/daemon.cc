#include "tandem/net/daemon.h"

#include "tandem/net/asio.h"
// (asio.h first: it must precede every other Asio include.)
#include <sodium.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "tandem/net/group.h"
#include "tandem/net/handshake.h"
#include "tandem/net/secure_frame.h"
#include "tandem/net/wire.h"

namespace tandem::net {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr auto kCloseTimeout = seconds(5);
constexpr auto kMinBackoff = milliseconds(250);
constexpr auto kMaxBackoff = seconds(10);
constexpr auto kFallbackPoll = milliseconds(50);
constexpr size_t kMaxConnections = 256;
constexpr size_t kMaxHandshakes = 64;
constexpr size_t kMaxHandshakesPerIp = 16;
constexpr size_t kMaxDiscoveredDials = 32;
constexpr size_t kReplayMemory = 100000;  // digests: a few MB at most
constexpr size_t kWriteChunk = 1 << 20;
constexpr size_t kProgressChunk = 64 << 10;  // deadlines restart per piece this size
constexpr uint64_t kPendingCap = 100000;
constexpr size_t kBeaconBody = 32 + 2 + 4;

uint64_t WallMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

// What `tandem status` shows about one peer.
struct PeerStatus {
  std::string address, device, replica, direction;
  bool connected = false;
  uint64_t connected_ms = 0, last_sync_ms = 0;
  uint64_t bytes_in = 0, bytes_out = 0, sessions = 0, errors = 0;
  uint64_t fields_sent = 0, fields_received = 0, fields_refused = 0;
  std::string last_error;
};

class Daemon;

// One TCP connection: handshake, encrypted frames, one sync session.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(Daemon& d, tcp::socket sock, bool initiator, std::string address, std::string remote_ip = {})
      : remote_ip_(std::move(remote_ip)),
        d_(d),
        sock_(std::move(sock)),
        watchdog_(sock_.get_executor()),
        wake_(sock_.get_executor()),
        writer_done_(sock_.get_executor()),
        initiator_(initiator),
        address_(std::move(address)) {}

  // Runs the connection to its end. True if the session caught up (both ways).
  awaitable<bool> Run(PeerStatus* status);
  // Live mode: offer what has committed since the last call.
  void Poll();
  // Ends the connection if the peer has been revoked since it connected.
  void CheckTrust();
  // A graceful end: a final frame, then close.
  void Finish();
  const std::optional<Key32>& peer_key() const { return peer_key_; }
  bool initiator() const { return initiator_; }
  const std::string& remote_ip() const { return remote_ip_; }
  const PeerStatus* status() const { return status_; }
  // The session ended because this replica turned out rolled back (Session::rolled_back).
  bool rolled_back() const { return session_ && session_->rolled_back(); }
  // Log entries after the peer's acknowledged position, counted up to `cap`.
  std::optional<uint64_t> Pending(uint64_t cap);

 private:
  const std::string remote_ip_;
  awaitable<std::string> ReadHandshake();
  awaitable<void> WriteHandshake(const std::string& m);
  awaitable<bool> HandshakeAsInitiator(Key32* send, Key32* recv);
  awaitable<bool> HandshakeAsResponder(Key32* send, Key32* recv);
  awaitable<void> Watchdog();
  awaitable<void> Writer();
  Status HandleFrame(std::string_view plaintext);
  void Send(std::vector<engine::Message>& out);
  void AfterProgress();
  void Enqueue(std::string_view plaintext, bool final);
  void Fail(const std::string& why);
  void Refuse(const std::string& why);
  void Close();
  void Touch(SteadyClock::duration d) {
    auto next = SteadyClock::now() + d;
    const bool earlier = next < deadline_;
    deadline_ = next;
    if (earlier) watchdog_.cancel();  // the watchdog re-arms at the new deadline
  }
  void UpdateStatus();
  std::string Who() const;

  Daemon& d_;
  tcp::socket sock_;
  asio::steady_timer watchdog_, wake_, writer_done_;
  SteadyClock::time_point deadline_, write_started_;
  bool writing_ = false;
  bool initiator_;
  std::string address_;
  PeerStatus* status_ = nullptr;
  bool closed_ = false, failed_ = false;
  bool invite_mode_ = false;     // this connection redeems an invite
  bool expect_welcome_ = false;  // joiner: the first frame is the group key
  std::optional<Key32> peer_key_;
  std::unique_ptr<FrameSealer> sealer_;
  std::unique_ptr<FrameOpener> opener_;
  std::unique_ptr<engine::Session> session_;
  std::deque<std::string> outq_;
  bool final_queued_ = false, final_received_ = false, writer_running_ = false;
  bool reported_caught_up_ = false;
  uint64_t caught_up_seen_ = 0;
  bool established_ = false;    // both stream headers exchanged
  bool noted_replica_ = false;  // the peer's replica id is in its trust record
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

class Daemon {
 public:
  Daemon(engine::Replica& r, const Identity& self, const DaemonOptions& o)
      : replica_(r), self_(self), opt_(o), signals_(io_, SIGINT, SIGTERM), status_timer_(io_) {
    if (!opt_.log)
      opt_.log = [](const std::string& line) {
        std::fprintf(stderr, "%s\n", line.c_str());
        std::fflush(stderr);
      };
    self_device_ = DeviceId(self_.public_key);
  }

  int Run();

  // --- used by connections ---
  void Log(const std::string& line) { opt_.log("tandem: " + line); }
  engine::Replica& replica() { return replica_; }
  const Identity& self() const { return self_; }
  const std::string& self_device() const { return self_device_; }
  const DaemonOptions& options() const { return opt_; }
  const Key32& group_key() const { return group_key_; }
  const std::optional<Invite>& join() const { return join_; }
  // The joiner received the group key over an invite session.
  Status Joined(const Key32& key, const Key32& inviter) {
    TANDEM_RETURN_IF_ERROR(SaveGroupKey(opt_.dir, key));
    TANDEM_RETURN_IF_ERROR(ClearJoin(opt_.dir));
    group_key_ = key;
    join_.reset();
    TANDEM_RETURN_IF_ERROR(AddMember(replica_, inviter, self_device_, WallMs()));
    Log("joined the group of " + DeviceId(inviter));
    return Status::Ok();
  }
  engine::SessionOptions SessionOptionsFor() {
    engine::SessionOptions so;
    so.send = WithSystem(opt_.send);
    so.accept = WithSystem(opt_.receive);
    // A revoked device's values after its cutoff are refused, from whoever relays them.
    so.revoked = [this] { return cutoffs_; };
    return so;
  }
  void RefreshCutoffs() {
    if (auto c = RevocationCutoffs(replica_); c.ok()) cutoffs_ = std::move(*c);
  }
  // Connecting and the handshake: 10 s, or the idle timeout if shorter.
  std::chrono::seconds handshake_timeout() const {
    return seconds(std::min(10, std::max(1, opt_.idle_timeout_s)));
  }
  bool close_when_caught_up() const { return opt_.once || opt_.interval_s > 0; }
  // An inbound connection leaves the handshake phase (registered or gone).
  void HandshakeEnded(const std::shared_ptr<Conn>& c) {
    if (c->initiator()) return;
    --handshaking_;
    auto it = handshaking_by_ip_.find(c->remote_ip());
    if (it != handshaking_by_ip_.end() && --it->second == 0) handshaking_by_ip_.erase(it);
  }
  void Register(const std::shared_ptr<Conn>& c) {
    HandshakeEnded(c);
    conns_.insert(c);
    WriteStatus(true);
  }
  void Unregister(const std::shared_ptr<Conn>& c) {
    if (!conns_.count(c)) {  // never got past the handshake
      HandshakeEnded(c);
      if (stopping_ && conns_.empty()) io_.stop();
      return;
    }
    // Inbound peers are listed by device once the handshake told us who they are.
    const PeerStatus* cs = c->status();
    if (!c->initiator() && cs && !cs->device.empty()) {
      auto& p = peers_["in:" + cs->device];
      PeerStatus merged = *cs;
      merged.sessions += p.sessions;
      merged.errors += p.errors;
      merged.bytes_in += p.bytes_in;
      merged.bytes_out += p.bytes_out;
      if (merged.last_sync_ms == 0) merged.last_sync_ms = p.last_sync_ms;
      p = merged;
    }
    conns_.erase(c);
    if (!stopping_) WriteStatus(true);
    if (stopping_ && conns_.empty()) io_.stop();
  }
  void Notify();  // the replica changed: wake live sessions (coalesced)
  void CountRefusal() { ++refused_connections_; }
  // True the first time this process sees this (authenticated) message 1; remembers
  // the last kReplayMemory of them. Only messages that passed mac1 are remembered, so
  // strangers cannot flush the memory; each recorded message replays at most once per
  // kReplayMemory legitimate handshakes (and once per restart).
  bool FirstSeen(const std::string& m1) {
    std::string h(16, '\0');  // a keyed-free BLAKE2b-128 digest: 16 bytes per message
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

 private:
  static engine::CollectionFilter WithSystem(engine::CollectionFilter f) {
    if (!f.all) f.names.insert(kDevicesCollection);
    return f;
  }
  awaitable<void> Accept(tcp::acceptor acceptor);
  awaitable<void> Dial(std::vector<std::string> addresses, PeerStatus* status,
                       bool persistent = true);
  void RefreshKeys();
  awaitable<void> DialDiscovered(std::string address, std::string device, std::string row,
                                 PeerStatus* st);
  // The beacon key, from the current group key (a join changes it).
  Key32 DiscoveryKey() const { return DeriveKey(group_key_, "tandem discovery"); }
  awaitable<void> WatchFile();
  awaitable<void> FallbackPoll();
  awaitable<void> WriteStatusLoop();
  awaitable<void> Discovery();
  void WriteStatus(bool running);
  void Stop();

  engine::Replica& replica_;
  Identity self_;
  DaemonOptions opt_;
  std::string self_device_;
  Key32 group_key_{};
  std::optional<Invite> join_;
  asio::io_context io_;
  asio::signal_set signals_;
  asio::steady_timer status_timer_;
  std::set<std::shared_ptr<Conn>> conns_;
  std::map<std::string, PeerStatus> peers_;  // by address (outbound) or device (inbound)
  std::string listen_address_;
  std::map<engine::ReplicaId, uint64_t> cutoffs_;  // revoked replicas (RevocationCutoffs)
  bool poll_scheduled_ = false, stopping_ = false;
  size_t dials_running_ = 0;
  size_t handshaking_ = 0;  // inbound connections not yet authenticated
  std::map<std::string, size_t> handshaking_by_ip_;
  bool overload_logged_ = false;
  int failures_ = 0;
  uint64_t refused_connections_ = 0;
  uint64_t started_ms_ = WallMs();
  std::set<std::string> discovered_;            // device ids with a discovery dial running
  std::unordered_set<std::string> seen_first_;  // recent message 1s (FirstSeen)
  std::deque<std::string> seen_order_;
  std::map<std::string, SteadyClock::time_point> last_discovered_dial_;
};

// --- Conn --------------------------------------------------------------------------

std::string Conn::Who() const {
  if (peer_key_) return DeviceId(*peer_key_) + " (" + address_ + ")";
  return address_;
}

void Conn::Close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  sock_.shutdown(tcp::socket::shutdown_both, ec);
  sock_.close(ec);
  watchdog_.cancel();
  wake_.cancel();
  writer_done_.cancel();
}

void Conn::Fail(const std::string& why) {
  if (closed_) return;
  failed_ = true;
  if (status_) {
    ++status_->errors;
    status_->last_error = why;
  }
  d_.Log("connection " + Who() + " ended: " + why);
  Close();
}

void Conn::Refuse(const std::string& why) {
  d_.CountRefusal();
  if (status_) {
    ++status_->errors;
    status_->last_error = "refused: " + why;
  }
  d_.Log("refused " + Who() + ": " + why);
  failed_ = true;
  Close();
}

void Conn::Enqueue(std::string_view plaintext, bool final) {
  if (closed_ || final_queued_ || !sealer_) return;
  std::string frame;
  Status st = sealer_->Seal(plaintext, final, &frame);
  if (!st.ok()) return Fail(st.message());
  outq_.push_back(std::move(frame));
  if (final) final_queued_ = true;
  wake_.cancel();
}

void Conn::Send(std::vector<engine::Message>& out) {
  for (const auto& m : out) Enqueue(EncodeMessage(m), false);
  out.clear();
}

void Conn::Finish() {
  if (closed_ || final_queued_) return;
  if (!sealer_) return Close();
  Enqueue({}, true);
  Touch(kCloseTimeout);
}

void Conn::Poll() {
  if (closed_ || final_queued_ || !session_) return;
  std::vector<engine::Message> out;
  Status st = session_->Poll(&out);
  if (!st.ok()) return Fail(st.ToString());
  Send(out);
  AfterProgress();
}

// "Last sync" is the last CaughtUp received: at that moment we held everything the peer
// had when it answered our request. The first exchange of CaughtUps both ways is logged.
// (In live mode the strict caught_up() holds only between bursts of changes.)
void Conn::AfterProgress() {
  const auto& s = session_->stats();
  if (s.caught_up_received > caught_up_seen_) {
    caught_up_seen_ = s.caught_up_received;
    if (status_) status_->last_sync_ms = WallMs();
  }
  if (!reported_caught_up_ && s.caught_up_received > 0 && s.caught_up_sent > 0) {
    reported_caught_up_ = true;
    UpdateStatus();
    d_.Log("caught up with " + Who() + ": " + std::to_string(s.fields_applied) +
           " fields received, " + std::to_string(s.fields_sent) + " sent");
  }
  if (d_.close_when_caught_up() && session_->caught_up()) Finish();
}

void Conn::CheckTrust() {
  if (closed_ || !peer_key_ || !session_) return;
  auto t = TrustOf(d_.replica(), *peer_key_);
  if (t.ok() && *t == Trust::kRevoked) Refuse("the device has been revoked");
}

std::optional<uint64_t> Conn::Pending(uint64_t cap) {
  if (!session_ || closed_) return std::nullopt;
  auto txn = d_.replica().store().BeginRead();
  if (!txn.ok()) return std::nullopt;
  uint64_t n = 0;
  Status st = (*txn)->ScanLog(session_->peer_acked(),
                              [&](uint64_t, const engine::FieldKey&) { return ++n < cap; });
  if (!st.ok()) return std::nullopt;
  return n;
}

void Conn::UpdateStatus() {
  if (!status_) return;
  status_->bytes_in += bytes_in_;
  status_->bytes_out += bytes_out_;
  bytes_in_ = bytes_out_ = 0;
  if (session_) {
    const auto& s = session_->stats();
    status_->fields_sent = s.fields_sent;
    status_->fields_received = s.fields_applied;
    status_->fields_refused = s.fields_refused;
    if (session_->peer()) status_->replica = session_->peer()->Hex();
  }
}

awaitable<std::string> Conn::ReadHandshake() {
  uint8_t len[2];
  co_await asio::async_read(sock_, asio::buffer(len, 2), use_awaitable);
  size_t n = (size_t{len[0]} << 8) | len[1];
  if (n == 0 || n > kMaxHandshakeMessage)
    throw std::runtime_error("handshake message of " + std::to_string(n) + " bytes");
  std::string m(n, '\0');
  co_await asio::async_read(sock_, asio::buffer(m), use_awaitable);
  bytes_in_ += 2 + n;
  co_return m;
}

awaitable<void> Conn::WriteHandshake(const std::string& m) {
  std::string buf;
  buf.push_back(static_cast<char>(m.size() >> 8));
  buf.push_back(static_cast<char>(m.size()));
  buf += m;
  co_await asio::async_write(sock_, asio::buffer(buf), use_awaitable);
  bytes_out_ += buf.size();
}

awaitable<bool> Conn::HandshakeAsInitiator(Key32* send, Key32* recv) {
  // A copy: another connection may redeem the invite while this one waits.
  const std::optional<Invite> join = d_.join();
  Key32 psk = d_.group_key();
  PskKind kind = PskKind::kGroup;
  InviteId invite{};
  if (join) {
    invite_mode_ = true;
    expect_welcome_ = true;
    psk = InvitePsk(join->secret);
    kind = PskKind::kInvite;
    invite = InviteIdOf(join->secret);
  }
  auto hs = Handshake::Initiator(d_.self(), psk, kind, invite);
  auto m1 = hs.Write();
  if (!m1.ok()) {
    Fail(m1.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m1);
  std::string m2;
  try {
    m2 = co_await ReadHandshake();
  } catch (const boost::system::system_error&) {
    Fail(invite_mode_ ? "the peer closed the connection during the handshake: it did not "
                        "accept the invite (not the inviter, or the invite was used or "
                        "expired)"
                      : "the peer closed the connection during the handshake (a wrong "
                        "group key, or this device is not a member or was revoked)");
    co_return false;
  }
  Status st = hs.Read(m2);
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  peer_key_ = hs.peer_key();
  if (invite_mode_) {
    if (*peer_key_ != join->inviter) {
      Refuse("the peer is not the device that made the invite");
      co_return false;
    }
  } else {
    auto t = TrustOf(d_.replica(), *peer_key_);
    if (!t.ok() || *t != Trust::kMember) {
      Refuse(!t.ok()                 ? t.status().ToString()
             : *t == Trust::kRevoked ? "the peer's device has been revoked"
                                     : "the peer's device is not a member of this group");
      co_return false;
    }
  }
  auto m3 = hs.Write();
  if (!m3.ok()) {
    Fail(m3.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m3);
  auto keys = hs.Split();
  *send = keys.send;
  *recv = keys.recv;
  sodium_memzero(&keys, sizeof keys);
  sodium_memzero(psk.data(), psk.size());
  co_return true;
}

awaitable<bool> Conn::HandshakeAsResponder(Key32* send, Key32* recv) {
  std::string m1 = co_await ReadHandshake();
  auto hdr = PeekFirstMessage(m1);
  if (!hdr.ok()) {
    Refuse("not a tandem handshake");
    co_return false;
  }
  Key32 psk = d_.group_key();
  InviteId invite{};
  if (hdr->kind == PskKind::kInvite) {
    auto secret = FindInvite(d_.options().dir, hdr->invite, WallMs());
    if (!secret.ok()) {
      Refuse("invite: " + secret.status().message());
      co_return false;
    }
    psk = InvitePsk(*secret);
    invite = hdr->invite;
    invite_mode_ = true;
  }
  auto hs = Handshake::Responder(d_.self(), psk);
  Status st = hs.Read(m1);
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  // A recorded message 1 passes mac1 again; refuse it before any Diffie-Hellman.
  if (!d_.FirstSeen(m1)) {
    Refuse("a replayed first handshake message");
    co_return false;
  }
  auto m2 = hs.Write();
  if (!m2.ok()) {
    Refuse(m2.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m2);
  std::string m3 = co_await ReadHandshake();
  st = hs.Read(m3);
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  peer_key_ = hs.peer_key();
  auto t = TrustOf(d_.replica(), *peer_key_);
  if (!t.ok()) {
    Fail(t.status().ToString());
    co_return false;
  }
  if (*t == Trust::kRevoked) {
    Refuse("the device has been revoked");
    co_return false;
  }
  if (invite_mode_) {
    // Burning is atomic across processes: exactly one redemption wins.
    st = BurnInvite(d_.options().dir, invite);
    if (!st.ok()) {
      Refuse("invite: " + st.message());
      co_return false;
    }
    st = AddMember(d_.replica(), *peer_key_, d_.self_device(), WallMs());
    if (!st.ok()) {
      Fail(st.ToString());
      co_return false;
    }
    d_.Log("invite redeemed: added " + DeviceId(*peer_key_) + " to the group");
  } else if (*t != Trust::kMember) {
    Refuse("the device is not a member of this group");
    co_return false;
  }
  auto keys = hs.Split();
  *send = keys.send;
  *recv = keys.recv;
  co_return true;
}

// One timer per connection enforces both deadlines: a read (or the handshake) must
// make progress by deadline_, and a write that started must finish within the idle
// timeout (a peer that stops reading is dropped, its window of batches freed).
awaitable<void> Conn::Watchdog() {
  auto self = shared_from_this();
  const auto idle = seconds(d_.options().idle_timeout_s);
  while (!closed_) {
    auto wake = deadline_;
    if (writing_) wake = std::min(wake, write_started_ + idle);
    watchdog_.expires_at(wake);
    boost::system::error_code ec;
    co_await watchdog_.async_wait(asio::redirect_error(use_awaitable, ec));
    if (closed_) break;
    if (writing_ && SteadyClock::now() >= write_started_ + idle) {
      Fail("timed out writing: the peer stopped reading");
      break;
    }
    if (SteadyClock::now() >= deadline_) {
      if (final_queued_ && session_ && session_->caught_up())
        Close();  // we said goodbye; the peer did not answer in time
      else
        Fail("timed out waiting for the peer");
    }
  }
}

awaitable<void> Conn::Writer() {
  auto self = shared_from_this();
  writer_running_ = true;
  try {
    while (!closed_) {
      if (outq_.empty()) {
        if (final_queued_) {
          boost::system::error_code ec;
          sock_.shutdown(tcp::socket::shutdown_send, ec);
          break;
        }
        wake_.expires_after(seconds(d_.options().keepalive_s));
        boost::system::error_code ec;
        co_await wake_.async_wait(asio::redirect_error(use_awaitable, ec));
        if (closed_) break;
        if (!ec && outq_.empty()) Enqueue({}, false);  // keepalive
        continue;
      }
      std::string buf;
      while (!outq_.empty() && buf.size() < kWriteChunk) {
        if (buf.empty())
          buf = std::move(outq_.front());
        else
          buf += outq_.front();
        outq_.pop_front();
      }
      writing_ = true;
      watchdog_.cancel();  // re-arm with the write deadline
      // The deadline is for progress, not for the whole buffer: each piece the kernel
      // takes restarts it, so a slow but moving link is never cut off.
      size_t done = 0;
      while (done < buf.size()) {
        write_started_ = SteadyClock::now();
        done += co_await sock_.async_write_some(
            asio::buffer(buf.data() + done, std::min(buf.size() - done, kProgressChunk)),
            use_awaitable);
      }
      writing_ = false;
      bytes_out_ += buf.size();
    }
  } catch (const boost::system::system_error& e) {
    if (!closed_) Fail("write failed: " + e.code().message());
  }
  writer_running_ = false;
  writer_done_.cancel();
}

Status Conn::HandleFrame(std::string_view pt) {
  if (expect_welcome_) {
    expect_welcome_ = false;
    if (pt.size() != 32) return Status::Corrupt("the inviter's welcome is malformed");
    Key32 key;
    std::memcpy(key.data(), pt.data(), 32);
    return d_.Joined(key, *peer_key_);
  }
  if (pt.empty()) return Status::Ok();     // keepalive
  if (final_queued_) return Status::Ok();  // closing: nothing more is applied or sent
  auto msg = DecodeMessage(pt);
  if (!msg.ok()) return msg.status().With("peer sent a malformed message");
  std::vector<engine::Message> out;
  TANDEM_RETURN_IF_ERROR(session_->Receive(*msg, &out));
  Send(out);
  if (!noted_replica_ && session_->peer()) {
    noted_replica_ = true;
    TANDEM_RETURN_IF_ERROR(NoteReplica(d_.replica(), DeviceId(*peer_key_), *session_->peer()));
  }
  AfterProgress();
  return Status::Ok();
}

awaitable<bool> Conn::Run(PeerStatus* status) {
  auto self = shared_from_this();
  status_ = status;
  Touch(d_.handshake_timeout());
  asio::co_spawn(sock_.get_executor(), Watchdog(), asio::detached);
  try {
    Key32 send{}, recv{};
    bool ok = initiator_ ? co_await HandshakeAsInitiator(&send, &recv)
                         : co_await HandshakeAsResponder(&send, &recv);
    if (!ok) {
      Close();
      UpdateStatus();
      d_.Unregister(self);  // gives back the handshake slot
      co_return false;
    }
    sealer_ = std::make_unique<FrameSealer>(send);
    sodium_memzero(send.data(), send.size());
    std::string header(sealer_->header());
    co_await asio::async_write(sock_, asio::buffer(header), use_awaitable);
    bytes_out_ += header.size();
    std::string peer_header(kStreamHeaderBytes, '\0');
    co_await asio::async_read(sock_, asio::buffer(peer_header), use_awaitable);
    bytes_in_ += peer_header.size();
    opener_ = std::make_unique<FrameOpener>(recv, peer_header);
    established_ = true;
    sodium_memzero(recv.data(), recv.size());

    if (status_) {
      status_->device = DeviceId(*peer_key_);
      status_->connected = true;
      status_->connected_ms = WallMs();
      ++status_->sessions;
    }
    d_.Register(self);
    if (invite_mode_ && !initiator_) {
      const Key32& gk = d_.group_key();
      Enqueue(std::string_view(reinterpret_cast<const char*>(gk.data()), gk.size()), false);
    }
    session_ = std::make_unique<engine::Session>(d_.replica(), d_.SessionOptionsFor());
    std::vector<engine::Message> out;
    Status st = session_->Start(&out);
    if (!st.ok()) throw std::runtime_error(st.ToString());
    Send(out);
    asio::co_spawn(sock_.get_executor(), Writer(), asio::detached);
    Touch(seconds(d_.options().idle_timeout_s));
    d_.Log("connected to " + Who() + (initiator_ ? " (outgoing)" : " (incoming)"));

    std::string prefix(kFrameLengthBytes, '\0'), body, pt;
    while (!closed_) {
      co_await asio::async_read(sock_, asio::buffer(prefix), use_awaitable);
      auto n = opener_->BodyLength(prefix);
      if (!n.ok()) {
        Fail(n.status().message());
        break;
      }
      body.resize(*n);
      // Likewise, every piece of a large frame that arrives restarts the read deadline.
      for (size_t got = 0; got < body.size();) {
        got += co_await sock_.async_read_some(
            asio::buffer(body.data() + got, std::min(body.size() - got, kProgressChunk)),
            use_awaitable);
        if (!final_queued_) Touch(seconds(d_.options().idle_timeout_s));
      }
      bytes_in_ += prefix.size() + body.size();
      bool final = false;
      st = opener_->Open(prefix, body, &pt, &final);
      if (!st.ok()) {
        Fail(st.message());
        break;
      }
      if (final) {
        final_received_ = true;
        if (!final_queued_) Finish();
        break;
      }
      if (!final_queued_) Touch(seconds(d_.options().idle_timeout_s));
      st = HandleFrame(pt);
      if (!st.ok()) {
        Fail(st.ToString());
        break;
      }
      UpdateStatus();
    }
  } catch (const boost::system::system_error& e) {
    if (!closed_) {
      if (e.code() == asio::error::eof)
        Fail(established_ ? "the connection ended without a final frame (truncated)"
                          : "the peer closed the connection during the handshake (a wrong "
                            "group key, this device is not a member or was revoked, or the "
                            "invite was used or expired)");
      else
        Fail(e.code().message());
    }
  } catch (const std::exception& e) {
    if (!closed_) Fail(e.what());
  }
  // Let the writer flush our final frame, then close.
  if (!closed_ && writer_running_) {
    writer_done_.expires_after(kCloseTimeout);
    boost::system::error_code ec;
    co_await writer_done_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  if (!failed_ && session_) d_.Log("disconnected from " + Who());
  Close();
  UpdateStatus();
  if (status_) status_->connected = false;
  d_.Unregister(self);
  co_return !failed_ && session_ && session_->caught_up();
}

// --- Daemon ------------------------------------------------------------------------

void Daemon::Notify() {
  if (poll_scheduled_) return;
  poll_scheduled_ = true;
  asio::post(io_, [this] {
    poll_scheduled_ = false;
    RefreshCutoffs();
    auto conns = conns_;  // a poll may end a connection
    for (const auto& c : conns) {
      c->CheckTrust();
      c->Poll();
    }
  });
}

awaitable<void> Daemon::Accept(tcp::acceptor acceptor) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (stopping_) co_return;
    if (ec) {
      // Out of descriptors (or similar): do not spin; let connections finish.
      Log("accept failed: " + ec.message());
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
    // Unauthenticated handshakes are capped apart from sessions, and per source
    // address, so strangers opening connections cannot crowd out members (or the
    // process's descriptors).
    if (conns_.size() >= kMaxConnections || handshaking_ >= kMaxHandshakes ||
        handshaking_by_ip_[ip] >= kMaxHandshakesPerIp) {
      if (handshaking_by_ip_[ip] == 0) handshaking_by_ip_.erase(ip);
      ++refused_connections_;
      if (!overload_logged_) Log("refused " + address + ": too many connections");
      overload_logged_ = true;
      continue;
    }
    overload_logged_ = false;
    RefreshKeys();
    sock.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Conn>(*this, std::move(sock), false, address, ip);
    ++handshaking_;
    ++handshaking_by_ip_[ip];
    asio::co_spawn(
        io_,
        [this, conn, address]() -> awaitable<void> {
          PeerStatus scratch;
          scratch.address = address;
          scratch.direction = "incoming";
          co_await conn->Run(&scratch);
        },
        asio::detached);
  }
}

// Connects to one peer, trying its addresses in turn (an invite's hints are
// alternatives for one device), and runs connections until the daemon stops: live mode
// reconnects with jittered exponential backoff, interval mode every N seconds, once
// mode not at all. The caller has counted this dial in dials_running_.
awaitable<void> Daemon::Dial(std::vector<std::string> addresses, PeerStatus* status,
                             bool persistent) {
  SteadyClock::duration backoff = kMinBackoff;
  asio::steady_timer wait(io_);
  bool retried_rollback = false;
  while (!stopping_) {
    bool ok = false, connected = false, rolled_back = false;
    const auto started = SteadyClock::now();
    RefreshKeys();
    for (const auto& address : addresses) {
      std::string host;
      uint16_t port = 0;
      Status st = ParseHostPort(address, &host, &port);
      if (!st.ok()) {
        Log("bad peer address " + address + ": " + st.message());
        ++status->errors;
        status->last_error = st.message();
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
        ok = co_await conn->Run(status);
        rolled_back = conn->rolled_back();
        break;
      } catch (const boost::system::system_error& e) {
        ++status->errors;
        status->last_error = "connect: " + e.code().message();
        Log("cannot connect to " + address + ": " + e.code().message());
      }
    }
    // The session found this replica rolled back or copied and gave it a new replica id:
    // the next session, under that id, is the real one. Once, at once.
    if (rolled_back && !retried_rollback) {
      retried_rollback = true;
      continue;
    }
    if (opt_.once) {
      if (!ok) ++failures_;
      break;
    }
    if (stopping_ || !persistent) break;
    if (opt_.interval_s > 0) {
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
  if (--dials_running_ == 0 && opt_.once) Stop();
}

// The group key and a pending join live in files other processes change (`tandem
// join`, a `tandem sync` that redeems the invite): re-read before each dial.
// One connection to a discovered device; the next beacon dials again if it ends.
awaitable<void> Daemon::DialDiscovered(std::string address, std::string device, std::string row,
                                       PeerStatus* st) {
  std::vector<std::string> addresses{address};
  co_await Dial(addresses, st, false);
  discovered_.erase(device);
  if (st->sessions == 0) peers_.erase(row);  // never connected: nothing worth showing
}

void Daemon::RefreshKeys() {
  if (auto gk = LoadGroupKey(opt_.dir); gk.ok()) group_key_ = *gk;
  if (auto j = LoadJoin(opt_.dir); j.ok()) join_ = *j;
}

awaitable<void> Daemon::WatchFile() {
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) co_return;  // the fallback poll still runs
  if (inotify_add_watch(fd, (opt_.dir + "/data.mdb").c_str(), IN_MODIFY) < 0) {
    ::close(fd);
    co_return;
  }
  asio::posix::stream_descriptor sd(io_, fd);
  char buf[4096];
  for (;;) {
    boost::system::error_code ec;
    co_await sd.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
    if (ec || stopping_) co_return;
    Notify();
  }
}

awaitable<void> Daemon::FallbackPoll() {
  asio::steady_timer t(io_);
  while (!stopping_) {
    t.expires_after(kFallbackPoll);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    Notify();
  }
}

void Daemon::WriteStatus(bool running) {
  using nlohmann::json;
  json peers = json::array();
  std::vector<std::pair<const PeerStatus*, std::optional<uint64_t>>> rows;
  std::set<std::string> live_inbound;
  std::map<const PeerStatus*, std::optional<uint64_t>> pending;
  for (const auto& c : conns_) {
    if (!c->status()) continue;
    pending[c->status()] = c->Pending(kPendingCap);
    if (!c->initiator()) {
      rows.emplace_back(c->status(), pending[c->status()]);
      live_inbound.insert(c->status()->device);
    }
  }
  for (auto& [key, p] : peers_) {
    if (p.direction == "incoming" && live_inbound.count(p.device)) continue;
    auto it = pending.find(&p);
    rows.emplace_back(&p, it == pending.end() ? std::nullopt : it->second);
  }
  for (const auto& [pp, pend] : rows) {
    const PeerStatus& p = *pp;
    json j{{"address", p.address},
           {"device", p.device},
           {"replica_id", p.replica},
           {"direction", p.direction},
           {"connected", p.connected},
           {"last_sync_ms", p.last_sync_ms},
           {"bytes_in", p.bytes_in},
           {"bytes_out", p.bytes_out},
           {"sessions", p.sessions},
           {"errors", p.errors},
           {"fields_sent", p.fields_sent},
           {"fields_received", p.fields_received},
           {"fields_refused", p.fields_refused},
           {"last_error", p.last_error}};
    // Changes of ours the peer has not acknowledged yet (known while connected; at least
    // this many when it reaches the cap).
    j["pending_changes"] = pend ? json(*pend) : json(nullptr);
    peers.push_back(std::move(j));
  }
  json j{{"pid", static_cast<int64_t>(::getpid())},
         {"running", running},
         {"device", self_device_},
         {"listen", listen_address_},
         {"mode", opt_.once             ? "once"
                  : opt_.interval_s > 0 ? "interval"
                                        : "live"},
         {"started_ms", started_ms_},
         {"updated_ms", WallMs()},
         {"refused_connections", refused_connections_},
         {"peers", peers}};
  std::string path = opt_.dir + "/" + kStatusFile, tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return;
  std::string text = j.dump();
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), path.c_str());
}

awaitable<void> Daemon::WriteStatusLoop() {
  while (!stopping_) {
    WriteStatus(true);
    status_timer_.expires_after(seconds(1));
    boost::system::error_code ec;
    co_await status_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

void Daemon::Stop() {
  if (stopping_) return;
  stopping_ = true;
  status_timer_.cancel();
  for (const auto& c : std::set<std::shared_ptr<Conn>>(conns_)) c->Finish();
  if (conns_.empty()) {
    io_.stop();
    return;
  }
  // Give connections a moment to say goodbye.
  auto t = std::make_shared<asio::steady_timer>(io_, kCloseTimeout);
  t->async_wait([this, t](boost::system::error_code) { io_.stop(); });
}

int Daemon::Run() {
  InitCrypto();
  auto gk = LoadGroupKey(opt_.dir);
  if (!gk.ok()) {
    Log(gk.status().message());
    return 1;
  }
  group_key_ = *gk;
  auto join = LoadJoin(opt_.dir);
  if (!join.ok()) {
    Log(join.status().ToString());
    return 1;
  }
  join_ = *join;
  // This device's record names the replica it syncs as (a restore makes a new one).
  if (auto meta = replica_.Meta(); meta.ok()) {
    Status st = NoteReplica(replica_, self_device_, meta->id);
    if (!st.ok()) Log("cannot record this replica in the trust set: " + st.ToString());
  }
  RefreshCutoffs();
  if (opt_.once && opt_.peers.empty()) {
    Log("nothing to sync with: give --peer HOST:PORT");
    return 2;
  }
  signals_.async_wait([this](boost::system::error_code ec, int) {
    if (!ec) {
      Log("stopping");
      Stop();
    }
  });
  if (!opt_.listen.empty()) {
    std::string host;
    uint16_t port = 0;
    Status st = ParseHostPort(opt_.listen, &host, &port);
    if (!st.ok()) {
      Log("bad --listen address: " + st.message());
      return 2;
    }
    try {
      tcp::resolver resolver(io_);
      auto eps = resolver.resolve(host, std::to_string(port));
      tcp::acceptor acceptor(io_);
      auto ep = eps.begin()->endpoint();
      acceptor.open(ep.protocol());
      acceptor.set_option(tcp::acceptor::reuse_address(true));
      acceptor.bind(ep);
      acceptor.listen();
      auto bound = acceptor.local_endpoint();
      listen_address_ = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                                 : bound.address().to_string()) +
                        ":" + std::to_string(bound.port());
      Log("device " + self_device_ + " listening on " + listen_address_);
      asio::co_spawn(io_, Accept(std::move(acceptor)), asio::detached);
    } catch (const boost::system::system_error& e) {
      Log("cannot listen on " + opt_.listen + ": " + e.code().message());
      return 1;
    }
  }
  // Once mode with an invite's hints: the addresses are alternatives for the inviter.
  std::vector<std::vector<std::string>> targets;
  if (opt_.peers_are_alternatives)
    targets.push_back(opt_.peers);
  else
    for (const auto& a : opt_.peers) targets.push_back({a});
  dials_running_ = targets.size();
  for (const auto& t : targets) {
    auto& st = peers_["out:" + t.front()];
    st.address = t.front();
    st.direction = "outgoing";
    asio::co_spawn(io_, Dial(t, &st), asio::detached);
  }
  if (!opt_.once) {
    asio::co_spawn(io_, WatchFile(), asio::detached);
    asio::co_spawn(io_, FallbackPoll(), asio::detached);
    if (opt_.discover) asio::co_spawn(io_, Discovery(), asio::detached);
  }
  asio::co_spawn(io_, WriteStatusLoop(), asio::detached);
  io_.run();
  WriteStatus(false);
  return failures_ > 0 ? 1 : 0;
}

// LAN discovery: a UDP multicast beacon every few seconds. The beacon is sealed with a
// key derived from the group key (crypto_secretbox), so strangers see random bytes;
// members learn a device's key and port, and the device with the smaller key dials.
awaitable<void> Daemon::Discovery() {
  if (listen_address_.empty()) {
    Log("--discover needs --listen: discovery is off");
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
    Log("discovery unavailable: " + e.code().message());
    co_return;
  }
  Log("discovery on " + std::string(kDiscoveryGroup) + ":" + std::to_string(kDiscoveryPort));
  // Sender.
  asio::co_spawn(
      io_,
      [this, sockp, group_ep, my_port, my_ip]() -> awaitable<void> {
        auto& sock = *sockp;
        bool send_failed = false;
        asio::steady_timer t(io_);
        while (!stopping_) {
          // magic(4) nonce(24) secretbox(public key(32) port(2) IPv4 or zeros(4)).
          std::string pkt = "TDB1";
          uint8_t nonce[crypto_secretbox_NONCEBYTES];
          randombytes_buf(nonce, sizeof nonce);
          pkt.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
          uint8_t msg[kBeaconBody];
          std::memcpy(msg, self_.public_key.data(), 32);
          msg[32] = static_cast<uint8_t>(my_port >> 8);
          msg[33] = static_cast<uint8_t>(my_port);
          std::memcpy(msg + 34, my_ip.data(), 4);
          uint8_t box[kBeaconBody + crypto_secretbox_MACBYTES];
          const Key32 key = DiscoveryKey();
          crypto_secretbox_easy(box, msg, sizeof msg, nonce, key.data());
          pkt.append(reinterpret_cast<const char*>(box), sizeof box);
          boost::system::error_code ec;
          co_await sock.async_send_to(asio::buffer(pkt), group_ep,
                                      asio::redirect_error(use_awaitable, ec));
          // Said once: without a multicast route nobody will find this device.
          if (ec && !send_failed)
            Log("discovery: cannot send beacons: " + ec.message() +
                " (no multicast route? give --peer instead)");
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
    const size_t want = 4 + crypto_secretbox_NONCEBYTES + kBeaconBody + crypto_secretbox_MACBYTES;
    if (n != want || std::memcmp(buf, "TDB1", 4) != 0) continue;
    uint8_t msg[kBeaconBody];
    const Key32 key = DiscoveryKey();
    if (crypto_secretbox_open_easy(msg, reinterpret_cast<uint8_t*>(buf) + 28, n - 28,
                                   reinterpret_cast<uint8_t*>(buf) + 4, key.data()) != 0)
      continue;  // another group's beacon, or noise
    Key32 pk;
    std::memcpy(pk.data(), msg, 32);
    if (pk == self_.public_key) continue;
    // The smaller key dials, so two members do not connect to each other twice.
    if (std::memcmp(self_.public_key.data(), pk.data(), 32) > 0) continue;
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
    const uint16_t port = static_cast<uint16_t>((msg[32] << 8) | msg[33]);
    std::array<uint8_t, 4> ip;
    std::memcpy(ip.data(), msg + 34, 4);
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

}  // namespace

Status ParseHostPort(const std::string& s, std::string* host, uint16_t* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    return Status::Invalid("expected HOST:PORT, got \"" + s + "\"");
  std::string h = s.substr(0, colon), p = s.substr(colon + 1);
  if (h.front() == '[') {
    if (h.back() != ']' || h.size() < 3)
      return Status::Invalid("bad IPv6 address in \"" + s + "\"");
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string::npos) {
    return Status::Invalid("write IPv6 addresses as [ADDRESS]:PORT, got \"" + s + "\"");
  }
  if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(p) > 65535)
    return Status::Invalid("bad port in \"" + s + "\"");
  *host = h;
  *port = static_cast<uint16_t>(std::stoul(p));
  return Status::Ok();
}

int RunDaemon(engine::Replica& replica, const Identity& self, const DaemonOptions& options) {
  Daemon d(replica, self, options);
  return d.Run();
}

}  // namespace tandem::net
