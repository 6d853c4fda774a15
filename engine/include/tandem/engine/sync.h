// The sync session: a pure state machine (messages in, messages out) over a Replica.
// It never does I/O; net/ carries its messages over TCP, tests carry them in memory or
// through the simulator.
//
// Both sides run the same session:
//   1. Hello: replica id, protocol version, which collections each side sends and accepts.
//   2. SyncRequest{version vector, cursor}: where the sender left off in the other's log;
//      or sent inside the Hello, ahead of the other's (Hello::early).
//   3. DeltaBatch{field states, from, cursor}, contiguous (each starts where the last
//      ended, so a lost, duplicated or reordered batch is detected, not skipped), at most `window`
//      unacknowledged, leaving out every field whose events the requester's version vector already
//      covers, then CaughtUp{cursor, version vector as of the request, collected}.
//   4. The receiver applies each batch and stores the cursor in one transaction, then
//      Acks. At CaughtUp it merges the sender's version vector into its own, only if
//      nothing was filtered in that direction (a watermark must never run ahead of data).
//   5. Live sessions keep going: Poll() sends what has committed since.
// Errors (a malformed or out-of-order message, a protocol mismatch) end the session:
// the caller closes the link; nothing from an invalid message was applied.
#pragma once

#include <array>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>
#include <variant>
#include <vector>

#include "tandem/engine/replica.h"

namespace tandem::engine {

inline constexpr uint32_t kProtocolVersion = 1;
// The most a batch body may hold (by WireSizeBound), so that every encoded message fits
// the 1 MiB frame even uncompressed. A single field state larger than this travels in
// pieces (below).
inline constexpr size_t kMaxBatchBodyBound = 900 << 10;
// A field state larger than that travels in pieces of at most kPieceBytes, one per
// DeltaBatch (DeltaBatch::piece), to a peer that takes them (Hello::pieces); the
// receiver stores each (Replica::HoldPiece), so that a cut resumes at the piece it
// stopped at, and applies the state when the last arrives. At most kMaxPieceTotal bytes
// (more than a replica holds: a bound on what a peer may make the receiver store, and
// no state's size here comes near it; the receiver never decodes more than
// Replica::max_whole_state of it whole): a larger state, or one in pieces for a peer
// that cannot take them (or more than SessionOptions::max_state_bytes), is withheld
// (SessionStats::withheld) and every other field still goes; the sender's CaughtUp then
// claims none of its events, and the cursors of its batches stop before its log entry, so
// every later session offers it again: it goes once it fits (or changes and fits).
inline constexpr size_t kPieceBytes = 512 << 10;
// Batches in flight while pieces go, whatever the window: a window sized for small,
// compressible batches would hold that many pieces in memory.
inline constexpr size_t kPiecesInFlight = 4;
inline constexpr uint64_t kMaxPieceTotal = uint64_t{1} << 40;
static_assert(kPieceBytes == kBlobChunkBytes, "pieces are stored as chunks");

struct SyncRequest {
  VersionVector vv;
  uint64_t cursor = 0;  // into the receiver's change log
  // The receiver's newest event that some field state the requester holds has seen (its
  // log's hull), watermark or not: more than the receiver ever issued, or a cursor past
  // the end of its log, shows the receiver was rolled back.
  uint64_t holds_of_yours = 0;
  // Where the receiver's log ended when the requester last read it (PeerState::mark):
  // past the end of the log, or in a gap it skipped, it shows a rollback.
  uint64_t mark = 0;
  // A rebase: send every field state, from the start of the log and whatever `vv`
  // covers, so that the requester learns which fields the receiver holds at all; at
  // CaughtUp it drops what the receiver collected (Replica::Rebase).
  bool whole = false;
  // The requester holds the first `piece_offset` bytes of a field state in pieces at
  // `cursor` whose encoding hashes to `piece_digest`: if the state there is still that
  // one, its pieces resume from there (0: none held).
  uint64_t piece_offset = 0;
  BlobHash piece_digest{};
};
struct Hello {
  uint32_t protocol = kProtocolVersion;
  ReplicaId replica;
  // What this side sends to a peer of an older build (which reads no filter that leaves
  // collections out), and what it accepts.
  CollectionFilter send;
  CollectionFilter accept;
  bool pieces = false;  // this side takes a field state in pieces (DeltaBatch::piece)
  // What this side has collected (Replica::Collected). A peer whose version vector does
  // not cover it may hold what this side removed, and asks for a rebase (SyncRequest::whole).
  VersionVector collected;
  // What it collected in single collections beyond `collected` (ReadTxn::GetCollectedIn,
  // at most ReadTxn::kMaxCollectedIn): a peer that takes such a collection and does not hold
  // what that covers there asks for a rebase too, which drops it there.
  ReadTxn::CollectedIn collected_in = {};
  // This side reads `collected_in`: its early request counts only if it covers the
  // receiver's too (unset by older builds, whose rule leaves that out).
  bool reads_collected_in = false;
  bool blobs = false;  // this side takes part in blob transfer (BlobWant and the rest)
  // This side reads BlobHead::later and BlobHead::ready (unset by older builds).
  bool blob_later = false;
  // This side sends and reads Digests (unset by older builds), and asks for a comparison
  // in this session (SessionOptions::compare_states): the peer's Digests is then
  // comparable too where it can be.
  bool digests = false;
  bool compare = false;
  // The transport's idle timeout on this side, in ms (the transport sets it; 0: unsaid):
  // the peer sends keepalives often enough for it.
  uint32_t idle_timeout_ms = 0;
  // This side takes a request carried in the peer's Hello (`early`).
  bool takes_early = false;
  // This side's request, sent with its Hello instead of after the peer's, so that the
  // peer starts sending a round trip sooner. It is made for the replica `expect` (zero:
  // for any replica, as it holds nothing of the peer's log), and taken (both sides
  // decide alike, Session::EarlyTaken) only if the peer takes early requests, is that
  // replica, and `early->vv` covers what the peer collected; else the normal request
  // follows the peer's Hello.
  std::optional<SyncRequest> early = std::nullopt;
  ReplicaId expect = {};
  // What it sends to a peer that sets this too (both builds read filters that leave
  // collections out). Unset by older builds.
  std::optional<CollectionFilter> send_full = std::nullopt;
};
// Part of one field delta too large for a batch, encoded whole by EncodeDelta.
struct StatePiece {
  uint64_t total = 0;   // bytes of the whole encoding
  uint64_t offset = 0;  // of this piece in it
  std::string bytes;
  BlobHash digest{};  // Replica::Hash of the whole encoding (zero from older builds)
  bool operator==(const StatePiece&) const = default;
};
struct DeltaBatch {
  std::vector<FieldDelta> deltas;
  uint64_t from = 0;    // the sender's log position this batch starts after
  uint64_t cursor = 0;  // the sender's log position this batch reaches
  uint64_t mark = 0;    // the newest position in the sender's log as it read it
  // Instead of deltas: a piece of one field state. Its pieces come in order in
  // consecutive batches, all from the same position; all but the last have cursor ==
  // from, the last reaches past the field (unless a withheld state holds the cursor).
  std::optional<StatePiece> piece = std::nullopt;
};
struct CaughtUp {
  uint64_t cursor = 0;
  VersionVector vv;  // the sender's version vector when the request arrived
  // What the sender had collected when it sent this (empty from older builds). More than
  // its Hello said: its collection ran during the stream, and may have removed states
  // the stream then skipped (docs/design.md#collection).
  VersionVector collected;
};
struct Ack {
  uint64_t cursor = 0;
};
// Blob transfer (docs/protocol.md#blobs), beside the field states, one blob at a time
// each way: the requester asks for a blob a field of its references, from the first
// chunk it lacks; the sender answers with a BlobHead, then the chunks, at most
// kBlobWindow unacknowledged; the requester checks the chunk list against the blob's
// address and each chunk against the list, stores them, and acknowledges. Once it wants
// nothing more from this peer it says so (idle), so a one-shot sync knows when to end.
inline constexpr size_t kBlobWindow = 8;
inline constexpr size_t kBlobCommitChunks = 4;  // chunks per receiving transaction
struct BlobWant {
  BlobHash hash{};
  FieldKey ref;       // a field of the requester's that references it
  uint64_t from = 0;  // the first chunk wanted: the requester holds those before it
  bool list = false;  // the requester needs the chunk list
  bool idle = false;  // instead of a blob: the requester wants nothing more for now
};
struct BlobHead {
  BlobHash hash{};
  bool missing = false;  // the sender does not have it whole, or the field does not reference it
  uint64_t size = 0;
  std::vector<BlobHash> chunks;  // when asked for
  // With `missing`, to a peer that reads it (Hello::blob_later): the sender wants it too
  // (it is on its way here; fetched lazily here, the request made it wanted) and says
  // `ready` once it is here, or no longer referenced here.
  bool later = false;
  // Instead of an answer: a blob promised `later` may be asked for again.
  bool ready = false;
};
struct BlobChunk {
  BlobHash hash{};
  uint64_t index = 0;
  std::string bytes;
};
struct BlobAck {
  BlobHash hash{};
  uint64_t index = 0;  // every chunk up to this one is stored
};
// Comparing states (docs/design.md, Sync, "Comparing states"): once a session has done
// its job (Session::complete, but for this), each side sends one Digests, to a peer whose
// Hello offered them. It is comparable where either side asked for a comparison
// (Hello::compare), the session took and sent everything and refused nothing: then it
// says what its states mean per collection (Replica::Digests). At equal version vectors
// and hulls, different sums show that one side lacks what its vector claims (a peer
// claimed events it never delivered, say): the session ends (kBusy, Session::sync_again)
// and the next session between the two takes the peer's whole state in, on each side
// that saw the difference (`repair`: the sender did, so the receiver ends the session
// even where it did not).
struct Digests {
  bool comparable = false;  // else nothing below is said
  VersionVector vv;
  VersionVector hull;   // what the field states written have seen (ReadTxn::GetLogHull)
  bool repair = false;  // the sender saw a difference and takes the peer's whole state next
  std::map<std::string, std::array<uint8_t, 16>> sums;  // ascending, none zero
};
using Message = std::variant<Hello, SyncRequest, DeltaBatch, CaughtUp, Ack, BlobWant, BlobHead,
                             BlobChunk, BlobAck, Digests>;
const char* MessageName(const Message& m);

struct SessionOptions {
  CollectionFilter send;  // our policy toward this peer (it may leave collections out)
  // What `send` is toward a peer of an older build, which reads no filter that leaves
  // collections out: the collections there are now less those, say. Needed when `send`
  // leaves some out (unset, nothing goes to such a peer).
  std::optional<CollectionFilter> send_older;
  CollectionFilter accept;
  size_t batch_fields = 2048;      // field states per DeltaBatch at most (<= 16384, the
                                   // most a receiver accepts)
  size_t batch_bytes = 256 << 10;  // bytes per DeltaBatch body by WireSizeBound (capped
                                   // at kMaxBatchBodyBound)
  size_t window = 4;               // unacknowledged batches in flight (set_window changes it)
  // Revoked replicas and their cutoffs (asked at every batch: revocations arrive during a
  // session). A field state whose current value comes from a revoked replica's events
  // past its cutoff (CarriesEventsAfter), or whose removals only those events explain (a
  // record deletion: RemovesOnlyByEventsAfter), is refused for good, counted in
  // fields_refused; the peer's version vector is merged with those replicas' entries
  // held at the cutoff.
  std::function<std::map<ReplicaId, uint64_t>()> revoked;
  // States that carry their own proof (a replica's signed binding, say): the cutoffs do
  // not apply to them, `admit` alone judges them. None: the cutoffs apply to every state.
  std::function<bool(const FieldDelta&)> proves_itself;
  // The application's judgement of each incoming field state the filters and cutoffs
  // let through (signed system records, say); none: every one is accepted.
  AdmitFn admit;
  // States that change how the others are judged (signed statements, say): a batch that
  // brings some applies them first, in a transaction of their own that leaves the cursor
  // where it was (a cut sends the whole batch again), then calls `judgement_changed`,
  // which reads the judgement again (`revoked` is read again too), before it judges the
  // others. None: a batch is judged in its order, by what was read before it.
  std::function<bool(const FieldDelta&)> changes_judgement;
  std::function<Status()> judgement_changed;
  // The collections where `admit`, `proves_itself` and `changes_judgement` look at no
  // value, only at the states' keys, dots, timestamps, kinds and counters. There, a state
  // that arrives in pieces is judged on its outline (FieldDelta::pieces;
  // Replica::OutlinePieces), and `admit` is given the outline of the field's state here
  // (values null) as `ours`; it is stored as it came, never decoded whole, into a field
  // that holds nothing here or a state it has seen all of (TakeOver). Into a field both
  // sides wrote, once `admit` accepted it, their join is made a part at a time
  // (Replica::JoinPieces), and the state that came is given to `admit` again, against
  // the same state here, in the transaction that stores the join (the join itself, which
  // holds ours beside it, is not). A state left out or refused needs its outline alone.
  // None: wherever none of the three is set.
  std::function<bool(const std::string& collection)> judges_outlines;
  // After a batch is applied, if `admit` held a state in it (Admission::kHold) or it
  // brought one that proves itself: judges the held states again (Replica::JudgeHeld)
  // with what the batch taught, before the batch is acknowledged. None: they wait for
  // the application.
  std::function<Status()> judge_held;
  // In which collections a rebase on this peer may drop what it collected (a rebase
  // removes as a deletion by the peer would): none: every one the filters let through.
  std::function<bool(const std::string& collection)> may_rebase;
  // Whether the peer's device may write every collection. Only then does a rebase on it
  // take the peer's collected vector in, here and as proof of what the peer no longer
  // holds: that vector also covers what the peer's own writes removed, and where those
  // are refused here, so are their removals. None: it may.
  std::function<bool()> peer_writes_everywhere;
  // The greatest position of our log the peer may be sent now (asked at every batch): an
  // application that judges the peer by records that arrive in the log (a revocation, a
  // permission) says how far it has judged, so that what lands after them is not sent
  // before it has. The stream stops there, not caught up, until a later Poll. None: no
  // limit.
  std::function<uint64_t()> send_upto;
  // Which collections' blobs wait until a reader asks for them (Replica::RequestBlob):
  // none: every blob a field references is fetched as soon as the field arrives.
  std::function<bool(const std::string& collection)> lazy_blobs;
  // Send our request with our Hello (Hello::early), made for the peer replica `expect`,
  // or for any replica when `expect` is zero; off: after the peer's Hello, as before.
  bool early_request = false;
  ReplicaId expect = {};
  // The largest field state sent (encoded; at most kMaxPieceTotal, lower for tests).
  uint64_t max_state_bytes = kMaxPieceTotal;
  // And the most markers and set elements' dots (at most Replica::kMaxStateItems).
  uint64_t max_state_items = Replica::kMaxStateItems;
  // Ask for a comparison of states once caught up (Digests): a pass over every field
  // state on each side, unless nothing changed since the last one (`make bench
  // BENCH=sync` prints its cost), so a node asks now and then
  // (NodeOptions::compare_interval_s). Off, this side still compares if the peer asks.
  bool compare_states = false;
};

struct SessionStats {
  uint64_t batches_sent = 0, fields_sent = 0;
  uint64_t batches_received = 0, fields_applied = 0, fields_refused = 0;
  uint64_t fields_quarantined = 0;  // also counted in fields_refused
  uint64_t caught_up_sent = 0, caught_up_received = 0;
  uint64_t log_entries_scanned = 0;  // of our log, read to find what to send
  bool whole_sent = false;           // the peer asked for a rebase: it got our whole state
  bool rebased = false;              // we asked for one and applied it at CaughtUp
  uint64_t rebased_fields = 0;       // our field states that lost what the peer collected
  uint64_t blobs_received = 0, blob_bytes_received = 0;  // completed here (bytes: this session's)
  uint64_t blobs_sent = 0, blob_bytes_sent = 0;
  uint64_t blobs_missing = 0;  // asked for, but the peer could not send them
  // Field states not sent: too large, or in pieces for a peer that cannot take them
  // (kMaxPieceTotal). Why, for the first kMaxWithheldNamed of them.
  uint64_t fields_withheld = 0;
  std::vector<std::string> withheld;
  static constexpr size_t kMaxWithheldNamed = 8;
  bool states_compared = false;  // both sides' Digests were compared
  // ...and they differed at equal version vectors: the collections that did.
  std::vector<std::string> states_differ;
  bool repaired = false;  // this session rebased on the peer to mend such a difference
  // States in pieces joined with the field's state here a part at a time
  // (Replica::JoinPieces) and stored so.
  uint64_t pieces_joined = 0;
  // States in pieces decoded whole after all, to be applied (judged by their values, a
  // store that keeps no state out of line: Replica::DecodePieces).
  uint64_t pieces_decoded = 0;
  // States in pieces larger than the replica decodes whole (Replica::max_whole_state)
  // that would have had to be, held in the quarantine in their pieces instead.
  uint64_t pieces_held = 0;
};

class Session {
 public:
  Session(Replica& replica, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The opening message.
  Status Start(std::vector<Message>* out);
  // Handles one message from the peer; appends replies to *out.
  Status Receive(const Message& in, std::vector<Message>* out);
  // Sends local changes committed since the last CaughtUp (live mode), within the window.
  Status Poll(std::vector<Message>* out);

  // True once both sides have sent CaughtUp and every batch was acknowledged (and, where
  // both offer them, Digests went both ways): at that moment each side holds everything
  // the other had when the session began.
  bool caught_up() const;
  // Stores what the session received and checked but keeps for a larger transaction (the
  // chunks of a blob, stored kBlobCommitChunks at a time): the transport calls it once the
  // link is gone, so that a link that keeps being cut sooner still makes progress.
  Status StoreHeld();
  // Whether the session has done its job, though changes made since may be in flight:
  // the peer's latest batch was followed by its CaughtUp, it acknowledged every batch up
  // to our first CaughtUp (batches are acknowledged in order), and no blob is wanted or
  // on its way either way. A peer that ends the session then loses nothing (a live side
  // may already be sending what it applied, an empty batch that moves the peer's cursor
  // past its own changes, when a one-shot peer says goodbye); the next session sends
  // what is left.
  // Once both sides offered Digests, it waits for the peer's too.
  bool complete() const;
  const std::optional<ReplicaId>& peer() const { return peer_; }
  // What the peer holds as its request said (and its CaughtUps since): empty before it.
  const VersionVector& peer_vv() const { return peer_vv_; }
  const SessionStats& stats() const { return stats_; }
  // How many batches may be unacknowledged from now on (1 to kMaxWindow): the transport
  // sizes it to the link's bandwidth-delay product. A larger window takes effect at the
  // next Receive or Poll; a smaller one lets the batches in flight finish.
  void set_window(size_t batches);
  size_t window() const { return opt_.window; }
  static constexpr size_t kMaxWindow = 64;
  // How far into our change log the peer has acknowledged (from its request and Acks).
  uint64_t peer_acked() const { return peer_acked_; }
  // The peer showed that this replica was rolled back or copied (it holds events of ours
  // past our version vector), so the replica took a new id (Replica::RekeyIfBehind) and
  // the session ended with kBusy: the peer's cursor into our log predates the rollback.
  // What the session applied stays; sync again, under the new id.
  bool rolled_back() const { return rolled_back_; }
  // The peer's collection ran during its stream and removed deletions this replica
  // lacks (CaughtUp::collected): the session merged what it could and ended with kBusy;
  // the next session rebases.
  bool rebase_due() const { return rebase_due_; }
  // Our state and the peer's differed at equal version vectors (Digests): the session
  // ended with kBusy, and the next one with this peer rebases on its whole state.
  bool repair_due() const { return repair_due_; }
  // Any of these: a session started at once would do what this one could not.
  bool sync_again() const { return rolled_back_ || rebase_due_ || repair_due_; }
  // The stream stopped at SessionOptions::send_upto, this value, with more after it (0:
  // it did not): it goes on at a Poll once the limit has moved.
  uint64_t capped_at() const { return capped_at_; }

 private:
  Status Pump(std::vector<Message>* out);
  Status ReceiveOne(const Message& in, std::vector<Message>* out);
  Status PollOne(std::vector<Message>* out);
  void Send(DeltaBatch batch, std::vector<Message>* out);  // from our cursor to its
  void Rehold();
  // Starts sending page.large in pieces, copied from the store into a spool; or
  // withholds it; or finds it gone from that log position (changed since: a later
  // entry carries it).
  enum class Large { kPieces, kWithheld, kGone };
  Result<Large> StartPieces(const DeltaPage& page);
  Status SendPiece(std::vector<Message>* out);
  Status ReceivePiece(const DeltaBatch& b, std::vector<Message>* out);
  Status DropHeldPieces();
  // `consume`: b's deltas, which the replica may take apart (Replica::ApplyBatch).
  Status Apply(const DeltaBatch& b, std::vector<Message>* out,
               const Replica::Consumable* consume = nullptr);
  bool Sendable(const FieldKey& k) const;
  // Whether this replica holds what `collected` removed, in the collections this session
  // takes (ReplicaMeta::absorbed): else it rebases on the peer.
  bool Absorbed(const ReplicaMeta& meta, const VersionVector& collected) const;
  // The same for what the peer collected in single collections (`own`: what this replica
  // collected in them).
  bool AbsorbedIn(const ReplicaMeta& meta, const ReadTxn::CollectedIn& own,
                  const ReadTxn::CollectedIn& peer) const;
  // Our policy as a peer of an older build reads it (SessionOptions::send_older).
  CollectionFilter SendOlder() const;
  Status RolledBack();
  // Our request to `peer` from `cursor` into its log (the pieces we hold there resume).
  Result<SyncRequest> RequestFor(const ReplicaId& peer, const VersionVector& vv, uint64_t cursor,
                                 uint64_t mark);
  // Receives from where our request `req` (to peer_) asked.
  Status AdoptRequest(const SyncRequest& req);
  // Whether the early request `req`, made for `expect`, counts: the rule both sides apply.
  // `receiver_collected_in` counts only if the requester reads it (Hello::reads_collected_in).
  static bool EarlyTaken(const SyncRequest& req, const ReplicaId& expect, bool takes_early,
                         const ReplicaId& receiver, const VersionVector& receiver_collected,
                         const ReadTxn::CollectedIn* receiver_collected_in);
  Status TakeRequest(const SyncRequest& r, std::vector<Message>* out);
  // Blobs (sync_blobs.cc).
  Status ReceiveBlob(const Message& in, std::vector<Message>* out);
  Status PumpWants(std::vector<Message>* out);  // asks for the next blob, or says idle
  Status PumpBlob(std::vector<Message>* out);   // sends chunks within kBlobWindow
  Status StoreChunks(std::vector<Message>* out);

  Replica& replica_;
  SessionOptions opt_;
  SessionStats stats_;
  ReplicaId self_;
  std::optional<ReplicaId> peer_;
  CollectionFilter peer_send_, peer_accept_;
  bool started_ = false;
  bool requested_ = false;            // we sent our SyncRequest
  std::optional<SyncRequest> early_;  // the request we sent with our Hello
  VersionVector collected_;           // what our Hello said we collected
  // What we had collected in single collections then (our Hello listed what `collected_`
  // does not cover; an early request covering all of it covers that).
  ReadTxn::CollectedIn collected_in_;
  VersionVector peer_collected_;  // what the peer's Hello said it collected
  // Sending side.
  bool have_request_ = false;
  VersionVector peer_vv_;
  uint64_t send_cursor_ = 0;  // the cursor of our last batch: what the peer stores
  uint64_t read_cursor_ = 0;  // how far our log was read (past send_cursor_ when held)
  // Field states withheld and not sent since, by key: where the peer's cursor must stay
  // (before the state's log entry, so that the next session reads it again) and how far
  // our claim may go for the replicas of its context. Sending the field (it changed and
  // fits) releases it; withholding a later entry of it replaces it.
  struct Withheld {
    uint64_t hold = 0;
    std::map<ReplicaId, uint64_t> cap;
    bool unbounded = false;  // its context is not known: nothing the peer lacks is claimed
  };
  std::map<FieldKey, Withheld> withheld_;
  // From withheld_ (Rehold): no batch's cursor passes hold_.
  std::optional<uint64_t> hold_;
  uint64_t skip_to_ = 0;  // the first batch reads our log from here (Replica::SkipHeld)
  uint64_t peer_acked_ = 0;
  VersionVector snapshot_vv_;
  // And our CaughtUp claims none of their events.
  std::map<ReplicaId, uint64_t> withheld_cap_;
  bool withheld_unbounded_ = false;
  FieldKey out_piece_key_;  // the field being sent in pieces
  bool streaming_ = false;
  uint64_t capped_at_ = 0;  // capped_at()
  bool sent_caught_up_ = false;
  uint64_t batches_before_caught_up_ = 0;  // sent before our first CaughtUp
  size_t unacked_ = 0;
  std::deque<uint64_t> inflight_;  // cursors of unacknowledged batches, oldest first
  bool peer_pieces_ = false;       // the peer takes field states in pieces
  // Sending our whole state (SyncRequest::whole) until our CaughtUp: what the peer's
  // CaughtUp says it holds waits in held_back_vv_ meanwhile.
  bool whole_ = false;
  VersionVector held_back_vv_;
  // Where the peer's request said its held pieces stop (SyncRequest::piece_offset): the
  // first state sent in pieces at its cursor resumes there if its digest matches.
  uint64_t resume_cursor_ = 0, resume_offset_ = 0;
  BlobHash resume_digest_{};
  // A field state being sent in pieces (its EncodeDelta bytes, copied from the store
  // into a spool): its size, digest, and how much of it went out.
  std::shared_ptr<Spool> out_pieces_;
  uint64_t out_piece_total_ = 0;
  BlobHash out_piece_digest_{};
  uint64_t out_piece_offset_ = 0;
  uint64_t out_piece_cursor_ = 0;  // the log position past that field
  uint64_t out_piece_mark_ = 0;    // and the log's end when it was read
  // Receiving side.
  uint64_t recv_cursor_ = 0;
  // A field state arriving in pieces: how much of it is stored, its size and digest,
  // and whether this session started it (else it is left from an earlier one).
  uint64_t in_piece_held_ = 0, in_piece_total_ = 0;
  BlobHash in_piece_digest_{};
  bool in_piece_live_ = false;
  bool received_caught_up_ = false;
  bool refused_any_ = false;  // refused something: the watermark must not merge
  // Per replica, the newest of its events the field states received in this session
  // have seen: how far the peer's CaughtUp vector is borne out by what it delivered.
  std::map<ReplicaId, uint64_t> delivered_max_;
  bool filtered_any_ = false;  // ...by a policy: the peer's log is re-read when it widens
  bool from_zero_ = false;     // our request started at 0
  bool judged_out_ = false;    // the application's judgement left a state out (kFilter)
  bool filtered_in_ = false;   // a policy leaves some of the peer's data out of this stream
  CollectionFilter taken_;     // the collections this stream takes (both sides' policies)
  bool rolled_back_ = false;
  bool rebase_due_ = false;
  // Comparing states: the peer sends Digests; ours (sent) and its (received); whether
  // this session's rebase is a repair.
  bool peer_digests_ = false;
  bool peer_asks_compare_ = false;
  bool repair_only_ = false;  // this session's rebase only takes the peer's whole state in
  bool digests_sent_ = false;
  std::optional<Digests> our_digests_, peer_digests_in_;
  bool repair_due_ = false;
  bool repairing_ = false;
  bool Settled() const;  // complete(), but for Digests
  Status SendDigests(std::vector<Message>* out);
  // `end`: a difference ends the session (our Digests went out earlier).
  Status CompareDigests(bool end);
  // A rebase asked for in this session: the peer's collected vector, and (hashed) the
  // key of every field state it sent since the start of its log; how many of ours lost
  // what it collected as its states were joined (Replica::RebaseOn).
  std::optional<VersionVector> rebase_;
  // What the peer collected in single collections (Hello::collected_in), each joined
  // with rebase_: what the rebase drops there instead.
  ReadTxn::CollectedIn rebase_in_;
  std::unordered_set<uint64_t> rebase_keys_;
  uint64_t rebase_dropped_ = 0;
  // The collected vector of a rebase in this session that left it aside, and what the
  // peer collected while it streamed: every later CaughtUp of the session claims no more
  // of what they cover either.
  std::optional<VersionVector> left_aside_;
  // Blobs. Requesting: the blob being fetched, the ones this peer lacked, and whether we
  // said we want nothing more.
  bool peer_blobs_ = false;
  struct InBlob {
    BlobHash hash{};
    BlobInfo info;                  // our entry, with the chunk list once the head came
    bool head = false;              // the head arrived
    uint64_t next = 0;              // the next chunk expected
    std::vector<std::string> held;  // checked chunks not stored yet
  };
  std::optional<InBlob> in_blob_;
  std::set<BlobHash> lacking_;
  std::set<BlobHash> awaited_;    // promised later: not asked for again until ready
  bool peer_blob_later_ = false;  // the peer reads BlobHead::later and ::ready
  bool idle_sent_ = false;
  // Sending: the blob the peer asked for, and whether it wants nothing more.
  struct OutBlob {
    BlobHash hash{};
    std::vector<BlobHash> chunks;
    uint64_t size = 0;
    uint64_t next = 0, acked = 0;  // next chunk to send; chunks before `acked` are stored
    FieldKey ref;                  // the field it was asked for through
  };
  std::optional<OutBlob> out_blob_;
  bool peer_idle_ = false;
  // Blobs the peer was told come later: each gets a BlobHead::ready once it is here (or
  // no longer wanted here).
  std::set<BlobHash> owed_;
  Status PumpOwed(std::vector<Message>* out);
};

}  // namespace tandem::engine
