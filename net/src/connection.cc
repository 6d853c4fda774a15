#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>

namespace tandem::net {

// g++ 12 reports -Wmismatched-new-delete for the frames of the coroutines below in some
// builds: Asio's awaitable frames pair their own operator new and delete; a known false
// positive (as in dialer.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

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
  NoteFailure(why);
  // A session that began ends with kDisconnected (carrying this); before that, it is
  // an error of its own.
  if (!connected_)
    d_.Emit({NodeEventKind::kError, peer_key_ ? DeviceId(*peer_key_) : "", address_, why});
  Close();
}

void Conn::NoteFailure(const std::string& why) {
  failed_ = true;
  error_ = why;
  if (status_) {
    ++status_->errors;
    status_->last_error = why;
  }
  d_.Log("connection " + Who() + " ended: " + why, LogLevel::kWarn);
}

namespace {
// The reason label of a refusal, for metrics (the message says it in full).
std::string RefusalReason(const std::string& why) {
  if (why.find("revoked") != std::string::npos) return "revoked";
  if (why.find("not a member") != std::string::npos) return "not_member";
  if (why.find("replayed") != std::string::npos) return "replay";
  if (why.find("invite") != std::string::npos) return "invite";
  return "handshake";
}
}  // namespace

void Conn::Refuse(const std::string& why) {
  d_.CountRefusal(RefusalReason(why));
  if (status_) {
    ++status_->errors;
    status_->last_error = "refused: " + why;
  }
  d_.Log("refused " + Who() + ": " + why, LogLevel::kWarn);
  d_.Emit({NodeEventKind::kRefused, peer_key_ ? DeviceId(*peer_key_) : "", address_, why});
  failed_ = true;
  error_ = "refused: " + why;
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

// The configured keepalive, but at most a third of either side's idle timeout (the
// peer's from its Hello): neither side's timeout may pass on an idle link, whatever the
// other's settings. (The keepalive was a whole number of seconds: 1 for a 1-second
// timeout, which then expired between keepalives.)
std::chrono::milliseconds Conn::KeepaliveInterval() const {
  int64_t ms = int64_t{d_.options().keepalive_s} * 1000;
  ms = std::min<int64_t>(ms, int64_t{d_.options().idle_timeout_s} * 1000 / 3);
  if (peer_idle_ms_ > 0) ms = std::min<int64_t>(ms, peer_idle_ms_ / 3);
  return std::chrono::milliseconds(std::max<int64_t>(ms, 100));
}

void Conn::Send(std::vector<engine::Message>& out) {
  messages_out_ += out.size();
  for (auto& m : out) {
    // Our Hello says our idle timeout: the peer keeps us fed with keepalives.
    if (auto* h = std::get_if<engine::Hello>(&m))
      h->idle_timeout_ms = static_cast<uint32_t>(d_.options().idle_timeout_s) * 1000;
    auto bytes = EncodeMessage(m, {peer_features_});
    if (!bytes.ok()) return Fail(bytes.status().message());
    if (const auto* b = std::get_if<engine::DeltaBatch>(&m))
      send_window_.Sent(b->cursor, bytes->size(), Seconds());
    Enqueue(*bytes, false);
  }
  out.clear();
}

awaitable<void> Conn::StartSession() {
  std::vector<engine::Message> out;
  // On the storage worker: the session reads the replica as it starts. What the peer
  // may read is taken once, with the send filter it shapes (CheckTrust compares later
  // changes with it).
  engine::CollectionFilter reads;
  std::unique_ptr<engine::Session> session;
  Status st = co_await d_.OnWorker([&]() -> Status {
    reads = d_.ReadableBy(*peer_key_);
    session =
        std::make_unique<engine::Session>(d_.replica(), d_.SessionOptionsFor(*peer_key_, reads));
    session->set_window(send_window_.window());
    return session->Start(&out);
  });
  if (!st.ok()) throw std::runtime_error(st.ToString());
  // Back on the node thread, which reads them (CheckTrust, Poll).
  reads_ = std::move(reads);
  session_ = std::move(session);
  Send(out);
  // A change of the trust set while the session started was not judged: it is now.
  CheckTrust();
}

void Conn::Evict() {
  if (closed_ || evicted_) return;
  evicted_ = true;
  failed_ = true;
  error_ = "evicted: too many connections without a finished handshake";
  const std::string busy = BusyFrame();
  boost::system::error_code ec;
  sock_.non_blocking(true, ec);
  sock_.write_some(asio::buffer(busy), ec);  // best effort: the socket is fresh and empty
  d_.CountRefusal("busy");
  Close();
}

void Conn::Finish(std::string_view why) {
  if (closed_ || final_queued_) return;
  if (!sealer_) return Close();
  Enqueue(why, true);
  Touch(kCloseTimeout);
}

// On the storage worker; one poll at a time per connection (another request while one
// runs makes it go round again).
void Conn::Poll() {
  if (closed_ || final_queued_ || !session_) return;
  if (polling_) {
    repoll_ = true;
    return;
  }
  polling_ = true;
  asio::co_spawn(
      sock_.get_executor(),
      [self = shared_from_this()]() -> awaitable<void> {
        do {
          self->repoll_ = false;
          std::vector<engine::Message> out;
          SessionView view;
          Status st = co_await self->d_.OnWorker([&]() -> Status {
            Status s = self->session_->Poll(&out);
            view = ViewOf(*self->session_);
            return s;
          });
          self->view_ = view;
          if (self->closed_ || self->final_queued_) break;
          self->Judged();
          if (!st.ok()) {
            self->Fail(st.ToString());
            break;
          }
          self->Send(out);
          self->AfterProgress();
        } while (self->repoll_);
        self->polling_ = false;
      },
      asio::detached);
}

// "Last sync" is the last CaughtUp received: at that moment we held everything the peer
// had when it answered our request. The first exchange of CaughtUps both ways is logged.
// (In live mode the strict caught_up() holds only between bursts of changes.)
void Conn::AfterProgress() {
  const auto& s = view_.stats;
  if (s.caught_up_received > caught_up_seen_) {
    caught_up_seen_ = s.caught_up_received;
    if (status_) status_->last_sync_ms = WallMs();
  }
  if (!reported_caught_up_ && s.caught_up_received > 0 && s.caught_up_sent > 0) {
    reported_caught_up_ = true;
    UpdateStatus();
    d_.Log("caught up with " + Who() + ": " + std::to_string(s.fields_applied) +
           " fields received, " + std::to_string(s.fields_sent) + " sent" +
           (s.fields_withheld ? ", " + std::to_string(s.fields_withheld) + " withheld" : ""));
    if (s.rebased)
      d_.Log("rebased on " + Who() + ", which had collected deletions this replica missed: " +
             std::to_string(s.rebased_fields) + " field states dropped what it removed");
    if (s.whole_sent)
      d_.Log(Who() +
             " had missed deletions this replica collected: sent it the whole state to "
             "rebase on");
    NodeEvent e{NodeEventKind::kCaughtUp, DeviceId(*peer_key_), address_, ""};
    e.fields_received = s.fields_applied;
    e.fields_sent = s.fields_sent;
    d_.Emit(std::move(e));
  }
  // The two replicas' data differed where their version vectors agree (one lacks what
  // its vector claims): the next session exchanges whole states.
  if (!s.states_differ.empty() && !differ_logged_) {
    differ_logged_ = true;
    std::string list;
    for (const auto& c : s.states_differ) list += (list.empty() ? "" : ", ") + c;
    d_.Log("data differs from " + Who() + " in " + list +
               " although both hold the same events by their version vectors: " +
               (view_.sync_again ? "syncing again, to exchange whole states"
                                 : "a whole exchange did not mend it, left as it is"),
           LogLevel::kWarn);
  }
  if (s.repaired && !repair_logged_) {
    repair_logged_ = true;
    d_.Log("took " + Who() + "'s whole state in, to mend data that differed");
  }
  // A field state too large to send (or to send this peer) holds nothing else back.
  for (; withheld_logged_ < s.withheld.size(); ++withheld_logged_)
    d_.Log(s.withheld[withheld_logged_] + " (to " + Who() + "); the other fields still go");
  if (s.blobs_received > blobs_logged_in_ || s.blobs_sent > blobs_logged_out_) {
    UpdateStatus();
    if (s.blobs_received > blobs_logged_in_)
      d_.Log("received " + std::to_string(s.blobs_received - blobs_logged_in_) + " blob" +
             (s.blobs_received - blobs_logged_in_ == 1 ? "" : "s") + " from " + Who() + " (" +
             std::to_string(s.blob_bytes_received) + " bytes this session)");
    if (s.blobs_sent > blobs_logged_out_)
      d_.Log("sent " + std::to_string(s.blobs_sent - blobs_logged_out_) + " blob" +
             (s.blobs_sent - blobs_logged_out_ == 1 ? "" : "s") + " to " + Who());
    blobs_logged_in_ = s.blobs_received;
    blobs_logged_out_ = s.blobs_sent;
  }
  if (d_.close_when_caught_up() && view_.caught_up) Finish();
}

void Conn::Judged() {
  if (view_.capped_at && view_.capped_at != judge_asked_at_) {
    judge_asked_at_ = view_.capped_at;
    d_.Notify();
  }
}

void Conn::CheckTrust() {
  if (closed_ || !peer_key_ || !session_) return;
  if (d_.TrustOf(*peer_key_) == Trust::kRevoked) {
    Refuse("the device has been revoked");
    return;
  }
  // What it may read changed: a new session sends by the new permissions. The dialer
  // dials again; the side dialed ends the session with a final frame after what it had
  // queued (read before the change was judged, so under permissions the peer had), and
  // the dialer, ended before it caught up, dials again too.
  if (!reread_ && !(d_.ReadableBy(*peer_key_) == reads_)) {
    d_.Log("permissions of " + Who() + " changed: " +
           (initiator_ ? "reconnecting" : "ending the session (a new one applies them)"));
    reread_ = true;
    if (initiator_)
      Close();
    else
      Finish(kEndedForPermissions);
  }
}

std::optional<uint64_t> CountLog(engine::Replica& r, uint64_t since, uint64_t cap) {
  auto txn = r.store().BeginRead();
  if (!txn.ok()) return std::nullopt;
  uint64_t n = 0;
  if (!(*txn)->CountLog(since, cap, &n).ok()) return std::nullopt;
  return n;
}

void Conn::UpdateStatus() {
  if (!status_) return;
  status_->bytes_in += bytes_in_;
  status_->bytes_out += bytes_out_;
  status_->messages_in += messages_in_;
  status_->messages_out += messages_out_;
  bytes_in_ = bytes_out_ = messages_in_ = messages_out_ = 0;
  if (session_) {
    // Totals over sessions: add what this session did since the last update.
    const auto& s = view_.stats;
    status_->fields_sent += s.fields_sent - counted_.fields_sent;
    status_->fields_received += s.fields_applied - counted_.fields_applied;
    status_->fields_refused += s.fields_refused - counted_.fields_refused;
    status_->fields_quarantined += s.fields_quarantined - counted_.fields_quarantined;
    if (s.rebased && !counted_.rebased) ++status_->rebases;
    if (s.whole_sent && !counted_.whole_sent) ++status_->rebases_served;
    if (s.states_compared && !counted_.states_compared) ++status_->states_compared;
    if (!s.states_differ.empty() && counted_.states_differ.empty()) ++status_->states_differed;
    status_->blobs_received += s.blobs_received - counted_.blobs_received;
    status_->blobs_sent += s.blobs_sent - counted_.blobs_sent;
    status_->blob_bytes_received += s.blob_bytes_received - counted_.blob_bytes_received;
    status_->blob_bytes_sent += s.blob_bytes_sent - counted_.blob_bytes_sent;
    counted_ = s;
    if (view_.peer) status_->replica_id = view_.peer->Hex();
  }
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
      if (final_queued_ && session_ && view_.complete)
        Close();  // we said goodbye; the peer did not answer in time
      else
        Fail(mid_frame_ ? "timed out waiting for the rest of a frame (a damaged length, or "
                          "a link that all but stopped)"
                        : "timed out waiting for the peer");
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
        wake_.expires_after(KeepaliveInterval());
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

awaitable<Status> Conn::HandleFrame(std::string pt) {
  if (expect_welcome_) {
    expect_welcome_ = false;
    // The group key; then, in a group with statements, its root and the statements.
    if (pt.size() < 32 || (pt.size() > 32 && pt.size() < 64))
      co_return Status::Corrupt("the inviter's welcome is malformed");
    Key32 key;
    std::memcpy(key.data(), pt.data(), 32);
    std::optional<Key32> root;
    std::vector<std::string> statements;
    if (pt.size() >= 64) {
      root.emplace();
      std::memcpy(root->data(), pt.data() + 32, 32);
      for (size_t at = 64; at < pt.size();) {
        if (pt.size() - at < 4) co_return Status::Corrupt("the inviter's welcome is malformed");
        size_t n = 0;
        for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<uint8_t>(pt[at + i]);
        at += 4;
        if (n > pt.size() - at) co_return Status::Corrupt("the inviter's welcome is malformed");
        statements.push_back(pt.substr(at, n));
        at += n;
      }
    }
    // The files and the trust record wait for the disk: on the storage worker.
    Status st =
        co_await d_.OnWorker([&] { return d_.SaveJoined(key, *peer_key_, root, statements); });
    if (!st.ok()) co_return st;
    d_.Joined(key, *peer_key_);
    co_return Status::Ok();
  }
  if (pt.empty()) co_return Status::Ok();     // keepalive
  if (final_queued_) co_return Status::Ok();  // closing: nothing more is applied or sent
  auto msg = DecodeMessage(pt, &peer_features_);
  if (!msg.ok()) co_return msg.status().With("peer sent a malformed message");
  if (const auto* h = std::get_if<engine::Hello>(&*msg); h && h->idle_timeout_ms > 0) {
    peer_idle_ms_ = h->idle_timeout_ms;
    wake_.cancel();  // the writer waits no longer than the peer's keepalive needs
  }
  ++messages_in_;
  std::vector<engine::Message> out;
  SessionView view;
  const bool note = !noted_replica_;
  const std::string device = DeviceId(*peer_key_);
  // An acknowledgement measures the link: the window follows its bandwidth-delay product.
  std::optional<size_t> window;
  if (const auto* ack = std::get_if<engine::Ack>(&*msg))
    window = send_window_.Acked(ack->cursor, Seconds());
  // The session applies batches in fsynced transactions: on the storage worker.
  Status st = co_await d_.OnWorker([&]() -> Status {
    if (window) session_->set_window(*window);
    Status s = session_->Receive(*msg, &out);
    view = ViewOf(*session_);
    if (s.ok() && note && session_->peer())
      s = NoteReplica(d_.replica(), device, *session_->peer());
    return s;
  });
  // Without a change source (a one-shot sync) nothing else tells the node what the
  // session applied: statements among it (a revocation, a new group key) take effect now.
  const bool applied = view.stats.fields_applied > view_.stats.fields_applied;
  view_ = view;
  Judged();
  if (note && view.peer) noted_replica_ = true;
  if (!st.ok()) co_return st;
  if (applied && !d_.options().changes) d_.Notify();
  if (closed_) co_return Status::Ok();
  Send(out);
  AfterProgress();
  co_return Status::Ok();
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
    // Authenticated: no longer one of the connections pre-authentication limits may
    // evict (an invite may already be burnt for it).
    d_.HandshakeEnded(self);
    sealer_ = std::make_unique<FrameSealer>(send);
    sodium_memzero(send.data(), send.size());
    std::string header(sealer_->header());
    // The initiator's Hello, with its request, goes with its stream header: the responder
    // can start sending a round trip sooner than if it waited for the responder's header.
    if (initiator_ && !invite_mode_) {
      co_await StartSession();
      for (; !outq_.empty(); outq_.pop_front()) header += outq_.front();
    }
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
    if (invite_mode_ && !initiator_) Enqueue(d_.Welcome(), false);
    if (!session_) co_await StartSession();
    asio::co_spawn(sock_.get_executor(), Writer(), asio::detached);
    Touch(seconds(d_.options().idle_timeout_s));
    d_.Log("connected to " + Who() + (initiator_ ? " (outgoing)" : " (incoming)"));
    d_.Emit({NodeEventKind::kConnected, DeviceId(*peer_key_), address_,
             initiator_ ? "outgoing" : "incoming"});
    connected_ = true;

    std::string prefix(kFrameLengthBytes, '\0'), body, pt;
    while (!closed_) {
      co_await asio::async_read(sock_, asio::buffer(prefix), use_awaitable);
      auto n = opener_->BodyLength(prefix);
      if (!n.ok()) {
        Fail(n.status().message());
        break;
      }
      body.resize(*n);
      // Likewise, a large frame that keeps arriving restarts the read deadline, by each
      // kMidFrameProgress bytes. Not by less: a length prefix damaged on the way (its
      // bytes are authenticated only with the body) would otherwise have this side wait
      // for up to a megabyte made of the peer's keepalives, for days.
      mid_frame_ = true;
      for (size_t got = 0, since_touch = 0; got < body.size();) {
        const size_t piece = co_await sock_.async_read_some(
            asio::buffer(body.data() + got, std::min(body.size() - got, kProgressChunk)),
            use_awaitable);
        got += piece;
        since_touch += piece;
        if (since_touch >= kMidFrameProgress && !final_queued_) {
          Touch(seconds(d_.options().idle_timeout_s));
          since_touch = 0;
        }
      }
      mid_frame_ = false;
      bytes_in_ += prefix.size() + body.size();
      bool final = false;
      Status st = opener_->Open(prefix, body, &pt, &final);
      if (!st.ok()) {
        Fail(st.message());
        break;
      }
      if (final) {
        final_received_ = true;
        if (!final_queued_) {
          // Ended by the peer before this side caught up: for what this device may read
          // there (FINAL says so; a session started at once applies it), or it stops.
          // What this device may read there changed: a session started at once reads
          // it, whether this one was complete or not.
          if (session_ && pt == kEndedForPermissions) {
            ended_early_ = true;
            d_.Log(Who() + " ended the session: what this device may read there changed");
          } else if (session_ && !view_.complete) {
            NoteFailure(
                "the peer ended the session before this side caught up (it may be "
                "stopping)");
          }
          Finish();
        }
        break;
      }
      if (!final_queued_) Touch(seconds(d_.options().idle_timeout_s));
      st = co_await HandleFrame(std::move(pt));
      if (!st.ok()) {
        Fail(st.ToString());
        break;
      }
      UpdateStatus();
    }
  } catch (const boost::system::system_error& e) {
    if (!closed_) {
      // We said goodbye after a complete session, and the link closed before the
      // peer's goodbye came (a proxy or NAT that closes both ways once one side ends its
      // half): nothing is lost.
      if (e.code() == asio::error::eof && established_ && final_queued_ && session_ &&
          view_.complete)
        Close();
      else if (e.code() == asio::error::eof)
        Fail(established_ ? "the connection ended without a final frame (truncated)"
                          : "the peer closed the connection during the handshake (a wrong "
                            "group key, this device is not a member or was revoked, or the "
                            "invite was used or expired; or nothing answers behind the "
                            "address, such as a relay whose other end is gone)");
      else
        Fail(e.code().message());
    }
  } catch (const std::exception& e) {
    // A stranger's malformed handshake is a refusal (counted as one); later, a failure.
    if (!closed_ && !initiator() && !established_) {
      Refuse(e.what());
    } else if (!closed_) {
      Fail(e.what());
    }
  }
  // Let the writer flush our final frame, then close.
  if (!closed_ && writer_running_) {
    writer_done_.expires_after(kCloseTimeout);
    boost::system::error_code ec;
    co_await writer_done_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  if (!failed_ && connected_) d_.Log("disconnected from " + Who());
  Close();
  // Blob chunks checked but held for a larger transaction: stored, or a link cut every
  // time before that many arrive would never get the blob.
  if (session_) {
    Status kept = co_await d_.OnWorker([&] { return session_->StoreHeld(); });
    if (!kept.ok())
      d_.Log("cannot store the blob chunks received: " + kept.ToString(), LogLevel::kWarn);
  }
  UpdateStatus();
  if (status_) status_->connected = false;
  if (connected_) {
    NodeEvent e{NodeEventKind::kDisconnected, peer_key_ ? DeviceId(*peer_key_) : "", address_,
                error_};
    e.ok = !failed_ && view_.complete;
    e.fields_received = view_.stats.fields_applied;
    e.fields_sent = view_.stats.fields_sent;
    d_.Emit(std::move(e));
  }
  d_.Unregister(self);
  co_return !failed_ && connected_ && view_.complete;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace tandem::net
