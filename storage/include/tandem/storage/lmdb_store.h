// Durable replicas on LMDB: the engine's Store on disk, plus creating, opening, checking,
// backing up and restoring a replica directory.
//
// A replica directory holds one LMDB environment (data.mdb, lock.mdb); the device module
// (bindings/device) keeps its other files beside it. Named databases: meta (format version,
// replica meta), fields (collection \0 record \0 field -> change-log seq + field state),
// log (seq -> field key; one entry per field, its latest change), replicas (small index
// -> 16-byte replica id, used by the field encoding), names (index -> collection or field
// name, used by keys), peers (peer replica id -> sync state).
//
// Durability: every write transaction is durable when Commit() returns (fsync), unless
// the replica was opened with Durability::kRelaxed, which skips the fsync (a crash may
// lose the latest commits, never corrupt the file).
//
// Several processes may open one replica: LMDB serialises writers across processes and
// readers never block. Stale reader slots left by killed processes are cleared on open.
// The map grows on demand: a transaction that fills it is retried after the map grows
// (Status code kBusy, which engine::Replica retries).
//
// Thread-safety: an LmdbStore may be shared by threads; each transaction is used by one.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/store.h"

namespace tandem::storage {

// 3: peers' states may record where a peer's log ended (engine::PeerState::mark).
inline constexpr uint32_t kFormatMark = 3;
// 4: collection has removed field states (meta `collected`): a build that does not read
// it would take back what was collected.
inline constexpr uint32_t kFormatCollected = 4;
// 5: blobs or blob references were written (a value an older build cannot decode).
inline constexpr uint32_t kFormatBlobs = 5;
// 6: the change log may hold stale entries (a field written again leaves its earlier
// entry until compaction), which an older build would read as live.
inline constexpr uint32_t kFormatLazyLog = 6;
// 7: the change log holds runs, a transaction's entries in one stored entry (log_run.h),
// which an older build would read as one malformed field key.
inline constexpr uint32_t kFormatLogRuns = 7;
// 8: field values carry a checksum (a leading 0 byte, which an older build would read as
// a missing change-log seq: format.md).
inline constexpr uint32_t kFormatChecksums = 8;
// 9: the quarantine holds states whose writer could not be judged yet (an entry of
// version 2, which an older build would refuse to list).
inline constexpr uint32_t kFormatHeld = 9;
// 10: field values may be in the `fresh` table, over those in `fields`, which an older
// build would not read.
inline constexpr uint32_t kFormatFresh = 10;
// 11: a peer's state may say which collections a filtered session took from it (version
// 5), and the replica's meta what filtered sessions bore out (version 2), which an older
// build would refuse to read.
inline constexpr uint32_t kFormatFiltered = 11;
// 12: a peer's state or the replica's meta may hold a collection filter that names the
// collections it leaves out (flag 2), which an older build would refuse to read.
inline constexpr uint32_t kFormatExclusions = 12;
// 13: field values may carry an XXH3 checksum in place of SipHash's (field_value.h),
// which an older build would refuse as damaged.
inline constexpr uint32_t kFormatFastSums = 13;
// 14: collection removed field states in single collections beyond meta `collected`
// (meta `collected-in`), which an older build would take back.
inline constexpr uint32_t kFormatCollectedIn = 14;
// 15: a field state stored out of line (engine::kOutOfLine), its chunks listed by a blob
// entry of state 4, which an older build cannot read.
inline constexpr uint32_t kFormatOutOfLine = 15;
// 16: a quarantined field state may lie in chunks (quarantine entry versions 3 and 4), its
// chunks listed by a blob entry of state 4 that no field names, which an older build
// cannot read.
inline constexpr uint32_t kFormatHeldPieces = 16;
inline constexpr uint32_t kFormatVersion = kFormatHeldPieces;  // the newest this build reads

// Stale change-log entries are removed at a commit that made more, once they are more
// than kCompactFloor and a quarter of the fields: kCompactSlice entries examined at a
// time (a repack, after a collection, removes them all).
inline constexpr size_t kCompactFloor = 8192;
inline constexpr size_t kCompactSlice = 4096;

// A write of a field inside the `fields` table goes to the small `fresh` table instead
// (appends past its end and large values stay in `fields`): a transaction of scattered
// writes rewrites a few pages, not one per field. A commit that wrote there folds
// kFoldSlice entries (at least as many as it wrote) back into `fields`, in key order,
// once `fresh` holds more than kFoldFloor and a sixteenth of the fields: many land on
// each page they rewrite.
inline constexpr size_t kFoldFloor = 1024;
inline constexpr size_t kFoldSlice = 4096;

enum class Durability { kDurable, kRelaxed };

struct Options {
  Durability durability = Durability::kDurable;
  // Initial map size; it doubles whenever it fills. Small values are for tests.
  size_t initial_map_bytes = size_t{64} << 20;
  // CreateStore only: use this replica id instead of a random one. For deterministic
  // tests and the simulator; never reuse an id another replica has had.
  std::optional<engine::ReplicaId> replica_id;
  // Where replica ids come from: a new store's (unless replica_id is set), a new one when
  // an opened replica turns out to be a copy (see OpenStore), and, for CreateReplica and
  // OpenReplica, when it turns out to have been rolled back; RandomReplicaId when empty.
  // A device's ids bound to its key (net/binding.h); the simulator's determinism.
  std::function<engine::ReplicaId()> new_ids;
  // Where this store's change-log entries start, given the newest position in the log
  // (FirstLogSeq when empty). For the simulator's determinism.
  std::function<uint64_t(uint64_t newest)> first_log_seq;
  // When stale change-log entries are removed, and how many are examined at a time
  // (kCompactFloor, kCompactSlice). The simulator makes them small.
  size_t compact_floor = kCompactFloor;
  size_t compact_slice = kCompactSlice;
  // When field values written to `fresh` are folded into `fields`, and how many at a
  // time (kFoldFloor, kFoldSlice). The simulator makes them small.
  size_t fold_floor = kFoldFloor;
  size_t fold_slice = kFoldSlice;
  // OpenStore, for a program that only reads: a copy (below) is left as it is, with its
  // original's replica id, and refuses every write transaction, so that reading a backup
  // or a copy changes nothing in it. A replica where it was made opens as usual.
  bool inspect = false;
  // Take the filesystem for one that keeps no birth time, where an origin file tells a
  // replica's own directory from a copy (design.md, copies and rollbacks): for tests.
  bool without_birth_times = false;
};

// Each process that writes a replica starts its change-log entries past the newest, at
// the wall clock in microseconds if that is further, and the store records the gap it
// skipped (the newest `kMaxLogGaps`). Log positions are the cursors peers keep into
// this replica's log: after an in-place rollback, the positions written since lie past
// every one a peer kept from the lost timeline (written earlier, at most one position
// per microsecond on average), so the peer reads everything written since, and a
// position it read that now lies in a gap or past the end shows the rollback
// (docs/design.md, copies and rollbacks). Positions stay below 2^53 (exact in JSON)
// for two centuries.
uint64_t FirstLogSeq(uint64_t newest);
// The same with the clock's reading, in microseconds since 1970 (a clock before 1970, or
// past 2219, counts as none).
uint64_t FirstLogSeqAt(uint64_t newest, int64_t now_us);
inline constexpr size_t kMaxLogGaps = 1024;

class LmdbStore;

// Creates a replica in `dir` (created if missing; must be empty otherwise) with a new
// random replica id.
Result<std::unique_ptr<LmdbStore>> CreateStore(const std::string& dir, const Options& = {});
// Opens an existing replica. A directory that is not a replica, a replica of a newer
// format, or a damaged file gives a clear error and is left unchanged.
//
// A replica remembers where it was created: the device and inode of its data.mdb (the
// `origin` meta entry). Opened anywhere else (a `cp -a` of the directory, a phone
// migration, a file-level restore), it is a copy that would issue the same dots as its
// original, so it takes a new replica id at once (engine::TakeNewReplicaId), in the
// same write that records its new origin. Renaming or moving the directory within a
// filesystem keeps the inode and changes nothing.
Result<std::unique_ptr<LmdbStore>> OpenStore(const std::string& dir, const Options& = {});
// True if `store` is a copy opened with Options::inspect: it refuses writes.
bool IsInspectedCopy(const LmdbStore& store);

// A fresh random replica id (getrandom): the engine's IdSource for durable replicas.
engine::ReplicaId RandomReplicaId();
// Takes a new replica id (opt.new_ids) now, as a copy would, if the replica's id is
// still `only_if` and has issued nothing (checked in the same transaction): for an id
// to be replaced by a better one (a restored device's, by one bound to its key).
Status TakeNewId(LmdbStore& store, const Options& opt, const engine::ReplicaId& only_if);

// True if `dir` looks like a replica directory (has a data.mdb).
bool IsReplicaDir(const std::string& dir);

// Writes a consistent, compacted copy of the replica to `dest` (created; must be empty
// or missing), while other processes keep writing, and copies `files` (paths; those
// that exist) beside it under their own names, readable by the owner only. The copy is
// marked (kBackupMark): opened to write, it is refused, so it stays as it was made;
// opened to be read, it is read without making a lock file; restore makes a replica of
// it. The copy is checked whole (Check) before it is published: a replica that fails
// the check gets no backup (kCorrupt, nothing at `dest`).
Status Backup(LmdbStore& store, const std::string& dest,
              const std::vector<std::string>& files = {});
// The file that marks a directory as a backup, and how it starts.
inline constexpr const char* kBackupMark = "BACKUP";
inline constexpr const char* kBackupMarkText =
    "This directory is a backup made by `tandem backup`; it is kept as it was made.\n";
// True if `dir` holds the mark: a regular file named kBackupMark that starts so (not a
// file or directory of that name a user made, nor one on a case-insensitive filesystem
// named "backup").
bool IsBackupDir(const std::string& dir);
// Makes a usable replica in `dir` from a backup, with a NEW replica id, so the restored
// device never reissues dots the old one already used. What it had applied from each peer
// (its cursors) stays valid and is kept; peers see the restored replica as a new peer.
// The replica is built in a temporary directory beside `dir` and renamed into place at
// the end: a failed restore leaves no replica at `dir`.
// `files` names files of the backup to carry into the replica directory (those that
// exist), fsynced before the rename.
Status Restore(const std::string& backup, const std::string& dir,
               const std::vector<std::string>& files = {});
// Removes what a Restore or Backup into `dir` left when its process died (a crash while
// reading a damaged backup, a kill): the temporary directory, which may hold key files.
// The next build into `dir` does it too.
void SweepDeadBuilds(const std::string& dir);

// Integrity check: every field decodes, the change log and the fields point at each
// other one to one, and the version vector covers every event of ours in any field.
struct CheckReport {
  uint64_t fields = 0;
  uint64_t log_entries = 0;
  uint64_t records = 0;
  uint64_t blobs = 0;       // complete ones: every chunk read and checked
  uint64_t blob_bytes = 0;  // their sizes
  // Records of refused fields that do not decode: passed over by sync, which so may claim
  // an event that such a record held back (docs/format.md).
  uint64_t refused_damaged = 0;
  // Field states stored out of line (kept as they came in pieces: docs/format.md).
  uint64_t fields_out_of_line = 0;
};
Status Check(LmdbStore& store, CheckReport* report = nullptr);

class LmdbStore : public engine::Store {
 public:
  ~LmdbStore() override;
  Result<std::unique_ptr<engine::ReadTxn>> BeginRead() override;
  Result<std::unique_ptr<engine::WriteTxn>> BeginWrite() override;
  // An unnamed file in the replica's directory (spool.cc).
  Result<std::unique_ptr<engine::Spool>> OpenSpool() override;
  // How long this process's commits took (durable commits wait for fsync): a
  // histogram, for metrics.
  struct CommitLatency {
    static constexpr std::array<double, 11> kBounds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                       0.05,   0.1,   0.25,  0.5,   1.0};
    std::array<uint64_t, kBounds.size() + 1> buckets{};  // per bucket (last: above 1 s)
    uint64_t count = 0;
    double sum_seconds = 0;
  };
  CommitLatency CommitLatencies() const;
  // Drops the map's resident pages from this process (madvise): LMDB reads through a
  // read-only shared map and writes with pwrite, so a page is read back from the file
  // (the page cache) when touched again, unchanged.
  void ReleaseMemory() override;
  const std::string& dir() const { return dir_; }
  // The id of the last committed write transaction, by any process (LMDB's txnid, read
  // from the meta pages): it moves when a commit's last write is done.
  uint64_t LastTxnId();
  // The id of the transaction a reader starting now sees. LMDB publishes it to readers
  // just after the meta page is written, so it may be behind LastTxnId() for that
  // moment; 0 if no reader can start.
  uint64_t ReadableTxnId();
  // The bytes of the pages that hold data now (every table's branch, leaf and overflow
  // pages). The file keeps its size when data goes: LMDB reuses the freed pages for
  // later writes, and `backup` writes a compacted copy.
  Result<uint64_t> DataBytes();
  // The format version the replica is stored in now (format.md; the kFormat* above).
  Result<uint32_t> Format();

  struct Impl;
  Impl* impl() { return impl_.get(); }
  const Impl* impl() const { return impl_.get(); }

 private:
  friend Result<std::unique_ptr<LmdbStore>> Open(const std::string&, const Options&, bool, bool);
  LmdbStore(std::string dir, std::unique_ptr<Impl> impl);
  std::string dir_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::storage
