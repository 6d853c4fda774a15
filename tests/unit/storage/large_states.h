// Helpers for the storage tests of large field states: values that do not compress,
// and what a replica holds out of line, pending, or freed by collection.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"

namespace tandem::storage {
namespace {

// A value of n bytes that does not compress to nothing.
inline std::string Text(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return s;
}

// The fields `r` holds out of line (its LmdbStore's check).
inline size_t OutOfLine(engine::Replica& r) {
  CheckReport rep;
  const Status st = Check(*dynamic_cast<LmdbStore*>(&r.store()), &rep);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return rep.fields_out_of_line;
}

// The two replicas' states hash alike (Replica::Digests).
inline void ExpectSameDigests(engine::Replica& x, engine::Replica& y) {
  auto dx = x.Digests();
  auto dy = y.Digests();
  ASSERT_TRUE(dx.ok() && dy.ok());
  EXPECT_EQ(dx->sums, dy->sums);
}

// Collection by all this replica holds (the test's replicas hold the same): what it freed.
inline engine::Replica::CollectStats CollectHeld(engine::Replica& r) {
  engine::Replica::CollectStats stats;
  auto meta = r.Meta();
  EXPECT_TRUE(meta.ok());
  if (meta.ok()) {
    EXPECT_TRUE(r.Collect(meta->vv, &stats).ok());
  }
  return stats;
}

// Pending blob entries (pieces held, a join being made), none of which outlives a sync.
inline size_t Pending(engine::Replica& r) {
  auto txn = r.store().BeginRead();
  EXPECT_TRUE(txn.ok());
  size_t n = 0;
  EXPECT_TRUE((*txn)
                  ->ScanBlobs(false,
                              [&](const engine::BlobHash&, const engine::BlobInfo& info) {
                                n += info.state == engine::BlobInfo::State::kPending;
                                return true;
                              })
                  .ok());
  return n;
}

// Rules that refuse a set element "refused..." from a peer.
class RefuseElements : public engine::CollectionRules, public engine::WritePolicy {
 public:
  Status CheckOp(std::string_view, engine::Op, engine::Value*) const override {
    return Status::Ok();
  }
  Status CheckRecord(std::string_view, const engine::RecordState&,
                     const std::set<std::string>&) const override {
    return Status::Ok();
  }
  Status CheckIncoming(std::string_view, engine::Kind kind, const engine::Value& v, engine::Hlc,
                       bool) const override {
    const auto* t = std::get_if<std::string>(&v);
    if (kind == engine::Kind::kSet && t && t->rfind("refused", 0) == 0)
      return Status::Invalid("no refused elements");
    return Status::Ok();
  }
  Result<std::shared_ptr<const engine::CollectionRules>> RulesFor(engine::ReadTxn&,
                                                                  std::string_view) override {
    return std::shared_ptr<const engine::CollectionRules>(std::shared_ptr<void>(), this);
  }
};

}  // namespace
}  // namespace tandem::storage
