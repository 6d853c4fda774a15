// The local API of a replica: typed mutations, reads, conflicts, the change feed, and
// the exchange of field states with other replicas. Works over any Store: LMDB on
// disk (storage/) or memory (MemoryStore).
//
// Thread-safety: a Replica may be used from several threads; every call runs in its
// own store transaction (reads never block writers in LMDB; writers are serialised by
// the store). Errors are returned as Status; nothing throws.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "tandem/engine/blob.h"
#include "tandem/engine/rules.h"
#include "tandem/engine/store.h"

namespace tandem::engine {

// Milliseconds since the Unix epoch; injected so tests and the simulator control time.
using PhysicalClock = std::function<uint64_t()>;
// Fresh random replica ids; injected, as the engine has no randomness of its own.
using IdSource = std::function<ReplicaId()>;

// Gives `meta` a new replica id from `source` (nonzero, never one its version vector
// names). The old id's events stay in the version vector as a foreign replica's: the
// replica still holds them all, and its next event is (new id, 1). This is how a copied,
// restored or rolled-back replica stops issuing dots that another copy also issues.
void TakeNewReplicaId(ReplicaMeta& meta, const IdSource& source);

// Mutations inside one write transaction. Each call is one operation with its own dot
// and timestamp. Obtained from Replica::Write; valid only inside its callback.
class Batch {
 public:
  Status Put(std::string_view collection, std::string_view id, std::string_view field, Value value);
  Status Incr(std::string_view collection, std::string_view id, std::string_view field, int64_t by);
  Status Add(std::string_view collection, std::string_view id, std::string_view field,
             Value element);
  // Writes nothing when the field holds nothing (a deleted record, a field never written):
  // there is no dot of the element to drop, and a set marker would only bring the field,
  // and a deleted record with it, back as an empty set.
  Status Remove(std::string_view collection, std::string_view id, std::string_view field,
                const Value& element);
  // Makes the field an empty set, whatever it held: what it observed is removed and a set
  // marker stays (how an import writes []).
  Status EmptySet(std::string_view collection, std::string_view id, std::string_view field);
  // Deletes a live record; NotFound if it is absent or already deleted.
  Status Delete(std::string_view collection, std::string_view id);
  // The record as this batch sees it (including its own writes so far).
  Status ReadRecord(std::string_view collection, std::string_view id, RecordState* out);

 private:
  friend class Replica;
  Batch(WriteTxn& txn, ReplicaMeta& meta, const PhysicalClock& now, WritePolicy* policy)
      : txn_(txn), meta_(meta), now_(now), policy_(policy) {}
  // Makes last_ the field to operate on: the one the previous operation wrote, or
  // (after writing that one back if it changed) the field as the store holds it.
  Status Open(std::string_view collection, std::string_view id, std::string_view field);
  // After an operation on last_.state: a field just read is written now; the field the
  // previous operation wrote is held back until the batch moves on (FlushLast).
  Status Close();
  // A fresh dot and timestamp for the next operation.
  std::pair<Dot, Hlc> Step();
  Dot NextDot();
  // The policy's rules for an operation (normalising *value), and notes the record for
  // the checks at the end of the batch.
  // The collection's rules in this batch (null: none), asked of the policy once.
  Result<const CollectionRules*> RulesOf(std::string_view collection);
  Status Check(std::string_view collection, std::string_view id, std::string_view field, Op op,
               Value* value);
  // Writes what the batch holds back, then the record-level rules over every record it
  // wrote. Called before commit.
  Status Finish();
  // Writes the field held back by the last operation, if it changed since (see Open).
  Status FlushLast();
  WriteTxn& txn_;
  ReplicaMeta& meta_;
  const PhysicalClock& now_;
  WritePolicy* policy_;
  std::map<std::string, std::shared_ptr<const CollectionRules>, std::less<>> rules_;
  // (collection, record) -> fields written, for collections with rules.
  std::map<std::pair<std::string, std::string>, std::set<std::string>> written_;
  // The field the last operation wrote, as written (dirty: changed again since, not yet
  // written): repeated operations on one field cost one write. Kept when the batch
  // moves on (has_last_ false), so the next key reuses its strings' buffers.
  struct Last {
    FieldKey key;
    FieldState state;
  };
  Last last_;
  bool has_last_ = false, last_dirty_ = false;
  bool reopened_ = false;     // Open found the field the previous operation wrote
  bool opened_live_ = false;  // the field Open found is live (it has a marker)
  // This replica's last event number, kept here from the first operation on and written
  // to meta_ by Finish (a version vector lookup per operation costs more than the rest
  // of taking a dot).
  uint64_t own_seq_ = 0;
  bool own_seq_loaded_ = false;
  // The wall clock, read at the batch's first operation: its operations are one
  // transaction, and the hybrid clock orders them by its logical part (a read of the
  // clock per operation cost as much as encoding the field).
  std::optional<uint64_t> physical_ms_;
  // ValidateKey, remembering what passed (no valid name is empty): the names a batch
  // writes repeat.
  Status ValidateOnce(std::string_view collection, std::string_view id, std::string_view field);
  Status ValidateCollectionOnce(std::string_view collection);
  Status ValidateRecordOnce(std::string_view id);
  Status ValidateFieldOnce(std::string_view field);
  std::string valid_collection_, valid_record_;
  std::vector<std::string> valid_fields_;
  size_t last_valid_field_ = 0;  // where the last name was found in valid_fields_
  static constexpr size_t kValidFieldsKept = 32;
};

// A field `key` was written with a reference to a blob: if the replica has no entry for
// it, a wanted one (sync fetches it); if collection had marked it released, the mark goes.
Status NoteBlobRef(WriteTxn& txn, const FieldKey& key, const BlobRef& ref, uint64_t now_ms);
// The same for a reference this replica writes: refused (kInvalidArgument) if it names a
// blob held here whole with another size than the reference says.
Status NoteOwnBlobRef(WriteTxn& txn, const FieldKey& key, const BlobRef& ref, uint64_t now_ms);

// One entry of the change feed: the current state of a record that changed.
struct Change {
  uint64_t cursor = 0;  // resume after this to see only later changes
  std::string collection;
  std::string id;
  std::optional<Record> record;  // nullopt: the record is deleted
};
struct ChangePage {
  std::vector<Change> changes;  // ascending cursors, each record at most once
  uint64_t next_cursor = 0;     // pass as `since` to continue
};

// A field state that arrived in pieces, read to its outline (OutlineFieldState) and not
// decoded whole (Replica::OutlinePieces): its delta encoding is the pieces held from
// `peer`, stored as the chunks `chunks`, then `last`.
struct FieldDelta;

struct StateInPieces {
  ReplicaId peer;
  BlobHash entry{};  // the pending blob entry that lists its chunks
  std::vector<BlobHash> chunks;
  std::string last;    // the last piece, not stored yet
  BlobHash content{};  // Replica::Hash of the whole encoding
  uint64_t size = 0;
  uint8_t header = 0;     // the state's first byte
  uint64_t state_at = 0;  // where its markers start in the encoding
  // Set by Replica::ApplyBatch where the state must be decoded whole after all (its join
  // with the state held here is another state, or it is held or refused, or cut by
  // what either side collected), which then applies nothing and returns kUnsupported.
  // With `joins` too, the join was all that stood in the way (Replica::JoinPieces makes
  // it), dropping beside what these cover (JoinCuts: what this replica collected; in a
  // rebase, what the peer collected), of the field's state at log position `judged_at`
  // (0: none), against which it was judged.
  bool whole = false;
  bool joins = false;
  std::optional<VersionVector> cut_theirs, cut_ours;
  uint64_t judged_at = 0;
  // A join JoinPieces made of `came` and the field's state at log position `joined_at`:
  // it takes that state's place while the field stays there, `came` admitted and judged
  // again against it; else it is `stale` (judged and made again, or the pieces decoded
  // whole). Whether it changes that state, and whether it dropped something of it by
  // `cut_ours`.
  bool joined = false;
  std::shared_ptr<const FieldDelta> came;
  uint64_t joined_at = 0;
  bool changes_ours = false, dropped_ours = false;
  bool stale = false;
  // Set by a session that cannot judge or join it without decoding it whole, and may not
  // (Replica::max_whole_state): ApplyBatch holds it in the quarantine in its pieces,
  // for this reason, to be released by hand.
  std::string hold_why;
};

// A field state to send to, or received from, another replica. With `pieces`, `state`
// is the outline of the state those pieces hold.
struct FieldDelta {
  FieldKey key;
  FieldState state;
  std::shared_ptr<StateInPieces> pieces = nullptr;
};
// What a receiver does with one incoming field state.
enum class Admission {
  kAccept,
  kFilter,  // left out by a policy that may widen later: the peer's log is re-read then
  kRefuse,  // refused for good (a revoked replica's events): never asked for again
  // Its writer cannot be judged yet (who wrote it is not known here): kept aside in the
  // quarantine, out of the version vector, until Replica::JudgeHeld judges it again.
  kHold,
};
// Decides one incoming state, given what this replica holds of the field (null: nothing).
using AdmitFn = std::function<Admission(const FieldDelta&, const FieldState* ours)>;

struct DeltaPage {
  std::vector<FieldDelta> deltas;
  uint64_t next_cursor = 0;
  bool done = false;     // true when the change log holds nothing after next_cursor
  size_t scanned = 0;    // change-log entries read
  uint64_t log_end = 0;  // the newest position in the log as it was read
  bool capped = false;   // it stopped at CollectDeltas' `upto`, with more after it
  // When done: the collected vector in the same snapshot, and what was collected in
  // single collections (ReadTxn::GetCollectedIn). What collection removed by then the
  // log no longer holds, and nothing it removed later can have been read.
  VersionVector collected;
  ReadTxn::CollectedIn collected_in;
  // A field state too large for any batch (CollectDeltas' `large`), alone in its page
  // and not read: it travels in pieces, copied from the store a window at a time
  // (Replica::SpoolDelta). Its context, and its log position `seq`. Or a state whose
  // stored bytes are damaged (ReadTxn::LargeState): no context, and nothing to send.
  struct Large {
    FieldKey key;
    VersionVector ctx;
    uint64_t seq = 0;
    bool damaged = false;
  };
  std::optional<Large> large;
};

class Replica {
 public:
  // `hash` names and checks blob chunks and field-state pieces (storage::Blake2b256Parts).
  // Without `new_id`, evidence that this replica was rolled back (below) is an error
  // instead of a new replica id.
  Replica(std::unique_ptr<Store> store, PhysicalClock now, ContentHash hash,
          IdSource new_id = nullptr);
  Store& store() { return *store_; }
  // The content hash of `bytes`, and a blob's address (BlobId), with the injected hash.
  BlobHash Hash(std::string_view bytes) const { return HashOf(hash_, bytes); }
  BlobHash BlobAddress(uint64_t size, const std::vector<BlobHash>& chunks) const {
    return BlobId(hash_, size, chunks);
  }
  // The rules local writes (Write and the conveniences) must follow from now on, that
  // pick the winners of conflicting fields in reads, and that judge changes from peers
  // (ApplyBatch: quarantine); null for none.
  void SetWritePolicy(std::shared_ptr<WritePolicy> policy);

  // Rollback detection. A peer (or a field state it sends) holding more of this
  // replica's events than its version vector says it issued means the replica was
  // rolled back (a snapshot or file-level restore) or copied: its next dots would repeat
  // ones that already exist elsewhere, and peers would drop one of each pair silently.
  // So the replica takes a new replica id (TakeNewReplicaId) in the transaction that
  // sees the evidence, and carries on. Sessions end after that (their peer's cursor into
  // our change log predates the rollback): see Session::rolled_back().
  //
  // Takes a new id if the replica is still `as` and `claimed` (a count of events of
  // `as`) is more than it holds. Sets *rekeyed if the replica is no longer `as`, now or
  // because another caller already moved it on. A peer's `log_cursor` into our change
  // log, or its `log_mark` (where our log ended when it last read it, PeerState::mark),
  // past the log's end or in a gap the log skipped is evidence too: the log only grows,
  // so the peer read a log we no longer have.
  Status RekeyIfBehind(const ReplicaId& as, uint64_t claimed, bool* rekeyed,
                       uint64_t log_cursor = 0, uint64_t log_mark = 0);
  // The newest event of replica r that some field state here has seen (the log's hull:
  // an upper bound, and 0 for what a replica from before the hull was kept wrote then).
  Result<uint64_t> Held(const ReplicaId& r);
  // The same for every replica at once.
  Result<VersionVector> HeldAll();
  // A bound on the context of every field state written after log position `seq`,
  // whatever its bytes say (the hull); nullopt when the hull knows nothing there.
  Result<std::optional<VersionVector>> HeldAfter(uint64_t seq);

  Result<ReplicaMeta> Meta();

  // Runs fn in one write transaction; commits if fn returns OK, else aborts and returns
  // fn's status. Everything in one batch becomes durable (or not) together. fn may run
  // more than once (when the store must grow and retry), so it should do nothing but
  // call Batch methods.
  Status Write(const std::function<Status(Batch&)>& fn);

  // Conveniences: one operation, one transaction. Put refuses a field named twice.
  Status Put(std::string_view collection, std::string_view id,
             const std::vector<std::pair<std::string, Value>>& fields);
  Status Incr(std::string_view collection, std::string_view id, std::string_view field, int64_t by);
  Status Add(std::string_view collection, std::string_view id, std::string_view field,
             Value element);
  Status Remove(std::string_view collection, std::string_view id, std::string_view field,
                const Value& element);
  Status Delete(std::string_view collection, std::string_view id);

  // The record's live fields, or NotFound if it does not exist (never or deleted).
  Result<Record> Get(std::string_view collection, std::string_view id);
  Result<RecordState> GetState(std::string_view collection, std::string_view id);
  // Live records of a collection with id > after, in id order, until fn returns false.
  Status Scan(std::string_view collection, std::string_view after,
              const std::function<bool(const Record&)>& fn);
  // Live records of a collection, in id order, once for each of `passes` (until it
  // returns false), all from one snapshot: each pass sees the records the others saw
  // (an export's header, then its rows).
  Status ScanPasses(std::string_view collection,
                    const std::vector<std::function<bool(const Record&)>>& passes);
  Result<std::vector<std::string>> Collections();
  // Anti-entropy (docs/design.md, Sync, "Comparing states"): what this replica's
  // field states mean, summed per collection, so that two replicas whose version vectors
  // are equal can tell whether they hold the same data. A field's share is the content
  // hash of its key and operations without its context (what it holds, not what it has
  // seen; docs/protocol.md#comparing-states gives the bytes),
  // its first 16 bytes added as a 128-bit number; a state that holds nothing (a
  // tombstone without counter totals, which collection may remove at any time) adds
  // nothing. With the vector goes the log's hull (what the states written have seen): a
  // replica holding states beyond its vector (part of a session's changes, say) has a
  // hull another lacks, so sums are compared only where both agree. `exact`: no field is
  // damaged (else the sums mean nothing). One pass over every field state, kept until
  // the log or the vector moves.
  struct StateDigests {
    VersionVector vv;
    VersionVector hull;
    bool exact = false;
    std::map<std::string, std::array<uint8_t, 16>> sums;  // collections whose sum is not 0
    bool operator==(const StateDigests&) const = default;
  };
  Result<StateDigests> Digests();
  // The share of one field (zero for one that holds nothing), and a sum's update.
  // `scratch`, if given, is reused for the bytes hashed.
  std::array<uint8_t, 16> FieldDigest(const FieldKey& key, const FieldState& s,
                                      std::string* scratch = nullptr) const;
  // The same share of a field read from `txn` a marker and an element at a time
  // (ReadTxn::ReadFieldItems), its outline (OutlineFieldState) given: a state stored out
  // of line is never decoded whole for it.
  Result<std::array<uint8_t, 16>> FieldDigestInPlace(ReadTxn& txn, const FieldKey& key,
                                                     const FieldState& outline,
                                                     std::string* scratch = nullptr) const;
  static void AddDigest(std::array<uint8_t, 16>& sum, const std::array<uint8_t, 16>& add);
  // Peers whose state differed from this replica's at equal version vectors: the next
  // session with each takes its whole state in (a rebase that drops nothing), once per
  // difference. `differ`: per collection that differed, our sum and the peer's; the same
  // difference again (what the last repair with that peer left, a state one side holds
  // and the other refuses for good, say) is not repaired again. Kept in memory: a
  // restarted process finds a difference again at its next comparison.
  using Difference =
      std::map<std::string, std::pair<std::array<uint8_t, 16>, std::array<uint8_t, 16>>>;
  bool NoteDifference(const ReplicaId& peer, const Difference& differ);
  // Whether a repair is due with `peer` (none: with any), and taking it: a session that
  // rebases for it (whatever becomes of that session: a later comparison finds what is
  // left).
  bool RepairDue(const ReplicaId* peer);
  bool TakeRepair(const ReplicaId& peer);
  // The repair taken did not finish: the difference counts as new when seen again.
  void ForgetDifference(const ReplicaId& peer);
  // Fields of the record in conflict (see IsConflict), with their siblings, winner first
  // (the winner by the collection's rules, see rules.h; else the latest).
  Result<std::vector<std::pair<std::string, std::vector<Sibling>>>> Conflicts(
      std::string_view collection, std::string_view id);

  // The change feed: records changed after `since`, each once, at its latest change,
  // reading at most `limit` change-log entries.
  Result<ChangePage> Changes(uint64_t since, size_t limit);

  // Field states changed after `since` (at most `limit` log entries read), leaving out
  // those whose every event `skip` already covers. Stops before a field that would take
  // the page past `max_bytes` (by WireSizeBound), unless the page is still empty. A
  // state over `large` bytes (WireSizeBound, or its stored encoding's size, which is
  // then not decoded) ends the page as DeltaPage::large, or starts the next one. Nothing
  // past log position `upto` is read: the page then ends there (DeltaPage::capped), not
  // done.
  Result<DeltaPage> CollectDeltas(uint64_t since, size_t limit, const VersionVector* skip,
                                  size_t max_bytes = SIZE_MAX, uint64_t large = UINT64_MAX,
                                  uint64_t upto = UINT64_MAX);
  // Sync support: a state in pieces is never decoded or held whole on the sending side.
  // SpoolDelta copies its delta encoding (ReadTxn::ReadDelta), a window at a time, into
  // a spool of the store's (or one in memory, where the store cannot give or fill one)
  // and gives its size, digest (Hash) and that spool. The stored bytes are checked
  // against their checksum first. Nullopt if the field is not, or no longer, at log
  // position `seq` (it changed, and its later entry will carry it; or it is gone).
  // Over `max` bytes, only its size: not copied; nor where it was counted (`items`) over
  // `max_items` before. The state at one position is copied once: sessions that send it
  // meanwhile (a device serving many peers) share the spool (safe to read from many
  // threads), which goes with the last of them.
  struct DeltaInfo {
    uint64_t size = 0;
    BlobHash digest{};
    std::shared_ptr<Spool> spool;
    uint64_t items = 0;  // its markers and set elements' dots (0: not read)
  };
  Result<std::optional<DeltaInfo>> SpoolDelta(const FieldKey& key, uint64_t seq, uint64_t max,
                                              uint64_t max_items = UINT64_MAX);
  // Where a peer with version vector `vv` and cursor `cursor` into this log may start
  // reading it: past every entry it is known to hold already (LogHull::SkipFor), so an
  // incremental sync does not reread what the last one sent or received.
  Result<uint64_t> SkipHeld(const VersionVector& vv, uint64_t cursor);
  // Joins field states from another replica in one transaction. Validates keys first;
  // applies nothing if any is invalid. Sets *changed to the number of fields changed.
  Status ApplyDeltas(const std::vector<FieldDelta>& deltas, size_t* changed = nullptr);
  // Folds another replica's version vector into ours. Call only once everything that
  // replica had is applied (see docs/design.md: never run the watermark ahead of data).
  Status MergeVersionVector(const VersionVector& vv);

  // Collection (docs/design.md#collection). Removes the field states that read as
  // nothing (IsTombstone) and whose every event `absorbed` covers: pass what every member
  // of the group is known to hold. Only what this replica holds itself counts (`absorbed`
  // is capped by our version vector; in the collections ReplicaMeta::scope allows, by
  // what this replica holds there, ReplicaMeta::Holding). Runs in transactions of about
  // `max_fields` field states each, so writers wait at most one of them. Afterwards the replica
  // remembers what it collected (ReadTxn::GetCollected), and a peer's state for a field we hold
  // nothing of loses what that covers (DropCollected): what was collected here cannot
  // come back through a stale peer, a relay or a restored backup.
  struct CollectStats {
    uint64_t examined = 0;     // field states read
    uint64_t collected = 0;    // removed
    uint64_t bytes = 0;        // their keys and encoded states
    uint64_t kept_newest = 0;  // collectable but the newest log entry (kept for now)
    // Deleted field states not collected yet: some member has not reported holding them
    // (reports travel with sync, so a deletion waits at least a sync round).
    uint64_t waiting = 0;
    // Field values damaged on disk, passed over (`tandem check` names them). While there
    // are any, no blob is collected: what they reference is unknown.
    uint64_t damaged = 0;
    uint64_t transactions = 0;
    bool repacked = false;  // it removed a quarter or more: the tables were rewritten densely
    // Blobs: removed (no field references them, and every member holds what replaced the
    // last reference), their bytes, and the chunks freed.
    uint64_t blobs_collected = 0, blob_bytes = 0, chunks_freed = 0;
    uint64_t blobs_released = 0;  // unreferenced, waiting for every member to catch up
  };
  Status Collect(const VersionVector& absorbed, CollectStats* stats, size_t max_fields = 4096);
  // What this replica has collected (empty: nothing), as it tells its peers: what it
  // removed in every collection, and of what it removed in single collections
  // (ReadTxn::GetCollectedIn) what its version vector covers, since it holds every
  // effect of those events everywhere. `in` (if set) gets what it collected in single
  // collections, from the same snapshot.
  Result<VersionVector> Collected(ReadTxn::CollectedIn* in = nullptr);
  // Joins into `out` what `in` covers of `vv`: what was collected in single collections
  // that a replica holding `vv` holds every effect of, in every collection.
  static void JoinCollectedIn(const ReadTxn::CollectedIn& in, const VersionVector& vv,
                              VersionVector* out);
  // A rebase (docs/design.md#collection): a peer that collected `collected` sent its
  // whole state, the fields whose KeyHash is in `sent`. Every other field here, in the
  // collections `scope` allows, loses what `collected` covers (the peer removed it); this
  // replica's collected vector takes `collected` in. Returns how many field states
  // changed. Bounded transactions, as Collect.
  // `may` (if set) narrows the scope further, collection by collection. Unless `take`,
  // this replica's collected vector stays as it is, and what loses everything keeps its
  // context (a tombstone: nothing here says its events may not come again).
  // `in`: what the peer collected in single collections, each joined with `collected`,
  // dropped there instead; with `take_in`, this replica's own record of what was removed
  // in each of them that it holds (ReadTxn::GetCollectedIn) takes it in, where the
  // rebase dropped.
  Result<uint64_t> Rebase(const VersionVector& collected, bool take,
                          const std::unordered_set<uint64_t>& sent, const CollectionFilter& scope,
                          const std::function<bool(const std::string&)>& may = nullptr,
                          const ReadTxn::CollectedIn* in = nullptr, bool take_in = false,
                          size_t max_fields = 4096);
  static uint64_t KeyHash(const FieldKey& key);

  // Blobs (docs/design.md#attachments).
  //
  // Stores what `src` yields as a blob, in transactions of kBlobTxnChunks chunks, and
  // returns its reference (with media type `type`). Its content already here costs
  // nothing more. Put the reference in a field, or collection removes the blob.
  Result<BlobRef> WriteBlob(const BlobSource& src, std::string type);
  // WriteBlob, and the reference put in the field in the transaction that completes it.
  Result<BlobRef> Attach(std::string_view collection, std::string_view id, std::string_view field,
                         const BlobSource& src, std::string type);
  // The blob's bytes from `offset` on, in order, each chunk checked against its hash.
  // NotFound if the replica has no entry for it, or not all of it yet (the message says
  // how much); Corrupt if a stored chunk does not match. The sink runs with no
  // transaction open (it may write to this replica), given the chunks read
  // kReadChunksAtOnce at a time from one snapshot.
  Status ReadBlob(const BlobHash& hash, const BlobSink& sink, uint64_t offset = 0);
  static constexpr size_t kReadChunksAtOnce = 4;
  // The replica's entry for the blob, if any.
  Result<std::optional<BlobInfo>> Blob(const BlobHash& hash);
  // Asks for a wanted blob: sessions fetch it even where blobs are fetched lazily. Sets
  // *complete (if not null) when it is already here. NotFound if no field references it.
  Status RequestBlob(const BlobHash& hash, bool* complete = nullptr);
  // A complete blob whose chunk `index` does not match its hash (damaged on disk) is
  // wanted again from that chunk on, through the field `ref` (which references it), and
  // fetched from a peer like any wanted blob; the damaged chunk is written over when it
  // comes. No peer is sent what this replica cannot vouch for meanwhile.
  Status WantDamagedBlob(const BlobHash& hash, uint64_t index, const FieldKey& ref);
  static constexpr size_t kBlobTxnChunks = 16;  // 8 MiB per transaction

  // Sync support: a field state arriving from `peer` in pieces is kept as it comes, so
  // that a session cut short resumes at the piece it stopped at (PeerState::pieces).
  // HoldPiece stores the piece at `progress.held` and records the progress past it;
  // PiecesHeld gives the progress if it is still at the peer's cursor (else forgets it);
  // DecodePieces decodes the `held` bytes held, then `last`, as one field delta
  // (DecodeDelta), a piece at a time: a large state is never held whole twice, encoded
  // and decoded. First it checks that they hash to `digest` (all zero: not checked).
  // DropPieces forgets them.
  Status HoldPiece(const ReplicaId& peer, PieceProgress progress, std::string_view bytes);
  Result<std::optional<PieceProgress>> PiecesHeld(const ReplicaId& peer);
  Result<std::pair<FieldKey, FieldState>> DecodePieces(const ReplicaId& peer, uint64_t held,
                                                       std::string_view last,
                                                       const BlobHash& digest);
  Status DropPieces(const ReplicaId& peer);
  // The same pieces read as DecodePieces reads them, keeping the state's outline only
  // (OutlineDelta): a delta with `pieces` set, which ApplyBatch stores as it came when the
  // field holds nothing here, or a state it has seen all of (TakeOver; else it sets
  // `pieces->whole`). Fails, and the caller decodes
  // them whole, where their lists are not in canonical order.
  Result<FieldDelta> OutlinePieces(const ReplicaId& peer, uint64_t held, std::string_view last,
                                   const BlobHash& digest);
  // For a state in pieces whose join with the field's state here is another state, or
  // is cut by what either side collected (`pieces->joins`, set by ApplyBatch): that
  // join, of the field's state at the log position it was judged against
  // (`pieces->judged_at`; Busy where the field has moved since), made from the two
  // encodings a part at a time (JoinDeltas, with `pieces->cut_*`) into chunks of an
  // entry of its own, a few per transaction, and read to its outline as OutlinePieces
  // reads. ApplyBatch stores it in place of the field's state while the field is still
  // there (else it marks it `stale`); DropPieces drops it. Fails where either state is
  // damaged, or not in canonical order.
  Result<FieldDelta> JoinPieces(const FieldDelta& d);
  // Applies a state in pieces with `apply` (which joins the one delta it is given into
  // the replica: ApplyBatch, say). Where only its join with the field's state here stands
  // in the way (`pieces->whole` and `joins`), that join is made (JoinPieces) and applied
  // in its place, judged and made again where the field is written meanwhile, a few
  // times; *joined then. Else `apply`'s status: with `came.pieces->whole` still set, the
  // state must be decoded whole.
  using ApplyFn = std::function<Status(const std::vector<FieldDelta>&)>;
  Status ApplyJoining(const FieldDelta& came, const ApplyFn& apply, bool* joined);
  // The largest state in pieces this replica decodes whole: a larger one a session must
  // decode whole to judge or join is held in the quarantine in its pieces instead
  // (StateInPieces::hold_why), and releasing one that cannot be joined a part at a time
  // fails. Lower it to test that.
  static constexpr size_t kMaxWholeState = size_t{256} << 20;
  // The most markers and set elements' dots a state in pieces may have: its outline
  // holds each (about 100 bytes of memory apiece while it is applied). A session
  // withholds a larger one (SessionOptions::max_state_items), and refuses one that comes.
  static constexpr uint64_t kMaxStateItems = uint64_t{1} << 18;
  size_t max_whole_state() const { return max_whole_.load(); }
  void SetMaxWholeState(size_t bytes) { max_whole_.store(bytes); }
  // Sync support: stores chunks [first, first + n) of a blob, each checked against the
  // chunk list `listed` (a verified one: BlobId of it is `hash`), and brings the entry up
  // to date (complete with the last chunk), in one transaction.
  Status PutChunks(const BlobHash& hash, const BlobInfo& listed, uint64_t first,
                   const std::vector<std::string>& chunks);

  // Sync support: one batch from a peer, applied in one transaction together with the
  // new cursor into that peer's log, so a dropped link resumes exactly after it.
  // `admit` decides each delta (see Admission); *refused counts both kinds of refusal,
  // *filtered_out the kFilter ones. `taken` (none: every one) is the collections the
  // stream takes: a policy left the others' changes out (see PeerState::received).
  // *rekeyed (optional) is set when a delta showed the replica was rolled back and it
  // took a new replica id (see RekeyIfBehind); the batch is applied all the same.
  // A delta whose new operations break the collection's rules (CollectionRules::
  // CheckIncoming) is quarantined instead of applied: counted in *refused (the watermark
  // waits) and *quarantined. With `consume` (its `deltas` the same vector as `deltas`),
  // a state joined into a field that holds nothing may be taken apart as it is written
  // (a large state is not held twice); an attempt made again after that refills them.
  // `from_zero`: the batch continues a pass over the peer's log that started at cursor 0
  // in this session; once it reaches the cursor an earlier filtered session left, every
  // change at or before the cursor in the collections it takes is here: PeerState::
  // filtered is cleared if it takes every one, else PeerState::received becomes `taken`
  // (a session cut later resumes where it stopped instead of starting over again).
  struct Consumable {
    std::vector<FieldDelta>* deltas = nullptr;
    std::function<Status()> refill;
  };
  // `rebase`: the batch is part of a rebase on the peer (docs/design.md#collection), which
  // collected `collected`. Joined with the peer's state of a field we hold, in the
  // collections `may` allows (none: every one), ours also loses what that vector covers
  // and the peer's state does not hold (DropCollectedNotIn): the peer removed it, though
  // a field it wrote again after collecting the tombstone no longer shows the removal.
  // `dropped` counts the fields that lost something so.
  struct RebaseOn {
    const VersionVector* collected = nullptr;
    std::function<bool(const std::string& collection)> may;
    uint64_t dropped = 0;
    // In these collections, these instead (each covers `collected`).
    const ReadTxn::CollectedIn* collected_in = nullptr;
  };
  Status ApplyBatch(const ReplicaId& peer, const std::vector<FieldDelta>& deltas, uint64_t cursor,
                    const AdmitFn& admit, size_t* applied = nullptr, size_t* refused = nullptr,
                    const CollectionFilter* taken = nullptr, size_t* filtered_out = nullptr,
                    bool* rekeyed = nullptr, size_t* quarantined = nullptr, uint64_t mark = 0,
                    const Consumable* consume = nullptr, bool from_zero = false,
                    RebaseOn* rebase = nullptr);
  // Field states held in quarantine, oldest first.
  Result<std::vector<QuarantineEntry>> Quarantined();
  // Applies a quarantined field state as it is (joined like any change from a peer)
  // and forgets it. NotFound if there is no such entry. There is no way to drop one:
  // while held, its events stay out of this replica's version vector (so no one skips
  // them through us); to undo a bad change, release it and write over it, and the
  // correction reaches every device.
  Status ReleaseQuarantined(uint64_t id);
  // Every quarantined field state, released as above, `per_txn` in each transaction (one
  // scan of the entries in all, not one per entry). Returns how many.
  Result<uint64_t> ReleaseAllQuarantined(size_t per_txn = 1000);
  // Judges every held state (Admission::kHold) again with `admit`: one it accepts is
  // applied (under the collection's rules, as from its peer), one it refuses is refused
  // for good; the others stay held. Call it when what `admit` knows has grown.
  struct Judged {
    size_t applied = 0;
    size_t refused = 0;
    size_t held = 0;  // still
  };
  Result<Judged> JudgeHeld(const AdmitFn& admit);
  // The peer reached CaughtUp: remembers its version vector, and merges it into ours
  // when `merge` (everything it had was sent and accepted).
  // `filtered` as for ApplyBatch; a merge clears PeerState::filtered. `delivered` (when
  // known): how far the peer has acknowledged our log, and for which collections.
  // *rekeyed as for ApplyBatch, when peer_vv shows the replica was rolled back.
  // `cursor`: where the peer's CaughtUp says its log was delivered to, stored as it is
  // (ApplyBatch only raises the cursor; a session that started over from 0 may end
  // lower, before a field state the peer withheld).
  // `hold_back`: a merge leaves the entries it covers beyond ours where they are (the
  // collected vector of a rebase that left it aside); what is remembered of the peer is
  // its vector as it is.
  // `absorb`: a session that left collections out (so no merge) and refused nothing;
  // ReplicaMeta::absorbed takes `claim` for the collections `taken` allows (the scope
  // narrows to them; a pass from cursor 0 that takes one outside the scope starts both
  // over from it), less what `hold_back` covers beyond ours.
  struct Absorb {
    VersionVector claim;
    CollectionFilter taken;
    bool from_zero = false;
    const VersionVector* hold_back = nullptr;
  };
  Status CompletePeerSync(
      const ReplicaId& peer, const VersionVector& peer_vv, bool merge, bool filtered = false,
      bool* rekeyed = nullptr,
      const std::optional<std::pair<uint64_t, CollectionFilter>>& delivered = std::nullopt,
      std::optional<uint64_t> cursor = std::nullopt, const VersionVector* hold_back = nullptr,
      const Absorb* absorb = nullptr);
  // Delivery status. How many of this replica's fields a peer does not hold yet (as
  // Holds judges), in the collections it receives from us. Checks the newest
  // `max_checked` change-log entries; *exact is false when older entries were left
  // unchecked (the count is then a lower bound).
  Result<uint64_t> CountUnheld(const PeerState& peer, size_t max_checked, bool* exact);
  // Whether a peer holds the record's current state here (deleted records too: their
  // deletion): its last reported version vector covers every event in it, or it
  // acknowledged the record's latest change in our log (PeerState::delivered). NotFound
  // if this replica has no state for the record.
  Result<bool> Holds(std::string_view collection, std::string_view id, const PeerState& peer);
  // The peer acknowledged our log up to `cursor`, for the collections `delivery` allows
  // (PeerState::delivered). Writes only if that changes the stored state.
  Status RecordDelivery(const ReplicaId& peer, uint64_t cursor, const CollectionFilter& delivery);
  Result<PeerState> Peer(const ReplicaId& peer);
  Result<std::vector<std::pair<ReplicaId, PeerState>>> Peers();

  // Commit observers: called after every commit made through this object (writes,
  // applied batches, version vector merges), on the committing thread, outside any lock
  // of the replica. Keep them short (a flag, an eventfd write). An observer may still
  // run once, on another thread, while RemoveCommitObserver returns: it must own what it
  // touches. Commits by other processes are not seen here (storage/watcher.h is).
  uint64_t AddCommitObserver(std::function<void()> fn);
  void RemoveCommitObserver(uint64_t token);

 private:
  // Runs a whole write transaction again while the store reports kBusy (see replica.cc).
  static Status Retrying(const std::function<Status()>& attempt);
  // Visits every field state (of the collections `scope` allows) in write transactions
  // of about `max_fields` each: begin at the start of each (it may run again: kBusy),
  // visit for each field (no writes: the scan is open), end before the commit, committed
  // after it. A field damaged on disk is passed to `damaged` and not visited (with no
  // `damaged`, it ends the sweep with its error).
  struct SweepFns {
    std::function<Status(WriteTxn&)> begin;
    std::function<Status(const FieldKey&, const FieldState&)> visit;
    std::function<Status(WriteTxn&)> end;
    std::function<void()> committed;
    ReadTxn::DamagedFn damaged;
    // `visit` may get a state stored out of line as its outline (ReadTxn::ScanRecords):
    // enough to tell a tombstone and its blob references, never decoded whole.
    bool outlines = false;
  };
  Status Sweep(const CollectionFilter& scope, size_t max_fields, const SweepFns& fns);
  // The blob half of Collect: releases unreferenced blobs, removes released ones that
  // `absorbed` covers, abandoned pending writes, and chunks no entry lists.
  // `referenced`: what the sweep that began at `started_ms` saw referenced, and where.
  Status CollectBlobs(const VersionVector& absorbed, const std::map<BlobHash, FieldKey>& referenced,
                      uint64_t started_ms, CollectStats* stats);
  // Writes `src` as chunks; `finish` runs in the transaction that completes the blob.
  Result<BlobRef> StoreBlob(
      const BlobSource& src, std::string type,
      const std::function<Status(WriteTxn&, ReplicaMeta&, const BlobRef&)>& finish);
  // Joins `with` into the store's collected vector.
  static Status RaiseCollected(WriteTxn& txn, const VersionVector& with);
  void Committed();
  std::shared_ptr<WritePolicy> Policy();
  Result<LogHull> ReadLogHull();
  // The collection's rules for reading (null when none).
  Result<std::shared_ptr<const CollectionRules>> ReadRules(ReadTxn& txn, std::string_view c);
  // A record's reading with the rules' winners for conflicting fields.
  std::optional<Record> ReadWithRules(const std::string& id, const RecordState& r,
                                      const CollectionRules* rules);
  Status WriteOnce(const std::function<Status(Batch&)>& fn);
  Status ApplyDeltasOnce(const std::vector<FieldDelta>& deltas, size_t* changed);
  Status MergeVersionVectorOnce(const VersionVector& vv);
  // Caps *vv below every event a quarantined state carries that the field here has not
  // seen.
  Status CapByQuarantine(ReadTxn& txn, VersionVector* vv);
  // Drops the held states that the field's state here has come to hold whole (a
  // correction written over a refused value, say): released, they would change nothing,
  // and held they would keep the watermark below their events for good.
  Status DropSuperseded(WriteTxn& txn);
  // Keeps a claim from covering what a state refused for good alone carried
  // (ReadTxn::ListRefused); `from`: the peer of a session that refused nothing.
  Status CapByRefused(WriteTxn& txn, VersionVector* vv, const ReplicaId* from);
  static Status NoteRefused(WriteTxn& txn, const FieldDelta& d, const FieldState* ours,
                            const AdmitFn& admit);
  // The chunks the pending entry `entry` lists, `held` bytes of them.
  Result<std::vector<BlobHash>> PieceChunks(const BlobHash& entry, uint64_t held);
  // OutlinePieces for the chunks of `entry`, then `last`.
  Result<FieldDelta> OutlineHeld(const ReplicaId& peer, const BlobHash& entry, uint64_t held,
                                 std::string last, const BlobHash& digest, uint64_t most = 0);
  // A state in pieces decoded whole, checked against its hash and `key`.
  Result<FieldState> DecodeInPieces(const FieldKey& key, const StateInPieces& p);
  // DecodePieces and DecodeInPieces: `chunks`, then `last`, decoded as one field delta a
  // piece at a time, once they hash to `digest` (all zero: not checked; else a status
  // of code `mismatch`).
  Result<std::pair<FieldKey, FieldState>> DecodeChunks(std::vector<BlobHash> chunks,
                                                       std::string_view last,
                                                       const BlobHash& digest, Code mismatch);
  // Of a quarantined state held in pieces: its chunks, as a state in pieces is read.
  Result<std::shared_ptr<StateInPieces>> QuarantinedPieces(ReadTxn& txn, const QuarantineEntry& e);
  // Applies one (with `judged`, under its collection's rules, as from its peer: one that
  // breaks them is held again for that) and forgets it. `p`: its chunks, read already
  // (QuarantinedPieces), else read here.
  Status ReleaseInPieces(const QuarantineEntry& e, bool judged,
                         std::shared_ptr<StateInPieces> p = nullptr);
  // The field's state of a quarantined one (only its outline, for one in pieces, where
  // the store reads outlines), as GetFieldOrDamaged reads it.
  Status ReadOurs(ReadTxn& txn, const QuarantineEntry& e, std::optional<FieldState>* ours,
                  Status* damage);
  // Deletes the entry, and the blob entry that lists its chunks.
  Status ForgetHeld(WriteTxn& txn, const QuarantineEntry& e);
  // The pending blob entry that lists the chunks of a join made of the state in pieces
  // whose chunks the entry `of` lists (JoinPieces).
  BlobHash JoinedEntry(const BlobHash& of) const {
    return HashOf(hash_, "tandem joined " + HexOf(of));
  }
  // Reads a state in pieces through `txn`, each marker and element handed to `items`.
  Status ReadInPieces(ReadTxn& txn, const StateInPieces& p, const StateItems& items);
  // Stores a state in pieces as it came, out of line (WriteTxn::PutFieldOutOfLine), its
  // chunks listed by a blob entry of its own; *stored false where it cannot be (the store
  // keeps no state out of line, or the pieces are no longer held).
  Status PutInPieces(WriteTxn& txn, const FieldDelta& d, bool* stored);
  // The blob entry (state kState) that lists the chunks of a state in pieces, its last
  // piece stored: none where the pieces its outline was read from are held no more.
  Result<std::optional<BlobInfo>> StateEntry(WriteTxn& txn, const StateInPieces& p);
  // Judge for a state in pieces: its values read a piece at a time. `have`, the field's
  // state here, may be an outline (its context is all this reads of it).
  Result<std::string> JudgeInPieces(
      WriteTxn& txn, const FieldDelta& d, const FieldState* have,
      std::map<std::string, std::shared_ptr<const CollectionRules>>* rules);
  // The rules of a collection (none: nullptr), read once per transaction into `rules`.
  Result<const CollectionRules*> RulesOf(
      ReadTxn& txn, const std::string& collection,
      std::map<std::string, std::shared_ptr<const CollectionRules>>* rules);
  // States JoinInto may take apart as it writes them (ApplyBatch's `consume`): `deltas`
  // is the vector it joins; `taken` says it took one.
  struct Consume {
    std::vector<FieldDelta>* deltas = nullptr;
    bool taken = false;
  };
  // With `from` (a peer's batch), deltas breaking the rules are quarantined.
  // Applies (as ReleaseQuarantined does) and forgets, in one transaction, the entries
  // `pick` chooses, scanning until `max` are chosen: how many.
  Result<size_t> ReleaseSome(const std::function<bool(const QuarantineEntry&)>& pick, size_t max);
  Status JoinInto(WriteTxn& txn, ReplicaMeta& meta, const std::vector<FieldDelta>& deltas,
                  const AdmitFn* admit, size_t* applied, size_t* refused,
                  size_t* filtered_out = nullptr, bool* rekeyed = nullptr,
                  const ReplicaId* from = nullptr, size_t* quarantined = nullptr,
                  Consume* consume = nullptr, RebaseOn* rebase = nullptr);
  // Keeps d aside in the quarantine (once: the same state again is not a new entry).
  // `known` holds the digests of the entries' keys and states: read at the first call
  // (one pass over the quarantine per batch, not one per state), then kept up to date.
  Status Hold(WriteTxn& txn, const FieldDelta& d, const ReplicaId& from, std::string why, bool held,
              std::optional<std::set<BlobHash>>& known);
  // The reason a peer's delta breaks the rules, or empty.
  Result<std::string> Judge(ReadTxn& txn, const FieldDelta& d, const FieldState* have,
                            std::map<std::string, std::shared_ptr<const CollectionRules>>* rules);
  // Inside a write transaction: `claimed` events of meta.id exist elsewhere. Takes a new
  // id in `meta` (the caller writes it) if they are more than we issued.
  Status CheckClaim(ReplicaMeta& meta, uint64_t claimed, bool* rekeyed);
  std::unique_ptr<Store> store_;
  PhysicalClock now_;
  ContentHash hash_;
  std::atomic<size_t> max_whole_{kMaxWholeState};
  struct SharedSpool;  // spool_delta.cc
  std::mutex spools_mu_;
  std::map<std::pair<std::string, uint64_t>, std::weak_ptr<SharedSpool>> spools_;
  // The items of the states spooled (by the same key), so that one withheld for them is
  // not copied again for each session; forgotten past kCountsKept.
  std::map<std::pair<std::string, uint64_t>, uint64_t> items_counted_;
  static constexpr size_t kCountsKept = 1024;
  IdSource new_id_;
  std::mutex policy_mu_;
  std::shared_ptr<WritePolicy> policy_;
  std::mutex digests_mu_;
  std::optional<std::pair<uint64_t, StateDigests>> digests_;  // at that log position
  std::set<ReplicaId> repair_due_;
  std::map<ReplicaId, Difference> differed_;
  std::mutex observers_mu_;
  uint64_t next_observer_ = 1;
  std::map<uint64_t, std::shared_ptr<std::function<void()>>> observers_;
};

// An upper bound on the bytes a field state and its key take in a sync batch body,
// including its share of the batch's replica table.
size_t WireSizeBound(const FieldDelta& d);

// Validates a key from outside (names within limits, UTF-8, no NUL).
Status ValidateKey(const FieldKey& key);

}  // namespace tandem::engine
