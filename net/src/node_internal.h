// The node's insides, shared by its source files (one per responsibility):
//   node.cc        the Node API, the node thread, stopping, events and snapshots
//   connection.cc  one connection: encrypted frames, the sync session, deadlines
//   peer_auth.cc   the handshake in either role, invites and trust checks
//   listener.cc    accepting: pre-authentication limits and the replay filter
//   dialer.cc      dialling peers, backoff, re-reading the group files
//   discovery.cc   LAN discovery over UDP multicast (beacons: beacon.h)
// Everything here runs on the node thread unless said otherwise.
#pragma once

#include "tandem/net/asio.h"
#include "tandem/net/binding.h"
// (asio.h first: it must precede every other Asio include.)
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "tandem/net/collect.h"
#include "tandem/net/group.h"
#include "tandem/net/handshake.h"
#include "tandem/net/node.h"
#include "tandem/net/secure_frame.h"
#include "tandem/net/send_window.h"
#include "tandem/net/wire.h"

namespace tandem::net {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline constexpr auto kCloseTimeout = seconds(5);  // a goodbye that gets no answer
inline constexpr auto kMinBackoff = milliseconds(250);
inline constexpr auto kMaxBackoff = seconds(10);
// Without a ChangeSource, live sessions look for new commits this often.
inline constexpr auto kFallbackPoll = seconds(1);
inline constexpr size_t kMaxConnections = 256;
inline constexpr size_t kMaxHandshakes = 64;
inline constexpr size_t kMaxHandshakesPerIp = 16;
// Inbound handshakes whose message 1 proved the group key (or an open invite's secret):
// strangers cannot evict these; past this many at once the oldest of them makes room.
inline constexpr size_t kMaxVouchedHandshakes = 64;
inline constexpr size_t kMaxDiscoveredDials = 32;
inline constexpr size_t kMaxWelcomeBytes = 512 * 1024;  // statements beyond come by sync
inline constexpr size_t kReplayMemory = 100000;         // digests: a few MB at most
inline constexpr size_t kWriteChunk = 1 << 20;
inline constexpr size_t kProgressChunk = 64 << 10;  // deadlines restart per piece this size
// Inside a frame, the read deadline restarts only once this much more of it has come:
// a link slower than this per idle timeout is as good as stopped.
inline constexpr size_t kMidFrameProgress = 1024;
inline constexpr uint64_t kPendingCap = 100000;
inline constexpr size_t kMaxQueuedEvents = 10000;
// What a responder sends, as a handshake message, before it closes a connection it has
// no room for: the initiator says the peer was overloaded, not that its key was wrong.
inline constexpr char kBusyMessage[] = "tandem-busy";
// kBusyMessage as sent: behind its 2-byte length, like any handshake message.
inline std::string BusyFrame() {
  std::string out(2, '\0');
  out[1] = static_cast<char>(sizeof kBusyMessage - 1);
  return out + kBusyMessage;
}
// With more unauthenticated connections than this, new ones get kBusyHandshakeTimeout.
inline constexpr size_t kBusyHandshakes = kMaxHandshakes / 2;
inline constexpr auto kBusyHandshakeTimeout = seconds(2);

uint64_t WallMs();

// What the snapshot shows about one peer (PeerSnapshot, as the node thread keeps it).
using PeerStatus = PeerSnapshot;

// What the node thread may know of a session, which lives on the storage worker: a
// copy taken there after every call into it.
struct SessionView {
  engine::SessionStats stats;
  bool caught_up = false;
  bool complete = false;    // Session::complete
  bool sync_again = false;  // Session::sync_again
  std::optional<engine::ReplicaId> peer;
  uint64_t peer_acked = 0;
  engine::VersionVector peer_vv;  // Session::peer_vv
  uint64_t capped_at = 0;         // Session::capped_at
};
inline SessionView ViewOf(const engine::Session& s) {
  return {s.stats(), s.caught_up(),  s.complete(), s.sync_again(),
          s.peer(),  s.peer_acked(), s.peer_vv(),  s.capped_at()};
}
// Change-log entries after `since`, counted up to `cap` (nullopt if unreadable).
std::optional<uint64_t> CountLog(engine::Replica& r, uint64_t since, uint64_t cap);

using Core = Node::Core;

// One TCP connection: handshake, encrypted frames, one sync session.
// What a FINAL frame carries when its side ends the session because what the peer may
// read changed (CheckTrust): the peer then starts a session at once.
inline constexpr std::string_view kEndedForPermissions = "permissions";

class Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(Core& d, tcp::socket sock, bool initiator, std::string address, std::string remote_ip = {})
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
  // The session ended so that one started at once does what it could not: this replica
  // turned out rolled back, or a rebase is due (Session::sync_again), or what the peer
  // may read changed during it (CheckTrust), or the peer ended it before this side had
  // caught up (as it does when what this side may read changed there).
  bool sync_again() const { return view_.sync_again || reread_ || ended_early_; }
  // The peer ended the session for what this device may read there, after this side
  // received something in it: a session started at once gets further.
  bool ended_for_permissions_with_progress() const {
    return ended_early_ && view_.stats.fields_applied > 0;
  }
  // After a call into the session: a stream that stopped at what the group's authority
  // was judged by asks for a judgement of what came after (once per limit: a judgement
  // that fails leaves the limit, and the stream waits).
  void Judged();
  // An initiator: which of Core::accepted_keys() to present (0: the current key), and
  // whether the peer closed the connection after message 1 (it took none of our keys).
  void set_key_index(size_t i) { key_index_ = i; }
  bool closed_at_first_gate() const { return closed_at_first_gate_; }
  bool has_session() const { return session_ != nullptr && !closed_; }
  const SessionView& view() const { return view_; }
  void set_pending(std::optional<uint64_t> n) { pending_ = n; }
  // Live mode: offer what has committed since the last call.
  void Poll();
  // Ends the connection if the peer has been revoked since it connected.
  void CheckTrust();
  // A graceful end: a final frame, then close. FINAL carries `why`
  // (kEndedForPermissions, or nothing; older builds ignore what it carries).
  void Finish(std::string_view why = {});
  // Ends a connection still in its handshake to make room for a newer one (it says
  // kBusyMessage first).
  void Evict();
  bool evicted() const { return evicted_; }
  // Where this inbound connection sits in Core::unauthenticated_ while it is there.
  std::list<std::weak_ptr<Conn>>::iterator queue_pos_;
  bool queued_ = false;
  // Its message 1 proved the group key (Core::Vouch): no stranger can evict it.
  bool vouched_ = false;
  std::list<std::weak_ptr<Conn>>::iterator vouch_pos_;  // in Core::vouched_
  const std::optional<Key32>& peer_key() const { return peer_key_; }
  bool initiator() const { return initiator_; }
  const std::string& remote_ip() const { return remote_ip_; }
  const PeerStatus* status() const { return status_; }
  // Log entries after the peer's acknowledged position (counted on the storage worker by
  // the snapshot loop, up to kPendingCap).
  std::optional<uint64_t> Pending() const { return has_session() ? pending_ : std::nullopt; }

 private:
  const std::string remote_ip_;
  awaitable<std::string> ReadHandshake();
  awaitable<void> WriteHandshake(const std::string& m);
  awaitable<bool> HandshakeAsInitiator(Key32* send, Key32* recv);
  awaitable<bool> HandshakeAsResponder(Key32* send, Key32* recv);
  awaitable<void> Watchdog();
  awaitable<void> Writer();
  awaitable<Status> HandleFrame(std::string plaintext);
  void Send(std::vector<engine::Message>& out);
  void AfterProgress();
  awaitable<void> StartSession();  // makes session_ and queues its first messages
  void Enqueue(std::string_view plaintext, bool final);
  void Fail(const std::string& why);
  // What Fail records and logs, without ending the connection.
  void NoteFailure(const std::string& why);
  void Refuse(const std::string& why);
  void Close();
  static double Seconds() {
    return std::chrono::duration<double>(SteadyClock::now().time_since_epoch()).count();
  }
  // The session's send window, sized to this connection's bandwidth-delay product: at
  // most Session::kMaxWindow batches and 16 MiB in flight. It starts at 16 batches (at
  // most 4 MiB before compression, about 300 KB of typical records after it): a first
  // flight that nearly fills a 200 ms, 2 MB/s link before any acknowledgement has
  // measured it, where four batches took three more round trips to get there. Once
  // measured, a slow link's window may shrink to four, so that little waits behind it.
  SendWindow send_window_{16, engine::Session::kMaxWindow, 16 << 20, 4};
  void Touch(SteadyClock::duration d) {
    auto next = SteadyClock::now() + d;
    const bool earlier = next < deadline_;
    deadline_ = next;
    if (earlier) watchdog_.cancel();  // the watchdog re-arms at the new deadline
  }
  void UpdateStatus();
  std::string Who() const;

  Core& d_;
  tcp::socket sock_;
  asio::steady_timer watchdog_, wake_, writer_done_;
  SteadyClock::time_point deadline_, write_started_;
  bool writing_ = false;
  bool initiator_;
  std::string address_;
  PeerStatus* status_ = nullptr;
  bool closed_ = false, failed_ = false, evicted_ = false;
  bool mid_frame_ = false;     // reading a frame's body (its length prefix came)
  uint32_t peer_idle_ms_ = 0;  // the peer's idle timeout, from its Hello (0: unsaid)
  std::chrono::milliseconds KeepaliveInterval() const;
  bool reread_ = false;          // closed by CheckTrust, for a session under the new permissions
  bool ended_early_ = false;     // the peer ended the session for what this device may read
  uint64_t judge_asked_at_ = 0;  // the capped_at a judgement was asked for last (Judged)
  std::string error_;            // why it failed, if it did
  bool invite_mode_ = false;     // this connection redeems an invite
  bool expect_welcome_ = false;  // joiner: the first frame is the group key
  size_t key_index_ = 0;
  bool closed_at_first_gate_ = false;
  Role invite_role_ = Role::kMember;  // inviter: what the redeemed invite grants
  engine::CollectionFilter reads_;    // what the peer may read (Core::ReadableBy)
  std::optional<Key32> peer_key_;
  std::unique_ptr<FrameSealer> sealer_;
  std::unique_ptr<FrameOpener> opener_;
  // Used only on the storage worker (Core::OnWorker) once the connection runs.
  std::unique_ptr<engine::Session> session_;
  SessionView view_;
  std::optional<uint64_t> pending_;
  bool polling_ = false, repoll_ = false;
  std::deque<std::string> outq_;
  bool final_queued_ = false, final_received_ = false, writer_running_ = false;
  bool reported_caught_up_ = false;
  uint64_t blobs_logged_in_ = 0, blobs_logged_out_ = 0;  // blobs the log has told of
  size_t withheld_logged_ = 0;  // field states withheld, of those the session names
  bool differ_logged_ = false, repair_logged_ = false;
  uint64_t caught_up_seen_ = 0;
  bool established_ = false;    // both stream headers exchanged
  bool connected_ = false;      // and the session began (kConnected was emitted)
  bool noted_replica_ = false;  // the peer's replica id is in its trust record
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  uint64_t messages_in_ = 0, messages_out_ = 0;
  uint32_t peer_features_ = 0;    // announced in the peer's Hello (wire.h)
  engine::SessionStats counted_;  // the session's stats already added to status_
};

struct Node::Core : std::enable_shared_from_this<Node::Core> {
  Core(engine::Replica& r, const Identity& self, NodeOptions o);
  ~Core();

  // --- the node thread ---
  void Run();     // the thread's body: runs the io_context until stopped
  Status Bind();  // binds the listener (called by Start, before the thread)
  void Launch();  // spawns dials, watchers, discovery (on the node thread)
  void Stop();    // begins stopping (on the node thread)

  // --- used by connections ---
  void Log(const std::string& line, LogLevel level = LogLevel::kInfo) {
    if (opt_.log) opt_.log(line, level);
  }
  void Emit(NodeEvent e);
  engine::Replica& replica() { return replica_; }
  const Identity& self() const { return self_; }
  const std::string& self_device() const { return self_device_; }
  const NodeOptions& options() const { return opt_; }
  const Key32& group_key() const { return group_key_; }
  // The keys the first gate accepts now: the current one, then those retired within the
  // grace period.
  std::vector<Key32> accepted_keys() const;
  const std::optional<Invite>& join() const { return join_; }
  // The joiner received the group key over an invite session.
  // SaveJoined stores it (group.key, join.code gone, the inviter a member), on the
  // storage worker; then Joined switches this node to it, on the node thread.
  // The welcome may carry the group's root and statements (welcome.h formats).
  Status SaveJoined(const Key32& key, const Key32& inviter, const std::optional<Key32>& root,
                    const std::vector<std::string>& statements);
  void Joined(const Key32& key, const Key32& inviter);
  // The inviter's welcome: the group key, then the root and the statements it holds.
  std::string Welcome();
  // Whether the device with this key is a member, revoked or unknown (RefreshTrust's view).
  Trust TrustOf(const Key32& key);
  // The options of a session with the device whose key is `peer`: what it may not read
  // (`reads`, from ReadableBy) is left out of what we send.
  engine::SessionOptions SessionOptionsFor(const Key32& peer,
                                           const engine::CollectionFilter& reads);
  // What the device may read, by the group's permits (Authority::LevelOf), system
  // collections aside: a collection no permit names reads at the level of "*", so every
  // collection but those permits name that it may not read, or, when it may read none
  // that no permit names, only those permits name that it may read.
  engine::CollectionFilter ReadableBy(const Key32& peer);
  // Runs f() on the storage worker and resumes the caller on the node thread with its
  // result. Sessions and storage writes (fsynced commits, log scans) run there, one at a
  // time and in order, so that the node thread never waits for the disk.
  template <typename F>
  awaitable<Status> OnWorker(F f) {
    co_return co_await asio::co_spawn(
        work_io_->get_executor(),
        [f = std::move(f)]() mutable -> awaitable<Status> { co_return f(); }, use_awaitable);
  }
  // Re-reads the authority (statements, revocation cutoffs) after a change.
  void RefreshTrust();
  // Takes a rotated group key that reached us; an admin's node rotates one in doubt.
  void RefreshGroupKey(const Authority& a);
  // Judges the changes held for their writer's binding again (engine::Replica::JudgeHeld),
  // on the storage worker: after new bindings arrived. JudgeHeldNow runs there (after
  // a session's batch too), and logs what it did.
  void JudgeHeld();
  void JudgeHeldNow();
  Status TryJudgeHeld();
  // Reads the statements, revocation cutoffs and write limits again, on the storage
  // worker, after a session took statements and before it judges the rest of its batch
  // (SessionOptions::judgement_changed).
  Status ReadLimitsNow();
  // Stores this replica's binding (binding.h) if the replica lacks it: at start, and
  // after the replica took a new id (a rollback seen in a session).
  void PublishBinding();
  // Connecting and the handshake: 10 s, or the idle timeout if shorter; shorter still
  // while many unauthenticated connections wait (they may be an attack).
  std::chrono::seconds handshake_timeout() const {
    auto t = seconds(std::min(10, std::max(1, opt_.idle_timeout_s)));
    return handshaking_ > kBusyHandshakes ? std::min(t, kBusyHandshakeTimeout) : t;
  }
  // Makes room for a new unauthenticated connection from `ip`: ends the oldest one from
  // the same address (if `same_ip`), else the oldest of all.
  void EvictOldest(const std::string& ip, bool same_ip);
  bool close_when_caught_up() const { return opt_.mode != NodeMode::kLive; }
  void HandshakeEnded(const std::shared_ptr<Conn>& c);
  // An inbound connection's message 1 passed mac1 and the replay check: it leaves the
  // strangers' queue for the vouched one (at kMaxVouchedHandshakes, the oldest vouched
  // handshake is ended to make room).
  void Vouch(const std::shared_ptr<Conn>& c);
  // The deadline for a vouched handshake's last message: shorter while many wait.
  std::chrono::seconds vouched_timeout() const;
  void Register(const std::shared_ptr<Conn>& c);
  void Unregister(const std::shared_ptr<Conn>& c);
  void Notify();  // the replica changed: wake live sessions (coalesced)
  void CountRefusal(const std::string& reason) {
    ++refused_connections_;
    ++refused_by_reason_[reason];
  }
  // The replay filter (listener.cc).
  bool FirstSeen(const std::string& m1);
  // The snapshot, refreshed from the node thread's state.
  void RefreshSnapshot(bool running);

  static engine::CollectionFilter WithSystem(engine::CollectionFilter f) {
    if (f.all) {
      for (const char* c : {kDevicesCollection, kStatementsCollection, kBindingsCollection,
                            kSchemasCollection, kReportsCollection})
        f.names.erase(c);
    } else {
      f.names.insert(kDevicesCollection);
      f.names.insert(kStatementsCollection);
      f.names.insert(kBindingsCollection);
      f.names.insert(kSchemasCollection);
      f.names.insert(kReportsCollection);
    }
    return f;
  }
  awaitable<void> Accept(tcp::acceptor acceptor);
  // Reports every opt_.report_interval_s, collects every opt_.collect_interval_s
  // (collector.cc).
  awaitable<void> CollectLoop();
  awaitable<void> Dial(std::vector<std::string> addresses, PeerStatus* status,
                       bool persistent = true);
  void RefreshKeys();
  awaitable<void> DialDiscovered(std::string address, std::string device, std::string row,
                                 PeerStatus* st);
  awaitable<void> WatchChanges();
  awaitable<void> FallbackPoll();
  awaitable<void> SnapshotLoop();
  awaitable<void> Discovery();

  engine::Replica& replica_;
  Identity self_;
  NodeOptions opt_;
  std::string self_device_;
  Key32 group_key_{};
  std::vector<GroupKeys::Retired> retired_keys_;
  std::optional<Invite> join_;
  std::thread thread_;
  std::mutex join_mu_;                     // one joiner at a time
  std::optional<tcp::acceptor> acceptor_;  // bound by Start, handed to Accept
  std::set<std::shared_ptr<Conn>> conns_;
  std::map<std::string, PeerStatus> peers_;  // by address (outbound) or device (inbound)
  std::string listen_address_;
  std::mutex trust_mu_;                            // sessions read these on the storage worker
  std::map<engine::ReplicaId, uint64_t> cutoffs_;  // revoked replicas (RevocationCutoffs)
  Authority authority_;
  // How far our log has been judged by (RefreshTrust): sessions send nothing past it
  // (SessionOptions::send_upto), so a revocation or permission that lands with data after
  // it ends the session (CheckTrust) before that data goes.
  std::atomic<uint64_t> trusted_upto_{0};
  // When this process last asked each device, of those with no known replica, for a
  // comparison of states (SessionOptionsFor).
  std::mutex asked_mu_;
  std::map<Key32, uint64_t> asked_;

  WriteLimits limits_;
  uint64_t limits_upto_ = 0;    // how far the log was when cutoffs_ and limits_ were read
  Authority limits_authority_;  // and the authority they were read under
  std::set<engine::ReplicaId> judged_bound_;  // limits_.bound when JudgeHeld last ran
  std::optional<Key32> root_;                 // none in a legacy group
  std::set<StatementId> verified_;         // statements whose signatures were checked (node thread)
  std::set<StatementId> worker_verified_;  // the same, on the storage worker (ReadLimitsNow)
  engine::ReplicaId published_{};          // the replica id PublishBinding last looked at
  bool poll_scheduled_ = false, stopping_ = false;
  size_t dials_running_ = 0;
  size_t handshaking_ = 0;  // inbound connections not yet authenticated
  std::map<std::string, size_t> handshaking_by_ip_;
  std::list<std::weak_ptr<Conn>> unauthenticated_;  // the same, oldest first
  std::list<std::weak_ptr<Conn>> vouched_;          // handshakes past mac1, oldest first
  uint64_t evictions_ = 0;
  bool overload_logged_ = false;
  bool rekeying_ = false;  // a rotation of a key in doubt is on its way (KeyInDoubt)
  uint64_t failures_ = 0;
  // NodeOptions::replica_file as it was at Launch (watched only if it could be read then),
  // and whether it has changed since.
  bool watching_file_ = false;
  uint64_t file_dev_ = 0, file_ino_ = 0;
  bool replica_gone_ = false;
  void WatchReplicaFile();  // at Launch
  bool ReplicaFileChanged() const;
  uint64_t refused_connections_ = 0;
  std::map<std::string, uint64_t> refused_by_reason_;
  uint64_t started_ms_ = WallMs();
  std::set<std::string> discovered_;            // device ids with a discovery dial running
  std::unordered_set<std::string> seen_first_;  // recent message 1s (FirstSeen)
  std::deque<std::string> seen_order_;
  std::map<std::string, SteadyClock::time_point> last_discovered_dial_;

  // --- shared with other threads, under mu_ ---
  mutable std::mutex mu_;
  std::condition_variable stopped_cv_;
  bool started_ = false, stopped_ = false;
  bool start_failed_ = false;  // it let go of the replica: it may not start again
  bool starting_ = false;      // Start() was called (under mu_)
  bool io_alive_ = true;       // false once the node thread has torn the io_context down
  NodeSnapshot snapshot_;
  std::deque<NodeEvent> events_;
  int event_fd_ = -1;  // an eventfd: readable while events_ is not empty
  std::function<void(const NodeEvent&)> callback_;

  // Torn down by the node thread when it ends (with every handler and coroutine frame it
  // still holds), or last of all if the thread never ran.
  std::unique_ptr<asio::io_context> io_holder_ = std::make_unique<asio::io_context>();
  asio::io_context& io_ = *io_holder_;
  // The storage worker: a thread and its io_context, started and ended with the node.
  std::unique_ptr<asio::io_context> work_io_ = std::make_unique<asio::io_context>();
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_guard_;
  std::thread worker_;
};

}  // namespace tandem::net
