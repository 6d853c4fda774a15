#include "tandem/engine/memory_store.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tandem::engine {
namespace {

ReplicaId Rid(uint8_t n) {
  ReplicaId id;
  id.bytes[3] = 0x5a;
  id.bytes[15] = n;
  return id;
}

FieldState PutState(uint64_t seq, int64_t v) {
  FieldState s;
  ApplyPut(s, Dot{Rid(1), seq}, seq, Value{v});
  return s;
}

std::unique_ptr<WriteTxn> Write(MemoryStore& store) {
  auto w = store.BeginWrite();
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

std::unique_ptr<ReadTxn> Read(MemoryStore& store) {
  auto r = store.BeginRead();
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::vector<std::pair<uint64_t, FieldKey>> Log(ReadTxn& txn, uint64_t since = 0) {
  std::vector<std::pair<uint64_t, FieldKey>> out;
  EXPECT_TRUE(txn.ScanLog(since,
                          [&](uint64_t seq, const FieldKey& k) {
                            out.emplace_back(seq, k);
                            return true;
                          })
                  .ok());
  return out;
}

TEST(FieldKeyTest, EncodeDecodeRoundTrip) {
  FieldKey k{"users", "u\xc3\xa9", "name"};
  std::string enc = EncodeFieldKey(k);
  EXPECT_EQ(enc, std::string("users\0u\xc3\xa9\0name", 14));
  FieldKey back;
  ASSERT_TRUE(DecodeFieldKey(enc, &back));
  EXPECT_EQ(back, k);
}

TEST(FieldKeyTest, DecodeNeedsExactlyTwoSeparators) {
  FieldKey k;
  EXPECT_FALSE(DecodeFieldKey("no separators", &k));
  EXPECT_FALSE(DecodeFieldKey(std::string("one\0sep", 7), &k));
  EXPECT_FALSE(DecodeFieldKey(std::string("a\0b\0c\0d", 7), &k));
  EXPECT_TRUE(DecodeFieldKey(std::string("a\0b\0c", 5), &k));
  EXPECT_EQ(k, (FieldKey{"a", "b", "c"}));
}

TEST(FieldKeyTest, KeyOrderIsCollectionThenRecordThenField) {
  // The NUL separator makes a shorter name sort before any longer name it prefixes.
  EXPECT_LT(EncodeFieldKey({"c", "r", "z"}), EncodeFieldKey({"c", "r0", "a"}));
  EXPECT_LT(EncodeFieldKey({"c", "zz", "z"}), EncodeFieldKey({"c0", "a", "a"}));
}

TEST(MemoryStoreTest, FreshStore) {
  MemoryStore store(Rid(7));
  auto r = Read(store);
  ReplicaMeta m;
  ASSERT_TRUE(r->GetMeta(&m).ok());
  EXPECT_EQ(m.id, Rid(7));
  EXPECT_EQ(m.clock, 0u);
  EXPECT_TRUE(m.vv.empty());
  uint64_t last = 99;
  ASSERT_TRUE(r->LastLogSeq(&last).ok());
  EXPECT_EQ(last, 0u);
  std::vector<std::string> cols{"junk"};
  ASSERT_TRUE(r->ListCollections(&cols).ok());
  EXPECT_TRUE(cols.empty());
  std::optional<FieldState> f = FieldState{};
  ASSERT_TRUE(r->GetField({"c", "r", "f"}, &f).ok());
  EXPECT_FALSE(f.has_value());
}

TEST(MemoryStoreTest, CommittedWritesAreVisibleAndRoundTrip) {
  MemoryStore store(Rid(1));
  FieldState s = PutState(1, 42);
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "f"}, s).ok());
    ReplicaMeta m;
    ASSERT_TRUE(w->GetMeta(&m).ok());
    m.clock = 1234;
    m.vv.Raise(Rid(1), 1);
    ASSERT_TRUE(w->PutMeta(m).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  auto r = Read(store);
  std::optional<FieldState> got;
  ASSERT_TRUE(r->GetField({"c", "r", "f"}, &got).ok());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, s);
  ReplicaMeta m;
  ASSERT_TRUE(r->GetMeta(&m).ok());
  EXPECT_EQ(m.clock, 1234u);
  EXPECT_EQ(m.vv.Get(Rid(1)), 1u);
  EXPECT_EQ(m.id, Rid(1));
}

TEST(MemoryStoreTest, UncommittedWriteIsDiscarded) {
  MemoryStore store(Rid(1));
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "f"}, PutState(1, 1)).ok());
    ReplicaMeta m;
    ASSERT_TRUE(w->GetMeta(&m).ok());
    m.clock = 5;
    ASSERT_TRUE(w->PutMeta(m).ok());
    // Destroyed without Commit.
  }
  auto r = Read(store);
  std::optional<FieldState> got;
  ASSERT_TRUE(r->GetField({"c", "r", "f"}, &got).ok());
  EXPECT_FALSE(got.has_value());
  ReplicaMeta m;
  ASSERT_TRUE(r->GetMeta(&m).ok());
  EXPECT_EQ(m.clock, 0u);
  uint64_t last = 99;
  ASSERT_TRUE(r->LastLogSeq(&last).ok());
  EXPECT_EQ(last, 0u);
}

TEST(MemoryStoreTest, WriterSeesItsOwnWrites) {
  MemoryStore store(Rid(1));
  auto w = Write(store);
  ASSERT_TRUE(w->PutField({"c", "r", "f"}, PutState(1, 1)).ok());
  std::optional<FieldState> got;
  ASSERT_TRUE(w->GetField({"c", "r", "f"}, &got).ok());
  ASSERT_TRUE(got.has_value());
  RecordState rec;
  ASSERT_TRUE(w->GetRecord("c", "r", &rec, nullptr).ok());
  EXPECT_EQ(rec.fields.size(), 1u);
  EXPECT_EQ(Log(*w).size(), 1u);
  // Not visible to readers until committed.
  auto r = Read(store);
  ASSERT_TRUE(r->GetField({"c", "r", "f"}, &got).ok());
  EXPECT_FALSE(got.has_value());
}

TEST(MemoryStoreTest, ReadersKeepTheirSnapshot) {
  MemoryStore store(Rid(1));
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "f"}, PutState(1, 1)).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  auto old_reader = Read(store);
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "f"}, PutState(2, 2)).ok());
    ASSERT_TRUE(w->PutField({"c", "r2", "f"}, PutState(3, 3)).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  std::optional<FieldState> got;
  ASSERT_TRUE(old_reader->GetField({"c", "r", "f"}, &got).ok());
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, PutState(1, 1));
  EXPECT_EQ(Log(*old_reader).size(), 1u);
  auto new_reader = Read(store);
  ASSERT_TRUE(new_reader->GetField({"c", "r", "f"}, &got).ok());
  EXPECT_EQ(*got, PutState(2, 2));
  EXPECT_EQ(Log(*new_reader).size(), 2u);
}

TEST(MemoryStoreTest, OneWriterAtATime) {
  MemoryStore store(Rid(1));
  {
    auto w = Write(store);
    auto second = store.BeginWrite();
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Code::kBusy);
    ASSERT_TRUE(w->Commit().ok());
    auto third = store.BeginWrite();  // free again after a commit
    EXPECT_TRUE(third.ok());
  }
  {
    auto w = Write(store);
    EXPECT_FALSE(store.BeginWrite().ok());
  }
  EXPECT_TRUE(store.BeginWrite().ok());  // and after an abort
}

TEST(MemoryStoreTest, ChangeLogHoldsEachFieldOnceAtItsLatestChange) {
  MemoryStore store(Rid(1));
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "a"}, PutState(1, 1)).ok());  // 1
    ASSERT_TRUE(w->PutField({"c", "r", "b"}, PutState(2, 1)).ok());  // 2
    ASSERT_TRUE(w->Commit().ok());
  }
  {
    auto w = Write(store);
    ASSERT_TRUE(w->PutField({"c", "r", "a"}, PutState(3, 1)).ok());  // 3, moves a
    ASSERT_TRUE(w->Commit().ok());
  }
  auto r = Read(store);
  auto log = Log(*r);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0], std::make_pair(uint64_t{2}, FieldKey{"c", "r", "b"}));
  EXPECT_EQ(log[1], std::make_pair(uint64_t{3}, FieldKey{"c", "r", "a"}));
  uint64_t last = 0;
  ASSERT_TRUE(r->LastLogSeq(&last).ok());
  EXPECT_EQ(last, 3u);
  EXPECT_EQ(Log(*r, 2).size(), 1u);
  EXPECT_TRUE(Log(*r, 3).empty());
  // The scan stops when the callback says so.
  int calls = 0;
  ASSERT_TRUE(r->ScanLog(0, [&](uint64_t, const FieldKey&) { return ++calls < 1; }).ok());
  EXPECT_EQ(calls, 1);
}

TEST(MemoryStoreTest, RecordsAndCollectionsDoNotBleedIntoEachOther) {
  MemoryStore store(Rid(1));
  {
    auto w = Write(store);
    for (const FieldKey& k : std::vector<FieldKey>{{"c", "r", "f"},
                                                   {"c", "r", "g"},
                                                   {"c", "r0", "f"},
                                                   {"c", "r\x01", "f"},
                                                   {"c0", "r", "f"},
                                                   {"b", "x", "f"}})
      ASSERT_TRUE(w->PutField(k, PutState(1, 1)).ok());
    ASSERT_TRUE(w->Commit().ok());
  }
  auto r = Read(store);
  RecordState rec;
  ASSERT_TRUE(r->GetRecord("c", "r", &rec, nullptr).ok());
  EXPECT_EQ(rec.fields.size(), 2u);
  EXPECT_TRUE(rec.fields.count("f"));
  EXPECT_TRUE(rec.fields.count("g"));
  ASSERT_TRUE(r->GetRecord("c", "nope", &rec, nullptr).ok());
  EXPECT_TRUE(rec.fields.empty());  // cleared, not left over from the previous call
  std::vector<std::string> ids;
  ASSERT_TRUE(r->ScanRecords("c", "", [&](const std::string& id, RecordState& s) {
                 ids.push_back(id);
                 EXPECT_FALSE(s.fields.empty());
                 return true;
               }).ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"r", "r\x01", "r0"}));
  ids.clear();
  ASSERT_TRUE(r->ScanRecords("c", "r", [&](const std::string& id, RecordState&) {
                 ids.push_back(id);
                 return true;
               }).ok());
  EXPECT_EQ(ids, (std::vector<std::string>{"r\x01", "r0"}));
  std::vector<std::string> cols;
  ASSERT_TRUE(r->ListCollections(&cols).ok());
  EXPECT_EQ(cols, (std::vector<std::string>{"b", "c", "c0"}));
}

}  // namespace
}  // namespace tandem::engine
