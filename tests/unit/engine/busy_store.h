// A store that passes everything to another, except where a test steps in: the commit
// of a write transaction fails as a store that had to grow does (kBusy) while the test
// says so; and the first, checked read of a state to spool (Replica::SpoolDelta), or any
// read of a state's delta encoding, can be preceded by a write, as if another writer got
// in between the reader's reads.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "tandem/engine/store.h"

namespace tandem::engine {
namespace {

#define TANDEM_PASS(name, params, args) \
  Status name params override { return t_->name args; }

// Every read passed to t_.
template <typename Base>
class PassReads : public Base {
 public:
  explicit PassReads(std::unique_ptr<Base> t) : t_(std::move(t)) {}
  TANDEM_PASS(GetMeta, (ReplicaMeta * o), (o))
  TANDEM_PASS(GetField, (const FieldKey& k, std::optional<FieldState>* o), (k, o))
  TANDEM_PASS(GetRecord, (std::string_view c, std::string_view r, RecordState* o, uint64_t* l),
              (c, r, o, l))
  TANDEM_PASS(ScanRecords,
              (std::string_view c, std::string_view a, const ReadTxn::RecordFn& f,
               const ReadTxn::DamagedFn* d, const ReadTxn::OutlineFn* l),
              (c, a, f, d, l))
  TANDEM_PASS(ReadFieldItems, (const FieldKey& k, const StateItems& i), (k, i))
  TANDEM_PASS(ReadFieldOutline, (const FieldKey& k, const StateItems* i, FieldState* o), (k, i, o))
  TANDEM_PASS(ListCollections, (std::vector<std::string> * o), (o))
  TANDEM_PASS(ScanLog, (uint64_t s, const ReadTxn::LogFn& f), (s, f))
  TANDEM_PASS(ScanLogDeltas, (uint64_t s, uint64_t l, const ReadTxn::LogDeltaFn& f), (s, l, f))
  TANDEM_PASS(ReadDelta,
              (const FieldKey& k, uint64_t o, size_t n, bool c, uint64_t* z, uint64_t* q,
               std::string* out),
              (k, o, n, c, z, q, out))
  TANDEM_PASS(CountLog, (uint64_t s, uint64_t c, uint64_t* o), (s, c, o))
  TANDEM_PASS(LastLogSeq, (uint64_t * o), (o))
  TANDEM_PASS(InLogGap, (uint64_t s, bool* o), (s, o))
  TANDEM_PASS(GetPeer, (const ReplicaId& p, PeerState* o), (p, o))
  TANDEM_PASS(ListPeers, (std::vector<std::pair<ReplicaId, PeerState>> * o), (o))
  TANDEM_PASS(ListQuarantine, (const ReadTxn::QuarantineFn& f), (f))
  TANDEM_PASS(ListRefused, (const ReadTxn::RefusedFn& f), (f))
  TANDEM_PASS(GetRefused, (const FieldKey& k, std::optional<VersionVector>* o), (k, o))
  TANDEM_PASS(GetLogHull, (LogHull * o), (o))
  TANDEM_PASS(GetCollected, (VersionVector * o), (o))
  TANDEM_PASS(GetCollectedIn, (ReadTxn::CollectedIn * o), (o))
  TANDEM_PASS(GetBlob, (const BlobHash& h, std::optional<BlobInfo>* o), (h, o))
  TANDEM_PASS(ScanBlobs, (bool w, const ReadTxn::BlobFn& f), (w, f))
  TANDEM_PASS(GetChunk, (const BlobHash& h, std::string* o, bool* f), (h, o, f))
  TANDEM_PASS(ScanChunks, (const BlobHash* a, const std::function<bool(const BlobHash&)>& f),
              (a, f))
 protected:
  std::unique_ptr<Base> t_;
};

class BusyStore : public Store {
 public:
  explicit BusyStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  // Asked at each commit, with whether the transaction wrote a field it may take apart
  // (PutField of a state to consume): true fails that commit.
  std::function<bool(bool took)> fail_commit;
  // Called before the checked read of a field's delta encoding; the read then sees
  // what it wrote.
  std::function<void()> before_spool;
  // Called before every read of a field's delta encoding in a read transaction, with
  // its offset, length and whether it is checked; the read then sees what it wrote.
  std::function<void(uint64_t offset, size_t n, bool check)> before_read_delta;
  // Called once after a read transaction's scan of the log (a sender's page): what it
  // writes commits between that page's reads and whatever is read after it.
  std::function<void()> after_scan;
  // Spools that cannot be opened (0), or that fail once this many bytes went in.
  std::optional<uint64_t> spool_fails_after;
  Result<std::unique_ptr<Spool>> OpenSpool() override {
    if (!spool_fails_after) return inner_->OpenSpool();
    if (*spool_fails_after == 0) return Status(Code::kIo, "no room for a spool (a test's)");
    return std::unique_ptr<Spool>(std::make_unique<FullSpool>(*spool_fails_after));
  }
  void ReleaseMemory() override { inner_->ReleaseMemory(); }
  Result<std::unique_ptr<ReadTxn>> BeginRead() override {
    auto txn = inner_->BeginRead();
    if (!txn.ok()) return txn.status();
    return std::unique_ptr<ReadTxn>(std::make_unique<Read>(std::move(*txn), this));
  }
  Result<std::unique_ptr<WriteTxn>> BeginWrite() override {
    auto txn = inner_->BeginWrite();
    if (!txn.ok()) return txn.status();
    return std::unique_ptr<WriteTxn>(std::make_unique<Txn>(std::move(*txn), this));
  }

 private:
  class FullSpool : public MemorySpool {
   public:
    explicit FullSpool(uint64_t room) : room_(room) {}
    Status Append(std::string_view bytes) override {
      if (bytes.size() > room_) return Status(Code::kIo, "write spool: no space left (a test's)");
      room_ -= bytes.size();
      return MemorySpool::Append(bytes);
    }

   private:
    uint64_t room_;
  };
  class Read : public PassReads<ReadTxn> {
   public:
    Read(std::unique_ptr<ReadTxn> t, BusyStore* s) : PassReads(std::move(t)), s_(s) {}
    Status ScanLogDeltas(uint64_t since, uint64_t large, const ReadTxn::LogDeltaFn& f) override {
      Status st = t_->ScanLogDeltas(since, large, f);
      if (s_->after_scan) {
        auto hook = std::move(s_->after_scan);  // once
        s_->after_scan = nullptr;
        hook();
      }
      return st;
    }
    Status ReadDelta(const FieldKey& k, uint64_t o, size_t n, bool c, uint64_t* z, uint64_t* q,
                     std::string* out) override {
      if (s_->before_read_delta) {
        s_->before_read_delta(o, n, c);
      } else if (!c || !s_->before_spool) {
        return t_->ReadDelta(k, o, n, c, z, q, out);
      } else {
        auto hook = std::move(s_->before_spool);  // once
        s_->before_spool = nullptr;
        hook();
      }
      auto fresh = s_->inner_->BeginRead();
      if (!fresh.ok()) return fresh.status();
      return (*fresh)->ReadDelta(k, o, n, c, z, q, out);
    }

   private:
    BusyStore* s_;
  };
  class Txn : public PassReads<WriteTxn> {
   public:
    Txn(std::unique_ptr<WriteTxn> t, BusyStore* s) : PassReads(std::move(t)), s_(s) {}
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
    TANDEM_PASS(RaiseCollectedIn, (const std::string& c, const VersionVector& v, bool* s),
                (c, v, s))
    TANDEM_PASS(PutBlob, (const BlobHash& h, const BlobInfo& i), (h, i))
    TANDEM_PASS(DeleteBlob, (const BlobHash& h), (h))
    TANDEM_PASS(PutChunk, (const BlobHash& h, std::string_view b), (h, b))
    TANDEM_PASS(DeleteChunk, (const BlobHash& h), (h))
    TANDEM_PASS(Repack, (), ())
    TANDEM_PASS(PutFieldOutOfLine,
                (const FieldKey& k, const VersionVector& c, uint8_t h, const BlobHash& e,
                 uint64_t a, bool* s),
                (k, c, h, e, a, s))
    // Taken apart, as a store that encodes a large state into its pages does.
    Status PutField(const FieldKey& k, FieldState&& s) override {
      Status st = t_->PutField(k, static_cast<const FieldState&>(s));
      if (st.code() == Code::kBusy) return st;  // nothing taken, as the contract says
      took_ = true;
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
    BusyStore* s_;
    bool took_ = false;
  };

  std::unique_ptr<Store> inner_;
};

#undef TANDEM_PASS

}  // namespace
}  // namespace tandem::engine
