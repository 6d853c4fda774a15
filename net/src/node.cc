#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace tandem::net {

uint64_t WallMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

const char* NodeEventName(NodeEventKind kind) {
  switch (kind) {
    case NodeEventKind::kListening:
      return "listening";
    case NodeEventKind::kConnected:
      return "connected";
    case NodeEventKind::kCaughtUp:
      return "caught_up";
    case NodeEventKind::kDisconnected:
      return "disconnected";
    case NodeEventKind::kRefused:
      return "refused";
    case NodeEventKind::kError:
      return "error";
    case NodeEventKind::kJoined:
      return "joined";
    case NodeEventKind::kInviteRedeemed:
      return "invite_redeemed";
    case NodeEventKind::kDone:
      return "done";
    case NodeEventKind::kStopped:
      return "stopped";
  }
  return "?";
}

// --- Core: on the node thread -------------------------------------------------------

Core::Core(engine::Replica& r, const Identity& self, NodeOptions o)
    : replica_(r), self_(self), opt_(std::move(o)) {
  self_device_ = DeviceId(self_.public_key);
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  snapshot_.device = self_device_;
  snapshot_.mode = opt_.mode;
}

Core::~Core() {
  if (thread_.joinable()) {
    // The last owner may be the node thread itself (a node destroyed from its callback).
    if (std::this_thread::get_id() == thread_.get_id())
      thread_.detach();
    else
      thread_.join();
  }
  if (event_fd_ >= 0) ::close(event_fd_);
}

void Core::Emit(NodeEvent e) {
  // A failure is never "ok", whatever the emitter left it as.
  if (e.kind == NodeEventKind::kError || e.kind == NodeEventKind::kRefused) e.ok = false;
  if (e.kind != NodeEventKind::kStopped) RefreshSnapshot(true);
  std::function<void(const NodeEvent&)> cb;
  {
    std::lock_guard lock(mu_);
    cb = callback_;
    events_.push_back(e);
    if (events_.size() > kMaxQueuedEvents) events_.pop_front();
    uint64_t one = 1;
    if (event_fd_ >= 0 && ::write(event_fd_, &one, sizeof one) < 0) {
      // The counter is far from overflowing; nothing to do.
    }
  }
  if (cb) cb(e);  // never under the lock: it may call back into the node
}

Status Core::SaveJoined(const Key32& key, const Key32& inviter, const std::optional<Key32>& root,
                        const std::vector<std::string>& statements) {
  // The authority first: this device's own group (its root) is left for the inviter's.
  // Without a root the inviter's group is from before statements, judged as then.
  TANDEM_RETURN_IF_ERROR(SaveRoot(opt_.files, root));
  if (root) TANDEM_RETURN_IF_ERROR(StoreStatements(replica_, statements, *root));
  TANDEM_RETURN_IF_ERROR(SaveGroupKey(opt_.files, key));
  TANDEM_RETURN_IF_ERROR(ClearJoin(opt_.files));
  return AddMember(replica_, inviter, self_device_, WallMs());
}

std::string Core::Welcome() {
  std::string w(reinterpret_cast<const char*>(group_key_.data()), group_key_.size());
  std::optional<Key32> root;
  {
    std::lock_guard lock(trust_mu_);
    root = root_;
  }
  auto statements = ReadStatements(replica_);
  if (!root || !statements.ok()) return w;  // a group from before statements
  w.append(reinterpret_cast<const char*>(root->data()), root->size());
  for (const auto& s : *statements) {
    if (w.size() + 4 + s.size() > kMaxWelcomeBytes) break;  // the rest comes by sync
    for (int i = 3; i >= 0; --i) w.push_back(static_cast<char>(s.size() >> (8 * i)));
    w += s;
  }
  return w;
}

std::vector<Key32> Core::accepted_keys() const {
  GroupKeys keys{group_key_, retired_keys_};
  return keys.Accepted(WallMs(), static_cast<uint64_t>(opt_.key_grace_s) * 1000);
}

Trust Core::TrustOf(const Key32& key) {
  std::lock_guard lock(trust_mu_);
  return net::TrustOf(authority_, key);
}

void Core::Joined(const Key32& key, const Key32& inviter) {
  group_key_ = key;
  join_.reset();
  RefreshTrust();
  Log("joined the group of " + DeviceId(inviter));
  Emit({NodeEventKind::kJoined, DeviceId(inviter), "", ""});
}

engine::CollectionFilter Core::ReadableBy(const Key32& peer) {
  std::lock_guard lock(trust_mu_);
  bool any = false;
  for (const auto& p : authority_.permits) any |= p.level == Level::kNone;
  if (!any) return {};
  const std::string device = DeviceId(peer);
  const bool unnamed = authority_.LevelOf(device, kAnyCollection) != Level::kNone;
  // Every one but those it may not read, or only those it may.
  auto out = unnamed ? engine::CollectionFilter::AllBut({}) : engine::CollectionFilter::None();
  for (const auto& p : authority_.permits) {
    const std::string& c = p.collection;
    if (c == kAnyCollection || IsSystemCollection(c)) continue;
    if ((authority_.LevelOf(device, c) != Level::kNone) != unnamed) out.names.insert(c);
  }
  return out;
}

engine::SessionOptions Core::SessionOptionsFor(const Key32& peer,
                                               const engine::CollectionFilter& reads) {
  engine::SessionOptions so;
  // Only what it may read, named alike by every member (the group's permits), so that
  // every peer sends it the same collections whichever it holds (what it bore out of one
  // session then holds for the next: docs/design.md#collection).
  so.send = engine::CollectionFilter::Both(WithSystem(opt_.send), WithSystem(reads));
  // Nothing past what the group's authority was judged by: CheckTrust runs on the node
  // thread after each judgement, before what a session read past the old one is sent.
  so.send_upto = [this] { return trusted_upto_.load(std::memory_order_acquire); };
  if (so.send.Excludes()) {
    // A peer of an older build reads no filter that leaves collections out: to it, the
    // collections there are now that this one lets through (a new one waits for the next
    // session).
    std::set<std::string> names;
    if (auto c = replica_.Collections(); c.ok())
      for (const auto& name : *c)
        if (so.send.Allows(name)) names.insert(name);
    so.send_older = WithSystem(engine::CollectionFilter::Only(std::move(names)));
  }
  so.accept = WithSystem(opt_.receive);
  // Our request goes with our Hello, a round trip sooner: made for the replica of the
  // peer's device we synced with last, or, when we never did, from the start of the log
  // of whichever it is (a copy or a restore gives a device new ids; the peer takes the
  // request only if it is the replica named).
  uint64_t last = 0;  // the last session with the device that caught up
  if (auto known = ReplicasOf(replica_, DeviceId(peer)); known.ok()) {
    so.early_request = true;
    for (const auto& id : *known)
      if (auto ps = replica_.Peer(id); ps.ok() && ps->last_sync_ms > last) {
        last = ps->last_sync_ms;
        so.expect = id;
      }
  }
  // Ask for a comparison of states at the first session with the device in each interval
  // of the wall clock (by when the last one caught up, which the replica keeps: a
  // one-shot sync every few minutes asks once an interval too). Either side's asking is
  // enough, and both sides' intervals start at the same moments.
  // A device none of whose replicas is known here (one of a group from before replicas
  // were bound) is judged by when this process last asked it.
  if (opt_.compare_interval_s == 0) {
    so.compare_states = true;
  } else if (opt_.compare_interval_s > 0) {
    const uint64_t every = static_cast<uint64_t>(opt_.compare_interval_s) * 1000;
    const uint64_t now = WallMs();
    if (last == 0) {
      std::lock_guard lock(asked_mu_);
      auto [it, first] = asked_.emplace(peer, now);
      last = first ? 0 : it->second;
      it->second = now;
    }
    so.compare_states = last == 0 || now / every != last / every;
  }
  // A revoked device's values after its cutoff are refused, from whoever relays them.
  so.revoked = [this] {
    std::lock_guard lock(trust_mu_);
    return cutoffs_;
  };
  // The statements collection takes only statements signed for this group; a data
  // collection, no change by a device that may not write it.
  // A rebase on this peer removes as its deletions would: only where it may write, and
  // every write it made there counts (what it deleted while it could not, we keep), and
  // never in the trust set.
  so.may_rebase = [this, device = DeviceId(peer)](const std::string& c) {
    std::lock_guard lock(trust_mu_);
    return !IsSystemCollection(c) && authority_.CountsEveryWrite(device, c);
  };
  so.peer_writes_everywhere = [this, device = DeviceId(peer)] {
    std::lock_guard lock(trust_mu_);
    return authority_.WritesEverywhere(device);
  };
  if (!(opt_.lazy_blobs == engine::CollectionFilter::None()))
    so.lazy_blobs = [lazy = opt_.lazy_blobs](const std::string& c) { return lazy.Allows(c); };
  // A binding is checked on its own (AdmitBinding), whoever's replica it binds: a revoked
  // device's new replica must be bound to it, never left to the hints.
  so.proves_itself = [](const engine::FieldDelta& d) {
    return d.key.collection == kBindingsCollection;
  };
  so.judge_held = [this] {
    JudgeHeldNow();
    return Status::Ok();
  };
  so.admit = [this](const engine::FieldDelta& d, const engine::FieldState* ours) {
    std::lock_guard lock(trust_mu_);
    if (d.key.collection == kStatementsCollection) return AdmitStatement(d, root_);
    if (d.key.collection == kBindingsCollection) return AdmitBinding(d);
    if (d.key.collection == kReportsCollection) return AdmitReport(d);
    return AdmitWrite(d, ours, limits_);
  };
  // A batch's statements are taken before its other states, which are then judged by
  // the limits read again here, on the storage worker, rather than by those RefreshTrust
  // reads later on the node thread.
  so.changes_judgement = [](const engine::FieldDelta& d) {
    return d.key.collection == kStatementsCollection;
  };
  so.judgement_changed = [this] { return ReadLimitsNow(); };
  // A data collection's states are judged by their writers' events (AdmitWrite), so one
  // in pieces is judged on its outline and stored as it came.
  so.judges_outlines = [](const std::string& c) { return !IsSystemCollection(c); };
  return so;
}

void Core::Register(const std::shared_ptr<Conn>& c) {
  HandshakeEnded(c);
  conns_.insert(c);
  RefreshSnapshot(true);
}

void Core::Unregister(const std::shared_ptr<Conn>& c) {
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
    merged.messages_in += p.messages_in;
    merged.messages_out += p.messages_out;
    merged.fields_sent += p.fields_sent;
    merged.fields_received += p.fields_received;
    merged.fields_refused += p.fields_refused;
    merged.fields_quarantined += p.fields_quarantined;
    merged.rebases += p.rebases;
    merged.rebases_served += p.rebases_served;
    merged.states_compared += p.states_compared;
    merged.states_differed += p.states_differed;
    merged.blobs_received += p.blobs_received;
    merged.blobs_sent += p.blobs_sent;
    merged.blob_bytes_received += p.blob_bytes_received;
    merged.blob_bytes_sent += p.blob_bytes_sent;
    if (merged.last_sync_ms == 0) merged.last_sync_ms = p.last_sync_ms;
    p = merged;
  }
  conns_.erase(c);
  if (!stopping_) RefreshSnapshot(true);
  if (stopping_ && conns_.empty()) io_.stop();
}

void Core::Notify() {
  if (poll_scheduled_) return;
  poll_scheduled_ = true;
  asio::post(io_, [this] {
    poll_scheduled_ = false;
    PublishBinding();
    RefreshTrust();
    auto conns = conns_;  // a poll may end a connection
    for (const auto& c : conns) {
      c->CheckTrust();
      c->Poll();
    }
  });
}

// Live sessions wake when the change source says the replica changed, whoever wrote.
awaitable<void> Core::WatchChanges() {
  int fd = ::dup(opt_.changes->fd());
  if (fd < 0) {
    Log("cannot watch the replica for changes: " + std::string(std::strerror(errno)),
        LogLevel::kWarn);
    co_await FallbackPoll();
    co_return;
  }
  asio::posix::stream_descriptor sd(io_, fd);
  while (!stopping_) {
    boost::system::error_code ec;
    co_await sd.async_wait(asio::posix::descriptor_base::wait_read,
                           asio::redirect_error(use_awaitable, ec));
    if (ec || stopping_) co_return;
    opt_.changes->Clear();
    Notify();
  }
}

// Without a change source: look for new commits now and then.
awaitable<void> Core::FallbackPoll() {
  asio::steady_timer t(io_);
  while (!stopping_) {
    t.expires_after(kFallbackPoll);
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    Notify();
  }
}

void Core::RefreshSnapshot(bool running) {
  NodeSnapshot snap;
  snap.running = running;
  snap.device = self_device_;
  snap.listen = listen_address_;
  snap.mode = opt_.mode;
  snap.started_ms = started_ms_;
  snap.updated_ms = WallMs();
  snap.refused_connections = refused_connections_;
  snap.refused_by_reason = refused_by_reason_;
  snap.failures = failures_;
  snap.replica_gone = replica_gone_;
  snap.send = opt_.send;
  snap.receive = opt_.receive;
  // Connected inbound peers from their connection; the rest from peers_, where a
  // finished inbound session was merged under its device.
  // One entry per inbound device, however many connections it has open (a device may
  // dial two of our addresses): their sums, plus its earlier connections' totals.
  std::map<std::string, PeerSnapshot> live_inbound;
  std::map<const PeerStatus*, std::optional<uint64_t>> pending;
  auto add = [](PeerSnapshot& to, const PeerSnapshot& from) {
    to.sessions += from.sessions;
    to.errors += from.errors;
    to.bytes_in += from.bytes_in;
    to.bytes_out += from.bytes_out;
    to.messages_in += from.messages_in;
    to.messages_out += from.messages_out;
    to.fields_sent += from.fields_sent;
    to.fields_received += from.fields_received;
    to.fields_refused += from.fields_refused;
    to.fields_quarantined += from.fields_quarantined;
    to.rebases += from.rebases;
    to.rebases_served += from.rebases_served;
    to.states_compared += from.states_compared;
    to.states_differed += from.states_differed;
    to.blobs_received += from.blobs_received;
    to.blobs_sent += from.blobs_sent;
    to.blob_bytes_received += from.blob_bytes_received;
    to.blob_bytes_sent += from.blob_bytes_sent;
    to.last_sync_ms = std::max(to.last_sync_ms, from.last_sync_ms);
  };
  for (const auto& c : conns_) {
    if (!c->status()) continue;
    pending[c->status()] = c->Pending();
    if (c->initiator()) continue;
    const PeerSnapshot& cs = *c->status();
    // Before its handshake says who it is, a connection is its own entry.
    const std::string key = cs.device.empty() ? "addr:" + cs.address : cs.device;
    auto [it, fresh] = live_inbound.try_emplace(key, cs);
    PeerSnapshot& p = it->second;
    if (!fresh) {
      add(p, cs);
      p.connected = p.connected || cs.connected;
      if (p.last_error.empty()) p.last_error = cs.last_error;
    }
    const auto pend = pending[c->status()];
    if (pend) p.pending_changes = std::max(p.pending_changes.value_or(0), *pend);
  }
  for (auto& [key, p] : live_inbound) {
    if (auto it = peers_.find("in:" + p.device); !p.device.empty() && it != peers_.end())
      add(p, it->second);
    snap.peers.push_back(p);
  }
  for (auto& [key, p] : peers_) {
    if (p.direction == "incoming" && live_inbound.count(p.device)) continue;
    PeerSnapshot s = p;
    auto it = pending.find(&p);
    s.pending_changes = it == pending.end() ? std::nullopt : it->second;
    snap.peers.push_back(std::move(s));
  }
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snap);
}

awaitable<void> Core::SnapshotLoop() {
  asio::steady_timer t(io_);
  while (!stopping_) {
    // What each peer has yet to acknowledge: a scan of the change log, on the worker.
    std::vector<std::pair<std::shared_ptr<Conn>, uint64_t>> peers;
    for (const auto& c : conns_)
      if (c->has_session()) peers.emplace_back(c, c->view().peer_acked);
    std::vector<std::optional<uint64_t>> counts(peers.size());
    Status ignored = co_await OnWorker([&]() -> Status {
      for (size_t i = 0; i < peers.size(); ++i)
        counts[i] = CountLog(replica_, peers[i].second, kPendingCap);
      return Status::Ok();
    });
    (void)ignored;
    for (size_t i = 0; i < peers.size(); ++i) peers[i].first->set_pending(counts[i]);
    if (stopping_) break;
    if (ReplicaFileChanged()) {
      replica_gone_ = true;
      const std::string why = "the replica " + opt_.replica_file +
                              " was moved, removed or replaced while this node synced it: "
                              "stopping (start it again to sync what is there now)";
      Log(why, LogLevel::kError);
      Emit({NodeEventKind::kError, "", "", why, false});
      Stop();
      break;
    }
    RefreshSnapshot(true);
    t.expires_after(seconds(1));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

void Core::Stop() {
  if (stopping_) return;
  stopping_ = true;
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
  }
  for (const auto& c : std::set<std::shared_ptr<Conn>>(conns_)) c->Finish();
  if (conns_.empty()) {
    io_.stop();
    return;
  }
  // Give connections a moment to say goodbye.
  auto t = std::make_shared<asio::steady_timer>(
      io_, std::min<SteadyClock::duration>(kCloseTimeout, milliseconds(opt_.stop_timeout_ms)));
  t->async_wait([this, t](boost::system::error_code) { io_.stop(); });
}

Status Core::Bind() {
  std::string host;
  uint16_t port = 0;
  TANDEM_RETURN_IF_ERROR(ParseHostPort(opt_.listen, &host, &port).With("listen address"));
  try {
    tcp::resolver resolver(io_);
    auto eps = resolver.resolve(host, std::to_string(port));
    acceptor_.emplace(io_);
    auto ep = eps.begin()->endpoint();
    acceptor_->open(ep.protocol());
    acceptor_->set_option(tcp::acceptor::reuse_address(true));
    acceptor_->bind(ep);
    acceptor_->listen();
    auto bound = acceptor_->local_endpoint();
    listen_address_ = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                               : bound.address().to_string()) +
                      ":" + std::to_string(bound.port());
  } catch (const boost::system::system_error& e) {
    acceptor_.reset();
    return Status::Io("cannot listen on " + opt_.listen + ": " + e.code().message());
  }
  return Status::Ok();
}

void Core::WatchReplicaFile() {
  struct stat st {};
  if (opt_.replica_file.empty() || ::stat(opt_.replica_file.c_str(), &st) != 0) return;
  watching_file_ = true;
  file_dev_ = st.st_dev;
  file_ino_ = st.st_ino;
}

bool Core::ReplicaFileChanged() const {
  if (!watching_file_) return false;
  struct stat st {};
  // Another error (a network filesystem's hiccup) says nothing of that.
  if (::stat(opt_.replica_file.c_str(), &st) != 0) return errno == ENOENT || errno == ENOTDIR;
  return st.st_ino != file_ino_ || st.st_dev != file_dev_;
}

void Core::Launch() {
  WatchReplicaFile();
  if (acceptor_) {
    Log("device " + self_device_ + " listening on " + listen_address_);
    Emit({NodeEventKind::kListening, "", listen_address_, ""});
    asio::co_spawn(io_, Accept(std::move(*acceptor_)), asio::detached);
    acceptor_.reset();
  }
  // Once mode with an invite's hints: the addresses are alternatives for the inviter.
  std::vector<std::vector<std::string>> targets;
  if (opt_.peers_are_alternatives) {
    if (!opt_.peers.empty()) targets.push_back(opt_.peers);
  } else {
    for (const auto& a : opt_.peers) targets.push_back({a});
  }
  dials_running_ = targets.size();
  for (const auto& t : targets) {
    auto& st = peers_["out:" + t.front()];
    st.address = t.front();
    st.direction = "outgoing";
    asio::co_spawn(io_, Dial(t, &st), asio::detached);
  }
  if (opt_.mode != NodeMode::kOnce) {
    if (opt_.changes)
      asio::co_spawn(io_, WatchChanges(), asio::detached);
    else
      asio::co_spawn(io_, FallbackPoll(), asio::detached);
    if (opt_.discover) asio::co_spawn(io_, Discovery(), asio::detached);
    if (opt_.collect_interval_s > 0 || opt_.report_interval_s > 0)
      asio::co_spawn(io_, CollectLoop(), asio::detached);
  } else if (targets.empty()) {
    Emit({NodeEventKind::kDone, "", "", "nothing to sync with"});
    Stop();
  }
  asio::co_spawn(io_, SnapshotLoop(), asio::detached);
}

void Core::Run() {
  Launch();
  io_.run();
  // The worker finishes what it is doing (a commit) and takes nothing more; what it
  // had queued goes with its io_context. Then whatever is still suspended here
  // (connections cut short by the stop timeout, timers) goes with the node's: close it
  // all on this thread.
  work_guard_.reset();
  work_io_->stop();
  if (worker_.joinable()) worker_.join();
  work_io_.reset();
  conns_.clear();
  // What this replica holds, once more as it stops (written if its vector moved): a
  // member whose node only ever runs for less than a report interval would otherwise
  // never report, and look silent to the others' collection. (A one-shot sync's caller
  // reports, knowing whether it caught up.)
  // (Not into a directory that holds another replica now.)
  if (opt_.mode != NodeMode::kOnce && !replica_gone_ &&
      (opt_.collect_interval_s > 0 || opt_.report_interval_s > 0))
    if (Status st = ReportAndNote(replica_, opt_.files, self_device_, WallMs()); !st.ok())
      Log("report failed: " + st.ToString(), LogLevel::kError);
  {
    std::lock_guard lock(mu_);
    io_alive_ = false;
  }
  io_holder_.reset();
  opt_.hold_while_running.reset();  // before kStopped: a new node may start from there
  RefreshSnapshot(false);
  Emit({NodeEventKind::kStopped, "", "", ""});
  std::lock_guard lock(mu_);
  stopped_ = true;
  stopped_cv_.notify_all();
}

// --- Node: from any thread ----------------------------------------------------------

Node::Node(engine::Replica& replica, const Identity& self, NodeOptions options)
    : core_(std::make_shared<Core>(replica, self, std::move(options))) {}

Node::~Node() { Stop(); }

void Node::SetEventCallback(std::function<void(const NodeEvent&)> fn) {
  std::lock_guard lock(core_->mu_);
  core_->callback_ = std::move(fn);
}

int Node::event_fd() const { return core_->event_fd_; }

std::vector<NodeEvent> Node::DrainEvents() {
  std::lock_guard lock(core_->mu_);
  std::vector<NodeEvent> out(core_->events_.begin(), core_->events_.end());
  core_->events_.clear();
  uint64_t n;
  if (core_->event_fd_ >= 0 && ::read(core_->event_fd_, &n, sizeof n) < 0) {
    // EAGAIN: nothing was pending.
  }
  return out;
}

Status Node::Start() {
  Core& c = *core_;
  {
    std::lock_guard lock(c.mu_);
    if (c.started_ || c.start_failed_ || c.starting_)
      return Status::Invalid("a node starts only once");
    c.starting_ = true;  // a Start() racing this one on another thread fails
  }
  // A node that failed to start never runs: it holds the replica no longer, so another
  // may start on it (a free port, say) before this one is freed.
  Status st = Launch();
  if (!st.ok()) {
    c.opt_.hold_while_running.reset();
    std::lock_guard lock(c.mu_);
    c.start_failed_ = true;
  }
  return st;
}

Status Node::Launch() {
  Core& c = *core_;
  const NodeOptions& o = c.opt_;
  std::string host;
  uint16_t port;
  for (const auto& a : o.peers) TANDEM_RETURN_IF_ERROR(ParseHostPort(a, &host, &port));
  if (!o.listen.empty()) TANDEM_RETURN_IF_ERROR(ParseHostPort(o.listen, &host, &port));
  if (o.discover && o.listen.empty())
    return Status::Invalid("discovery needs a listen address (peers dial the announced port)");
  if (o.mode == NodeMode::kInterval && (o.interval_s <= 0 || o.peers.empty()))
    return Status::Invalid("interval mode needs an interval and at least one peer");
  if (o.mode == NodeMode::kLive && o.listen.empty() && o.peers.empty() && !o.discover)
    return Status::Invalid("a live node needs a listen address or a peer");
  if (o.idle_timeout_s < 1 || o.keepalive_s < 1 || o.stop_timeout_ms < 0)
    return Status::Invalid("timeouts must be positive");
  // A peer's Hello says what this node accepts, which older builds read only as a list.
  if (o.receive.Excludes())
    return Status::Invalid("the receive filter lists the collections taken, or is all of them");
  InitCrypto();
  if (o.key_grace_s < 0) return Status::Invalid("the key grace period cannot be negative");
  TANDEM_ASSIGN_OR_RETURN(auto keys, LoadGroupKeys(o.files));
  c.group_key_ = keys.current;
  c.retired_keys_ = keys.previous;
  TANDEM_ASSIGN_OR_RETURN(c.join_, LoadJoin(o.files));
  // This device's record names the replica it syncs as (a restore makes a new one).
  TANDEM_ASSIGN_OR_RETURN(auto meta, c.replica_.Meta());
  c.PublishBinding();
  if (Status st = NoteReplica(c.replica_, c.self_device_, meta.id); !st.ok())
    c.Log("cannot record this replica in the trust set: " + st.ToString(), LogLevel::kError);
  // The founder of a group from before statements signs its trust set (RefreshTrust
  // then requires bound replicas if it can).
  if (Status st = SignLegacyTrust(c.replica_, o.files, c.self_, WallMs()); !st.ok())
    c.Log("cannot sign the trust set: " + st.ToString(), LogLevel::kError);
  c.RefreshTrust();
  if (!o.listen.empty()) TANDEM_RETURN_IF_ERROR(c.Bind());
  c.started_ms_ = WallMs();
  c.RefreshSnapshot(true);
  std::lock_guard lock(c.mu_);
  c.started_ = true;
  c.work_guard_.emplace(c.work_io_->get_executor());
  c.worker_ = std::thread([core = core_.get()] { core->work_io_->run(); });
  c.thread_ = std::thread([core = core_] { core->Run(); });
  return Status::Ok();
}

void Node::Stop() {
  Core& c = *core_;
  std::unique_lock lock(c.mu_);
  if (!c.started_ || c.stopped_) return;
  if (c.io_alive_) asio::post(c.io_, [core = core_] { core->Stop(); });
  if (std::this_thread::get_id() == c.thread_.get_id()) return;  // from a callback
  c.stopped_cv_.wait(lock, [&] { return c.stopped_; });
  lock.unlock();
  std::lock_guard join(c.join_mu_);
  if (c.thread_.joinable()) c.thread_.join();
}

bool Node::Wait(int timeout_ms) {
  Core& c = *core_;
  std::unique_lock lock(c.mu_);
  if (!c.started_) return true;
  if (std::this_thread::get_id() == c.thread_.get_id()) return c.stopped_;
  auto done = [&] { return c.stopped_; };
  if (timeout_ms < 0)
    c.stopped_cv_.wait(lock, done);
  else if (!c.stopped_cv_.wait_for(lock, milliseconds(timeout_ms), done))
    return false;
  return true;
}

NodeSnapshot Node::Snapshot() const {
  std::lock_guard lock(core_->mu_);
  return core_->snapshot_;
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kInfo:
      break;
  }
  return "info";
}

Status ParseHostPort(const std::string& s, std::string* host, uint16_t* port) {
  // Host names are ASCII (an international one in its punycode form); nothing else is
  // quoted back, nor reaches a status or an event that reports it.
  for (unsigned char ch : s)
    if (ch <= ' ' || ch >= 0x7f)
      return Status::Invalid("an address is HOST:PORT in printable ASCII, without spaces");
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

}  // namespace tandem::net
