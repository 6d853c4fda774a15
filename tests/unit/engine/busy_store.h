// A store that passes everything to another, except that the commit of a write
// transaction fails as a store that had to grow does (kBusy) while the test says so:
// for what must hold when a write transaction is made again.
#pragma once

#include <functional>
#include <memory>

#include "tandem/engine/store.h"

namespace tandem::engine {
namespace {

class BusyStore : public Store {
 public:
  explicit BusyStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  // Asked at each commit, with whether the transaction wrote a field it may take apart
  // (PutField of a state to consume): true fails that commit.
  std::function<bool(bool took)> fail_commit;
  Result<std::unique_ptr<ReadTxn>> BeginRead() override { return inner_->BeginRead(); }
  Result<std::unique_ptr<WriteTxn>> BeginWrite() override {
    auto txn = inner_->BeginWrite();
    if (!txn.ok()) return txn.status();
    return std::unique_ptr<WriteTxn>(std::make_unique<Txn>(std::move(*txn), this));
  }

 private:
  class Txn : public WriteTxn {
   public:
    Txn(std::unique_ptr<WriteTxn> t, BusyStore* s) : t_(std::move(t)), s_(s) {}
#define TANDEM_PASS(name, params, args) \
  Status name params override { return t_->name args; }
    TANDEM_PASS(GetMeta, (ReplicaMeta * o), (o))
    TANDEM_PASS(GetField, (const FieldKey& k, std::optional<FieldState>* o), (k, o))
    TANDEM_PASS(GetRecord, (std::string_view c, std::string_view r, RecordState* o, uint64_t* l),
                (c, r, o, l))
    TANDEM_PASS(ScanRecords, (std::string_view c, std::string_view a, const RecordFn& f), (c, a, f))
    TANDEM_PASS(ListCollections, (std::vector<std::string> * o), (o))
    TANDEM_PASS(ScanLog, (uint64_t s, const LogFn& f), (s, f))
    TANDEM_PASS(ScanLogFields, (uint64_t s, const LogFieldFn& f), (s, f))
    TANDEM_PASS(ScanLogDeltas, (uint64_t s, uint64_t l, const LogDeltaFn& f), (s, l, f))
    TANDEM_PASS(ReadDelta,
                (const FieldKey& k, uint64_t o, size_t n, bool c, uint64_t* z, uint64_t* q,
                 std::string* out),
                (k, o, n, c, z, q, out))
    TANDEM_PASS(CountLog, (uint64_t s, uint64_t c, uint64_t* o), (s, c, o))
    TANDEM_PASS(LastLogSeq, (uint64_t * o), (o))
    TANDEM_PASS(InLogGap, (uint64_t s, bool* o), (s, o))
    TANDEM_PASS(GetPeer, (const ReplicaId& p, PeerState* o), (p, o))
    TANDEM_PASS(ListPeers, (std::vector<std::pair<ReplicaId, PeerState>> * o), (o))
    TANDEM_PASS(ListQuarantine, (const QuarantineFn& f), (f))
    TANDEM_PASS(ListRefused, (const RefusedFn& f), (f))
    TANDEM_PASS(GetRefused, (const FieldKey& k, std::optional<VersionVector>* o), (k, o))
    TANDEM_PASS(GetLogHull, (LogHull * o), (o))
    TANDEM_PASS(GetCollected, (VersionVector * o), (o))
    TANDEM_PASS(GetBlob, (const BlobHash& h, std::optional<BlobInfo>* o), (h, o))
    TANDEM_PASS(ScanBlobs, (bool w, const BlobFn& f), (w, f))
    TANDEM_PASS(GetChunk, (const BlobHash& h, std::string* o, bool* f), (h, o, f))
    TANDEM_PASS(ScanChunks, (const BlobHash* a, const std::function<bool(const BlobHash&)>& f),
                (a, f))
    TANDEM_PASS(PutMeta, (const ReplicaMeta& m), (m))
    TANDEM_PASS(PutField, (const FieldKey& k, const FieldState& s), (k, s))
    TANDEM_PASS(CheckpointLog, (), ())
    TANDEM_PASS(PutPeer, (const ReplicaId& p, const PeerState& s), (p, s))
    TANDEM_PASS(TakeQuarantineId, (uint64_t * o), (o))
    TANDEM_PASS(PutQuarantine, (uint64_t i, std::string_view e), (i, e))
    TANDEM_PASS(DeleteQuarantine, (uint64_t i), (i))
    TANDEM_PASS(PutRefused, (const FieldKey& k, const VersionVector& u), (k, u))
    TANDEM_PASS(DeleteRefused, (const FieldKey& k), (k))
    TANDEM_PASS(DeleteField, (const FieldKey& k, bool* d), (k, d))
    TANDEM_PASS(PutCollected, (const VersionVector& c), (c))
    TANDEM_PASS(PutBlob, (const BlobHash& h, const BlobInfo& i), (h, i))
    TANDEM_PASS(DeleteBlob, (const BlobHash& h), (h))
    TANDEM_PASS(PutChunk, (const BlobHash& h, std::string_view b), (h, b))
    TANDEM_PASS(DeleteChunk, (const BlobHash& h), (h))
    TANDEM_PASS(Repack, (), ())
#undef TANDEM_PASS
    // Taken apart, as a store that encodes a large state into its pages does.
    Status PutField(const FieldKey& k, FieldState&& s) override {
      took_ = true;
      Status st = t_->PutField(k, static_cast<const FieldState&>(s));
      s.markers.clear();
      s.elements.clear();
      return st;
    }
    Status Commit() override {
      if (s_->fail_commit && s_->fail_commit(took_))
        return Status::Busy("the store must grow (a test's)");
      return t_->Commit();
    }

   private:
    std::unique_ptr<WriteTxn> t_;
    BusyStore* s_;
    bool took_ = false;
  };

  std::unique_ptr<Store> inner_;
};

}  // namespace
}  // namespace tandem::engine
