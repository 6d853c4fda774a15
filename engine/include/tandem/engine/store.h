// The store interface the engine needs. storage/ implements it on LMDB; MemoryStore
// (memory_store.h) implements it in memory for tests and the in-memory demo.
//
// Transactions are objects: a ReadTxn sees one consistent snapshot; a WriteTxn sees its
// own writes and is aborted by its destructor unless Commit() succeeded. One WriteTxn
// at a time per store (implementations serialise writers, across processes for LMDB).
// A transaction is used by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tandem/engine/blob.h"
#include "tandem/engine/field.h"

namespace tandem::engine {

struct StateItems;  // codec.h

// What a replica knows about itself.
// What a replica remembers about one peer it syncs with.
// Which collections: every one but those named (`all`; none named: every one), or only
// those named.
struct CollectionFilter {
  bool all = true;
  std::set<std::string> names;
  bool Allows(const std::string& c) const { return all ? names.count(c) == 0 : names.count(c) > 0; }
  // Every collection, none left out.
  bool Everything() const { return all && names.empty(); }
  // Names collections it leaves out: only builds that know such filters may read it
  // (Hello::send_full, format 12).
  bool Excludes() const { return all && !names.empty(); }
  static CollectionFilter Only(std::set<std::string> n) { return {false, std::move(n)}; }
  static CollectionFilter AllBut(std::set<std::string> n) { return {true, std::move(n)}; }
  static CollectionFilter None() { return {false, {}}; }
  // "coll1,coll2,...": those collections (each a valid name); "" is none.
  static Result<CollectionFilter> Parse(std::string_view list);
  // The collections both allow.
  static CollectionFilter Both(const CollectionFilter& a, const CollectionFilter& b);
  // Whether every collection this allows, `wider` allows too.
  bool Within(const CollectionFilter& wider) const;
  bool operator==(const CollectionFilter&) const = default;
};

struct ReplicaMeta {
  ReplicaId id;
  Hlc clock = 0;     // the last timestamp issued or observed
  VersionVector vv;  // everything this replica has; vv[id] is its last issued event
  // What sessions that left collections out bore out (docs/design.md, collection): this
  // replica holds every effect of the events `absorbed` covers in the collections `scope`
  // allows, as of `vv`'s in all. Its collection reports say both together, so that a
  // collection it does not take holds no one's collection back; a session that takes one
  // outside `scope` rebases unless `vv` alone covers what the peer collected. Empty and
  // all until a filtered session.
  VersionVector absorbed;
  CollectionFilter scope;
  // What it holds in the collections `scope` allows: `vv` and `absorbed` together (what
  // its collection reports say).
  VersionVector Holding() const {
    VersionVector held = vv;
    held.Merge(absorbed);
    return held;
  }
  bool operator==(const ReplicaMeta&) const = default;
};

// A field state arriving from a peer in pieces (sync.h), of which the first `held` bytes
// are stored (as chunks of a pending blob entry, Replica::PiecesKey): kept across
// sessions, so that a cut link resumes where it stopped.
struct PieceProgress {
  uint64_t from = 0;   // the peer's log position the state's batch starts after
  uint64_t total = 0;  // bytes of its whole encoding
  uint64_t held = 0;   // bytes stored, whole pieces of kPieceBytes
  BlobHash digest{};   // Replica::Hash of the whole encoding, as the peer said
  bool operator==(const PieceProgress&) const = default;
};

struct PeerState {
  uint64_t cursor = 0;  // how far into the peer's change log we have applied
  // The peer's version vector at its last CaughtUp; its own entry also what the peer's
  // states applied or refused since showed it had issued (Replica::ApplyBatch).
  VersionVector vv;
  uint64_t last_sync_ms = 0;
  uint64_t fields_received = 0;
  uint64_t fields_refused = 0;  // outside our accept policy
  // Some of the peer's changes at or before `cursor` were left out by a policy (ours or
  // its). Until a complete unfiltered pass from cursor 0, its version vector may not be
  // merged, so the next unfiltered session starts over from 0.
  bool filtered = false;
  // While `filtered`: the collections whose every change at or before `cursor` was taken
  // (those every session since the last pass from 0 let through). A session that lets
  // through one more (a permission or a filter widened, a collection made while a
  // session ran) starts over from 0, else that collection's earlier changes would never
  // come. Read from a state stored before it was kept: none.
  CollectionFilter received;
  // What the peer has of *our* log, from what it acknowledged by its last CaughtUp: every
  // change at or before `delivered` in a collection `delivery` allows (our send policy
  // and its accept policy together). With the version vector, this says which records
  // a peer holds (Replica::Holds) even when a filter keeps its vector behind.
  uint64_t delivered = 0;
  CollectionFilter delivery;
  // The newest position in the peer's change log when it sent the last batch we
  // applied. A peer whose log no longer reaches it, or whose log skipped it (a gap
  // where a process started), was rolled back since (Replica::RekeyIfBehind).
  uint64_t mark = 0;
  std::optional<PieceProgress> pieces;  // a state in pieces at `cursor`, partly here
  bool operator==(const PeerState&) const = default;
};

// A field state from a peer that broke its collection's rules (rules.h), or whose writer
// could not be judged yet (Admission::kHold): held here instead of applied, until
// released (applied as it is) or, if held, judged again (Replica::JudgeHeld).
struct QuarantineEntry {
  uint64_t id = 0;
  bool held = false;  // Admission::kHold, rather than the rules (reason kHeldReason)
  FieldKey key;
  ReplicaId from;  // the peer that sent it
  uint64_t received_ms = 0;
  std::string reason;
  // With `pieces`, the state is too large to hold here whole (it arrived in pieces): it
  // lies in chunks a blob entry of state kState lists (`pieces->entry`), and `state` is
  // its outline (OutlineFieldState).
  struct InPieces {
    BlobHash entry{};       // lists its chunks
    BlobHash content{};     // Replica::Hash of its delta encoding
    uint64_t size = 0;      // of that encoding
    uint8_t header = 0;     // the state's first byte
    uint64_t state_at = 0;  // where its markers start in the encoding
    bool operator==(const InPieces&) const = default;
  };
  std::optional<InPieces> pieces;
  FieldState state;
};

inline constexpr char kHeldReason[] =
    "its writer is not known here yet: held until it is, then judged again";
// The reason of a state held because this replica's own state of its field is damaged.
inline constexpr char kDamagedReason[] = "this replica's state of the field is damaged";

// An upper bound on the contexts of the change log, so that a sync can skip a prefix of
// it without reading it. `hull` joins the context of every field state written since log
// position `base` (a store from before the hull was kept knows nothing of what it wrote
// before); each checkpoint is the hull as it was when the log ended at `seq`. Every
// field at a log position in (base, seq] was written at that position, so its context is
// covered by that checkpoint's hull: a peer whose version vector covers the hull already
// holds all of it (the same test the sync applies field by field, done once).
struct LogCheckpoint {
  uint64_t seq = 0;
  VersionVector hull;
  bool operator==(const LogCheckpoint&) const = default;
};
struct LogHull {
  uint64_t base = 0;
  VersionVector hull;
  std::vector<LogCheckpoint> checkpoints;  // ascending seq, at most kMaxCheckpoints
  static constexpr size_t kMaxCheckpoints = 16;

  // Records the hull at log position `seq`, dropping the checkpoint that adds least
  // (the one whose neighbours are closest) when there are too many.
  void Checkpoint(uint64_t seq);
  // Where a peer whose version vector is `vv` and whose cursor into this log is `cursor`
  // may start reading: the furthest checkpoint past the cursor whose hull vv covers, or
  // `cursor` itself.
  uint64_t SkipFor(const VersionVector& vv, uint64_t cursor) const;
  bool operator==(const LogHull&) const = default;
};

class ReadTxn {
 public:
  virtual ~ReadTxn() = default;
  virtual Status GetMeta(ReplicaMeta* out) = 0;
  // Sets *out to nullopt when the field has no state.
  virtual Status GetField(const FieldKey& key, std::optional<FieldState>* out) = 0;
  // The same for what must go on past a field damaged on disk (kCorrupt): that field
  // reads as having no state, and *damage (when not null) gets why.
  Status GetFieldOrDamaged(const FieldKey& key, std::optional<FieldState>* out, Status* damage);
  // All fields of a record (empty if none). *latest (if not null) gets the change-log
  // seq of the record's newest change (0 if none). `out` may be null: then only the seqs
  // are read, which is cheaper.
  virtual Status GetRecord(std::string_view collection, std::string_view record, RecordState* out,
                           uint64_t* latest) = 0;
  // Records of a collection whose id sorts after `after` (bytewise), in id order, until
  // fn returns false. The RecordState is the callee's to move from.
  // With `damaged`, a field damaged on disk (kCorrupt) is passed to it and left out of
  // its record, instead of ending the scan with that error. With `outlines`, a state
  // stored out of line (WriteTxn::PutFieldOutOfLine), or a large one in line where a
  // store can read it so, is not decoded whole: its record holds its outline
  // (OutlineFieldState), and its key goes to `outlines` first.
  using RecordFn = std::function<bool(const std::string& id, RecordState& state)>;
  using DamagedFn = std::function<void(const FieldKey& key, const Status& why)>;
  using OutlineFn = std::function<void(const FieldKey& key)>;
  virtual Status ScanRecords(std::string_view collection, std::string_view after,
                             const RecordFn& fn, const DamagedFn* damaged = nullptr,
                             const OutlineFn* outlines = nullptr) = 0;
  // Hands a field's state to `items` a marker and an element at a time (StateItems), as
  // stored: a store that can never decodes it whole. NotFound when it has none.
  virtual Status ReadFieldItems(const FieldKey& key, const StateItems& items) = 0;
  // A field's outline (OutlineFieldState), its items handed to `items` (if not null) in
  // the same pass, the state never decoded whole: one in line is read from its stored
  // bytes. NotFound when it has none; Corrupt when it is damaged, or not in the order
  // every encoder writes; Unsupported where a store cannot (then read it whole).
  virtual Status ReadFieldOutline(const FieldKey& key, const StateItems* items,
                                  FieldState* out) = 0;
  // Every collection that has at least one field state, sorted.
  virtual Status ListCollections(std::vector<std::string>* out) = 0;
  // Change-log entries after `since`, ascending, until fn returns false. Each field
  // appears once, at the position of its latest change.
  using LogFn = std::function<bool(uint64_t seq, const FieldKey& key)>;
  virtual Status ScanLog(uint64_t since, const LogFn& fn) = 0;
  // The same with each field's state, which fn may move from. A store may keep entries a
  // later write of their field made stale (and remove them later): it passes them with
  // a null state, so that a reader's position passes them too (ScanLogDeltas, every
  // state decoded).
  using LogFieldFn = std::function<bool(uint64_t seq, const FieldKey& key, FieldState* state)>;
  Status ScanLogFields(uint64_t since, const LogFieldFn& fn);
  // The same, except that a state whose delta encoding (EncodeDelta) is over `large`
  // bytes is not decoded: fn gets a null state and `large` set to its context and size
  // (for the sync to read it in pieces with ReadDelta). Both null: a stale entry.
  // A live entry whose stored bytes are damaged (they fail their checksum, or do not
  // decode) comes as a LargeState marked `damaged`, with neither context nor size, so
  // that a reader may pass it by; ScanLogFields refuses it.
  struct LargeState {
    VersionVector ctx;
    uint64_t size = 0;  // of its delta encoding
    bool damaged = false;
  };
  using LogDeltaFn = std::function<bool(uint64_t seq, const FieldKey& key, FieldState* state,
                                        const LargeState* large)>;
  virtual Status ScanLogDeltas(uint64_t since, uint64_t large, const LogDeltaFn& fn) = 0;
  // A field's state as EncodeDelta encodes it, read a window at a time and never decoded
  // or held whole: appends bytes [offset, offset + n) of it to `out` (fewer at its end),
  // and sets *size to its size and *seq to the field's change-log position (the same
  // position, the same bytes). With `check`, the stored bytes are first verified against
  // their checksum, a pass over all of them. NotFound when the field has no state.
  virtual Status ReadDelta(const FieldKey& key, uint64_t offset, size_t n, bool check,
                           uint64_t* size, uint64_t* seq, std::string* out) = 0;
  // How many changes come after `since`, counting to `cap` at most: at least the fields
  // ScanLog hands out, at most one per write (a store may count its stale entries). The
  // default counts ScanLog's.
  virtual Status CountLog(uint64_t since, uint64_t cap, uint64_t* out);
  // The sequence number of the newest change-log entry (0 if none).
  virtual Status LastLogSeq(uint64_t* out) = 0;
  // Whether no entry of this log ever had position `seq`: it lies in a gap the log
  // skipped where a process started writing (storage::FirstLogSeq). Only recent gaps
  // are known; a store that never skips says false.
  virtual Status InLogGap(uint64_t seq, bool* out) = 0;
  // The stored state of a peer; a default PeerState if there is none.
  virtual Status GetPeer(const ReplicaId& peer, PeerState* out) = 0;
  virtual Status ListPeers(std::vector<std::pair<ReplicaId, PeerState>>* out) = 0;
  // Quarantined field states (encoded QuarantineEntry), by ascending id, until fn
  // returns false.
  using QuarantineFn = std::function<bool(uint64_t id, std::string_view entry)>;
  virtual Status ListQuarantine(const QuarantineFn& fn) = 0;
  // Fields whose incoming state this replica refused for good while its own state of
  // the field had not seen all the refused context had: per field, what it had not seen
  // (Replica::NoteRefused, CapByRefused). At most one record per field.
  using RefusedFn = std::function<bool(const FieldKey& key, const VersionVector& unseen)>;
  virtual Status ListRefused(const RefusedFn& fn) = 0;
  virtual Status GetRefused(const FieldKey& key, std::optional<VersionVector>* out) = 0;
  virtual Status GetLogHull(LogHull* out) = 0;
  // What collection has removed: every field state without a marker whose context this
  // vector covered may be gone (Replica::Collect). Empty if nothing was ever collected.
  virtual Status GetCollected(VersionVector* out) = 0;
  // What collection removed in single collections beyond GetCollected: a replica that
  // leaves collections out collects in those it takes by what its filtered sessions
  // bore out there (ReplicaMeta::absorbed), which holds for no other collection. Empty
  // if it never did.
  using CollectedIn = std::map<std::string, VersionVector, std::less<>>;
  static constexpr size_t kMaxCollectedIn = 1024;  // collections; more are not collected so
  virtual Status GetCollectedIn(CollectedIn* out) = 0;
  // Blobs (blob.h). A blob's entry (complete, wanted, or a pending write under its
  // temporary key); nullopt if there is none.
  virtual Status GetBlob(const BlobHash& hash, std::optional<BlobInfo>* out) = 0;
  // Blob entries, until fn returns false: all of them, or only the wanted ones (cheap
  // when there are none).
  using BlobFn = std::function<bool(const BlobHash& hash, const BlobInfo& info)>;
  virtual Status ScanBlobs(bool wanted_only, const BlobFn& fn) = 0;
  // A stored chunk by its hash; *found is false when there is none.
  virtual Status GetChunk(const BlobHash& hash, std::string* out, bool* found) = 0;
  // The hashes of the stored chunks after `after` (all, if null), ascending, until fn
  // returns false.
  virtual Status ScanChunks(const BlobHash* after,
                            const std::function<bool(const BlobHash&)>& fn) = 0;
};

class WriteTxn : public ReadTxn {
 public:
  virtual Status PutMeta(const ReplicaMeta& meta) = 0;
  // Stores the field state and moves the field to the head of the change log (and joins
  // its context into the log's hull).
  virtual Status PutField(const FieldKey& key, const FieldState& state) = 0;
  // The same, free to take `state` apart as it writes it (its markers and elements; its
  // context stays): a large state is then not held twice, decoded and encoded. Failing
  // with kBusy (the store must grow first), it has taken nothing.
  virtual Status PutField(const FieldKey& key, FieldState&& state) {
    return PutField(key, static_cast<const FieldState&>(state));
  }
  // Stores a field state held as the bytes of its delta encoding (EncodeDelta's), kept
  // out of line in the chunks the blob entry `entry` lists (state kState: the caller
  // writes it in the same transaction), its markers from byte `at` on; `ctx` is its
  // context and `header` its first byte. The caller checked those bytes: a valid state,
  // in canonical order. Reads decode it from there; replacing or removing the value
  // removes the entry (whose chunks collection then frees). *stored false (and nothing
  // written) where the store keeps no state out of line.
  virtual Status PutFieldOutOfLine(const FieldKey& key, const VersionVector& ctx, uint8_t header,
                                   const BlobHash& entry, uint64_t at, bool* stored) {
    (void)key, (void)ctx, (void)header, (void)entry, (void)at;
    *stored = false;
    return Status::Ok();
  }
  // Records the log's hull as it is now, at the newest log position (LogHull::Checkpoint).
  virtual Status CheckpointLog() = 0;
  virtual Status PutPeer(const ReplicaId& peer, const PeerState& state) = 0;
  // A fresh quarantine id (1, 2, ...; never one used before, even once dropped).
  virtual Status TakeQuarantineId(uint64_t* out) = 0;
  virtual Status PutQuarantine(uint64_t id, std::string_view entry) = 0;
  virtual Status DeleteQuarantine(uint64_t id) = 0;
  virtual Status PutRefused(const FieldKey& key, const VersionVector& unseen) = 0;
  virtual Status DeleteRefused(const FieldKey& key) = 0;
  // Removes the field's state, leaving its change-log entry stale, unless that entry is
  // the newest in the log (its position must not be handed out again): *deleted says
  // which.
  virtual Status DeleteField(const FieldKey& key, bool* deleted) = 0;
  virtual Status PutCollected(const VersionVector& collected) = 0;
  // Joins `with` into what collection removed in `collection` (GetCollectedIn), if the
  // store may hold such a record now (an older build with the replica open would not
  // honour it) and it names at most kMaxCollectedIn collections: *stored says whether it
  // did.
  virtual Status RaiseCollectedIn(const std::string& collection, const VersionVector& with,
                                  bool* stored) = 0;
  // Stores a blob's entry (replacing any), or removes it; chunks are separate.
  virtual Status PutBlob(const BlobHash& hash, const BlobInfo& info) = 0;
  virtual Status DeleteBlob(const BlobHash& hash) = 0;
  // Stores a chunk under its hash, which the caller has checked (Replica::Hash(bytes)).
  // Storing it again changes nothing, unless what was stored under that hash differs
  // (damaged): then these bytes mend it.
  virtual Status PutChunk(const BlobHash& hash, std::string_view bytes) = 0;
  virtual Status DeleteChunk(const BlobHash& hash) = 0;
  // Rewrites the field states and the change log densely, the same entries in the same
  // order (after collection has left their pages sparse). A store without pages does
  // nothing.
  virtual Status Repack() { return Status::Ok(); }
  virtual Status Commit() = 0;
};

// Implements every ReadTxn method by calling the method of the same name on `reader_`,
// so a store writes its read logic once, in a plain class, and shares it between its
// read and write transactions. `Base` is ReadTxn or WriteTxn; a write transaction may
// still override a read (to cache what it read, say).
template <typename Base, typename Reader>
class ReadsThrough : public Base {
 public:
  template <typename... Args>
  explicit ReadsThrough(Args&&... args) : reader_(std::forward<Args>(args)...) {}
  Status GetMeta(ReplicaMeta* out) override { return reader_.GetMeta(out); }
  Status GetField(const FieldKey& k, std::optional<FieldState>* out) override {
    return reader_.GetField(k, out);
  }
  Status GetRecord(std::string_view c, std::string_view r, RecordState* out,
                   uint64_t* latest) override {
    return reader_.GetRecord(c, r, out, latest);
  }
  Status ScanRecords(std::string_view c, std::string_view after, const ReadTxn::RecordFn& fn,
                     const ReadTxn::DamagedFn* damaged = nullptr,
                     const ReadTxn::OutlineFn* outlines = nullptr) override {
    return reader_.ScanRecords(c, after, fn, damaged, outlines);
  }
  Status ReadFieldItems(const FieldKey& key, const StateItems& items) override {
    return reader_.ReadFieldItems(key, items);
  }
  Status ReadFieldOutline(const FieldKey& key, const StateItems* items, FieldState* out) override {
    return reader_.ReadFieldOutline(key, items, out);
  }
  Status ListCollections(std::vector<std::string>* out) override {
    return reader_.ListCollections(out);
  }
  Status ScanLog(uint64_t since, const ReadTxn::LogFn& fn) override {
    return reader_.ScanLog(since, fn);
  }
  Status ScanLogDeltas(uint64_t since, uint64_t large, const ReadTxn::LogDeltaFn& fn) override {
    return reader_.ScanLogDeltas(since, large, fn);
  }
  Status ReadDelta(const FieldKey& key, uint64_t offset, size_t n, bool check, uint64_t* size,
                   uint64_t* seq, std::string* out) override {
    return reader_.ReadDelta(key, offset, n, check, size, seq, out);
  }
  Status LastLogSeq(uint64_t* out) override { return reader_.LastLogSeq(out); }
  Status InLogGap(uint64_t seq, bool* out) override { return reader_.InLogGap(seq, out); }
  Status GetPeer(const ReplicaId& p, PeerState* out) override { return reader_.GetPeer(p, out); }
  Status ListPeers(std::vector<std::pair<ReplicaId, PeerState>>* out) override {
    return reader_.ListPeers(out);
  }
  Status ListQuarantine(const ReadTxn::QuarantineFn& fn) override {
    return reader_.ListQuarantine(fn);
  }
  Status ListRefused(const ReadTxn::RefusedFn& fn) override { return reader_.ListRefused(fn); }
  Status GetRefused(const FieldKey& k, std::optional<VersionVector>* out) override {
    return reader_.GetRefused(k, out);
  }
  Status GetLogHull(LogHull* out) override { return reader_.GetLogHull(out); }
  Status GetCollected(VersionVector* out) override { return reader_.GetCollected(out); }
  Status GetCollectedIn(ReadTxn::CollectedIn* out) override { return reader_.GetCollectedIn(out); }
  Status GetBlob(const BlobHash& h, std::optional<BlobInfo>* out) override {
    return reader_.GetBlob(h, out);
  }
  Status ScanBlobs(bool wanted_only, const ReadTxn::BlobFn& fn) override {
    return reader_.ScanBlobs(wanted_only, fn);
  }
  Status GetChunk(const BlobHash& h, std::string* out, bool* found) override {
    return reader_.GetChunk(h, out, found);
  }
  Status ScanChunks(const BlobHash* after,
                    const std::function<bool(const BlobHash&)>& fn) override {
    return reader_.ScanChunks(after, fn);
  }

 protected:
  Reader reader_;
};

// Bytes set aside for a while and read back, kept out of memory where the store can
// (a file): a field state sent in pieces is copied into one as it stands when the
// first piece goes, so that writes to the field meanwhile change nothing of what the
// peer is sent, and the sender holds a piece in memory, not the state.
class Spool {
 public:
  virtual ~Spool() = default;
  virtual Status Append(std::string_view bytes) = 0;
  // Appends bytes [offset, offset + n) of what was appended to `out` (fewer at the end).
  // Once appending is done, from any number of threads at once.
  virtual Status Read(uint64_t offset, size_t n, std::string* out) = 0;
};

// A Spool in memory.
class MemorySpool : public Spool {
 public:
  Status Append(std::string_view bytes) override {
    bytes_.append(bytes);
    return Status::Ok();
  }
  Status Read(uint64_t offset, size_t n, std::string* out) override {
    if (offset < bytes_.size()) out->append(std::string_view(bytes_).substr(offset, n));
    return Status::Ok();
  }

 private:
  std::string bytes_;
};

class Store {
 public:
  virtual ~Store() = default;
  virtual Result<std::unique_ptr<ReadTxn>> BeginRead() = 0;
  virtual Result<std::unique_ptr<WriteTxn>> BeginWrite() = 0;
  // A new, empty spool, gone with the object (and with the process).
  virtual Result<std::unique_ptr<Spool>> OpenSpool() {
    return std::unique_ptr<Spool>(std::make_unique<MemorySpool>());
  }
  // A hint that pages this process has read can be dropped from its memory (they are
  // read back when needed): long walks over a large store (an import) call it now and
  // then to keep their resident memory flat. No effect on data.
  virtual void ReleaseMemory() {}
};

}  // namespace tandem::engine
