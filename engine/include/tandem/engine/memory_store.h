// An in-memory Store, for tests, the simulator and the in-memory demo.
//
// A write transaction works on a private copy of the data and publishes it on commit;
// readers hold immutable snapshots. Simple and obviously correct, O(data) per write
// transaction: not for large data sets. Field states are kept encoded, so every read
// and write crosses the binary codec as it would with real storage.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "tandem/engine/store.h"

namespace tandem::engine {

class MemoryStore : public Store {
 public:
  explicit MemoryStore(const ReplicaId& id);
  Result<std::unique_ptr<ReadTxn>> BeginRead() override;
  Result<std::unique_ptr<WriteTxn>> BeginWrite() override;

  struct Data {
    ReplicaMeta meta;
    // collection \0 record \0 field -> (log seq, self-contained encoded state)
    std::map<std::string, std::pair<uint64_t, std::string>> fields;
    std::map<uint64_t, std::string> log;  // log seq -> key
    uint64_t last_log_seq = 0;
    std::map<ReplicaId, std::string> peers;      // encoded PeerState
    std::map<uint64_t, std::string> quarantine;  // encoded QuarantineEntry
    uint64_t last_quarantine_id = 0;
    std::map<std::string, VersionVector> refused;  // by EncodeFieldKey
    LogHull log_hull;
    VersionVector collected;
    ReadTxn::CollectedIn collected_in;
    std::map<BlobHash, std::string> blobs;  // encoded BlobInfo
    // Shared: a write transaction copies the maps, not the chunks.
    std::map<BlobHash, std::shared_ptr<const std::string>> chunks;
  };
  // The last committed state (immutable; a commit publishes a new one).
  std::shared_ptr<const Data> Current() {
    std::lock_guard lock(mu_);
    return current_;
  }

 private:
  friend class MemoryWriteTxn;
  std::mutex mu_;  // guards current_ and the single-writer flag
  std::shared_ptr<const Data> current_;
  bool writer_active_ = false;
};

// collection \0 record \0 field
std::string EncodeFieldKey(const FieldKey& key);
bool DecodeFieldKey(std::string_view s, FieldKey* out);

}  // namespace tandem::engine
