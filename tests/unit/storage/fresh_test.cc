// Field values written inside the `fields` table go to `fresh` and are folded back
// later: every read, the change log, a sync and the integrity check see one table, before
// and after each fold, across a reopen, a deletion and a large value.
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>

#include "../../../storage/src/field_value.h"
#include "../../../storage/src/lmdb_internal.h"
#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "sync_once.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Value;
using Model = std::map<std::string, std::map<std::string, int64_t>>;  // record -> field -> value

std::string Id(int i) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "r%03d", i);
  return buf;
}

LmdbStore& StoreOf(engine::Replica& r) { return *dynamic_cast<LmdbStore*>(&r.store()); }

// A replica's stored bytes, read through its own environment: a second environment on
// the same files in this process would break LMDB's locks (closing it drops them all).
// The value of `key` in `table` ("fresh", "fields" or "meta"), empty if none; *entries
// (if not null) gets how many the table holds.
std::string Stored(engine::Replica& r, const std::string& table, const std::string& key,
                   size_t* entries = nullptr) {
  auto* impl = StoreOf(r).impl();
  std::shared_lock lock(impl->resize_mu);
  const MDB_dbi dbi = table == "fresh"    ? impl->fresh
                      : table == "fields" ? impl->fields
                                          : impl->meta;
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(impl->env, nullptr, MDB_RDONLY, &txn), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
  std::string out;
  if (!key.empty() && mdb_get(txn, dbi, &k, &v) == 0)
    out.assign(static_cast<const char*>(v.mv_data), v.mv_size);
  MDB_stat st{};
  EXPECT_EQ(mdb_stat(txn, dbi, &st), 0);
  if (entries) *entries = st.ms_entries;
  mdb_txn_abort(txn);
  return out;
}
size_t FreshCount(engine::Replica& r) {
  size_t n = 0;
  Stored(r, "fresh", "", &n);
  return n;
}
uint32_t FormatOf(engine::Replica& r) {
  const std::string v = Stored(r, "meta", "format");
  uint32_t f = 0;
  if (v.size() == 4) std::memcpy(&f, v.data(), 4);
  return f;
}
// The table that holds the field stored under `key`.
std::string TableOf(engine::Replica& r, const std::string& key) {
  return Stored(r, "fresh", key).empty() ? "fields" : "fresh";
}

// While another process, perhaps of an older build that knows nothing of `fresh`, has
// the replica open, writes stay in `fields`; once it is gone, they go to `fresh`.
// Another process with the replica open (LMDB alone, as any build opens it), until the
// object goes. One at a time (a second child would inherit the first's pipe).
class OpenElsewhere {
 public:
  explicit OpenElsewhere(const std::string& dir) {
    int up[2];
    if (pipe(up) != 0) return;
    if (pipe(down_) != 0) {
      close(up[0]);
      close(up[1]);
      return;
    }
    child_ = fork();
    if (child_ == 0) {
      close(up[0]);
      close(down_[1]);
      MDB_env* env = nullptr;
      MDB_txn* txn = nullptr;
      int rc = mdb_env_create(&env);
      if (!rc) rc = mdb_env_set_maxdbs(env, 16);
      if (!rc) rc = mdb_env_open(env, dir.c_str(), MDB_NOTLS, 0644);
      if (!rc) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
      if (!rc) mdb_txn_abort(txn);
      const char ok = rc ? 'n' : 'y';
      if (write(up[1], &ok, 1) != 1) _exit(2);
      char c;
      while (read(down_[0], &c, 1) > 0) {
      }
      if (env) mdb_env_close(env);
      _exit(0);
    }
    close(up[1]);
    close(down_[0]);
    char ok = 0;
    open_ = child_ > 0 && read(up[0], &ok, 1) == 1 && ok == 'y';
    close(up[0]);
  }
  ~OpenElsewhere() { EXPECT_TRUE(Close()); }
  bool open() const { return open_; }
  // Closes it; whether the process ended well.
  bool Close() {
    if (child_ < 0) return true;  // closed already
    close(down_[1]);
    int status = 0;
    const bool ok =
        waitpid(child_, &status, 0) == child_ && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    child_ = -1;
    return ok;
  }

 private:
  int down_[2] = {-1, -1};
  pid_t child_ = -1;
  bool open_ = false;
};

// Writes c/r1.x = v in a replica of two records (MakeTwoRecords) whose `fresh` is
// empty: it goes there, and raises the format.
void PutFirstInFresh(engine::Replica& r, int64_t v) {
  ASSERT_TRUE(r.Put("c", "r1", {{"x", Value{v}}}).ok());
  EXPECT_EQ(FreshCount(r), 1u);
  EXPECT_EQ(FormatOf(r), kFormatFastSums);
  auto got = r.Get("c", "r1");
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(engine::SameValue(got->fields.at("x").scalar, Value{v}));
  EXPECT_TRUE(Check(StoreOf(r)).ok());
}

// The stored key of c/<record>.<field>, the names "c", "x" and "s" interned in that
// order (as MakeTwoRecords and the tests after it do): varint(index of "c") record \0
// varint(index of the field) (format.md).
std::string KeyOf(const std::string& record, char field) {
  return std::string(1, '\0') + record + '\0' + static_cast<char>(field == 'x' ? 1 : 2);
}

// Which checksum the value stored under `key` carries: "XXH3", "SipHash", or "neither".
std::string SumOf(engine::Replica& r, const std::string& key) {
  std::string v = Stored(r, "fresh", key);
  if (v.empty()) v = Stored(r, "fields", key);
  if (v.size() < 2 + kValueChecksum || v[0] != 0) return "neither";
  const size_t n = v.size() - kValueChecksum;
  char sum[kValueChecksum];
  FastChecksum(key, v.data(), n, sum);
  if (std::memcmp(sum, v.data() + n, kValueChecksum) == 0) return "XXH3";
  SipChecksum(key, v.data(), n, sum);
  if (std::memcmp(sum, v.data() + n, kValueChecksum) == 0) return "SipHash";
  return "neither";
}

// A replica in `dir` holding c/r1.x = 1 and c/r2.x = 2, each appended to `fields`, of
// format 8 as an older build leaves it (written while another process had it open: their
// checksums are SipHash's).
void MakeTwoRecords(const std::string& dir) {
  auto r = CreateReplica(dir);
  ASSERT_TRUE(r.ok());
  OpenElsewhere other(dir);
  ASSERT_TRUE(other.open());
  ASSERT_TRUE((*r)->Put("c", "r1", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*r)->Put("c", "r2", {{"x", Value{int64_t{2}}}}).ok());
  EXPECT_EQ(FormatOf(**r), kFormatChecksums);
  EXPECT_EQ(SumOf(**r, KeyOf("r1", 'x')), "SipHash");
}

// Every read of the replica shows the model: each record by Get, the collection by Scan,
// the change feed's records, and the integrity check passes.
void ExpectReads(engine::Replica& r, const Model& model, const std::string& when) {
  SCOPED_TRACE(when);
  for (int i = 0; i < 200; ++i) {
    auto got = r.Get("c", Id(i));
    auto it = model.find(Id(i));
    if (it == model.end()) {
      EXPECT_EQ(got.status().code(), Code::kNotFound) << Id(i);
      continue;
    }
    ASSERT_TRUE(got.ok()) << Id(i) << ": " << got.status().ToString();
    ASSERT_EQ(got->fields.size(), it->second.size()) << Id(i);
    for (const auto& [f, v] : it->second)
      EXPECT_TRUE(engine::SameValue(got->fields.at(f).scalar, Value{v})) << Id(i) << "." << f;
  }
  Model scanned;
  ASSERT_TRUE(r.Scan("c", "", [&](const engine::Record& rec) {
                 for (const auto& [f, v] : rec.fields)
                   scanned[rec.id][f] = std::get<int64_t>(v.scalar);
                 return true;
               }).ok());
  EXPECT_EQ(scanned, model);
  auto colls = r.Collections();
  ASSERT_TRUE(colls.ok());
  EXPECT_EQ(*colls, std::vector<std::string>{"c"});
  CheckReport rep;
  Status st = Check(StoreOf(r), &rep);
  EXPECT_TRUE(st.ok()) << st.ToString();
  size_t fields = 0;
  for (const auto& [id, fs] : model) fields += fs.size();
  // Deleted records keep a field state without markers each.
  EXPECT_GE(rep.fields, fields);
}

TEST(Fresh, WritesInsideTheTableReadTheSameBeforeAndAfterTheyAreFolded) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b";
  Options o;
  o.fold_floor = 40;
  o.fold_slice = 16;
  auto ra = CreateReplica(a, o);
  ASSERT_TRUE(ra.ok());
  Model model;
  // Ascending ids: appended to `fields`, nothing in `fresh`.
  ASSERT_TRUE((*ra)
                  ->Write([&](engine::Batch& bt) {
                    for (int i = 0; i < 200; ++i)
                      for (const char* f : {"x", "y"}) {
                        TANDEM_RETURN_IF_ERROR(bt.Put("c", Id(i), f, Value{int64_t{i}}));
                        model[Id(i)][f] = i;
                      }
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(FreshCount(**ra), 0u);
  EXPECT_EQ(FormatOf(**ra), kFormatFastSums) << "checksummed by XXH3";
  ExpectReads(**ra, model, "loaded");

  // Rounds of writes scattered inside the table: a few records' fields, a new field on
  // some, a record deleted. `fresh` fills, then is folded a slice at a time.
  size_t most = 0, folds = 0, before = 0;
  std::set<std::string> x_written;  // records whose x was written again
  for (int round = 1; round <= 30; ++round) {
    ASSERT_TRUE((*ra)
                    ->Write([&](engine::Batch& bt) {
                      for (int k = 0; k < 7; ++k) {
                        const int i = (round * 37 + k * 53) % 200;
                        const char* f = k % 3 ? "x" : "z";
                        TANDEM_RETURN_IF_ERROR(
                            bt.Put("c", Id(i), f, Value{int64_t{round * 1000 + k}}));
                        if (k % 3) x_written.insert(Id(i));
                        if (model.count(Id(i)))
                          model[Id(i)][f] = round * 1000 + k;
                        else
                          model[Id(i)] = {{f, round * 1000 + k}};
                      }
                      return Status::Ok();
                    })
                    .ok());
    if (round % 4 == 0) {
      const std::string gone = Id((round * 11) % 200);
      ASSERT_TRUE((*ra)->Delete("c", gone).ok());
      model.erase(gone);
    }
    const size_t now = FreshCount(**ra);
    if (now < before) ++folds;
    before = now;
    most = std::max(most, now);
    ExpectReads(**ra, model, "round " + std::to_string(round));
  }
  EXPECT_EQ(FormatOf(**ra), kFormatFastSums);
  EXPECT_GT(folds, 0u) << "folded";
  EXPECT_GT(most, 20u) << "filled";
  // Bounded: the floor, a sixteenth of the fields (at most 600), one transaction's writes.
  EXPECT_LE(most, 40u + 600 / 16 + 8);

  // A large value replaces one held in `fresh`: it goes to `fields`, and nothing in
  // `fresh` hides it. The stored key of c/r037.x: the names "c" and "x" were interned
  // first (format.md).
  const std::string key("\0r037\0\x01", 7);
  x_written.insert(Id(37));
  ASSERT_TRUE((*ra)->Put("c", Id(37), {{"x", Value{int64_t{0}}}}).ok());
  EXPECT_EQ(TableOf(**ra, key), "fresh");
  const std::string big(600 << 10, 'q');
  ASSERT_TRUE((*ra)->Put("c", Id(37), {{"x", Value{big}}}).ok());
  EXPECT_EQ(TableOf(**ra, key), "fields");
  {
    auto got = (*ra)->Get("c", Id(37));
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(engine::SameValue(got->fields.at("x").scalar, Value{big}));
  }

  // A peer receives the same, and so does a reopened replica.
  auto rb = CreateReplica(b, o);
  ASSERT_TRUE(rb.ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  for (auto* r : {ra->get(), rb->get()}) {
    auto got = r->Get("c", Id(37));
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(engine::SameValue(got->fields.at("x").scalar, Value{big}));
  }
  ASSERT_TRUE((*ra)->Put("c", Id(37), {{"x", Value{int64_t{37}}}}).ok());
  model[Id(37)]["x"] = 37;
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ExpectReads(**rb, model, "peer");
  ra->reset();
  ra = OpenReplica(a, o);
  ASSERT_TRUE(ra.ok());
  ExpectReads(**ra, model, "reopened");
  // Deleted records stay deleted once their states are folded, however many folds.
  for (int round = 0; round < 20; ++round)
    ASSERT_TRUE((*ra)
                    ->Write([&](engine::Batch& bt) {
                      for (int i = round; i < 200; i += 20)
                        if (model.count(Id(i))) {
                          TANDEM_RETURN_IF_ERROR(bt.Put("c", Id(i), "y", Value{int64_t{-i}}));
                          model[Id(i)]["y"] = -i;
                        }
                      return Status::Ok();
                    })
                    .ok());
  ExpectReads(**ra, model, "after more folds");
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ExpectReads(**rb, model, "peer after more folds");
  // Collected, the deleted records' states leave both tables: none comes back, through
  // a fold or a sync. The collection repacks the tables, folding `fresh` whole.
  engine::Replica::CollectStats stats;
  ASSERT_TRUE((*ra)->Collect((*ra)->Meta()->vv, &stats, 0).ok());
  EXPECT_GT(stats.collected, 0u);
  if (stats.repacked) {
    EXPECT_EQ(FreshCount(**ra), 0u);
  }
  ExpectReads(**ra, model, "collected once");
  // One more deleted, with no fold: its states in `fresh` over its live ones in `fields`
  // (its x as loaded); collected from both.
  int victim = 0;
  while (!model.count(Id(victim)) || x_written.count(Id(victim))) ++victim;
  ASSERT_LT(victim, 200);
  const std::string victim_x = std::string(1, '\0') + Id(victim) + std::string("\0\x01", 2);
  ra->reset();
  Options no_fold = o;
  no_fold.fold_floor = 100000;
  ra = OpenReplica(a, no_fold);
  ASSERT_TRUE(ra.ok());
  // The newest change-log entry's field is never collected: another write goes last.
  for (int i : {victim, victim + 1}) {
    ASSERT_TRUE((*ra)->Delete("c", Id(i)).ok());
    model.erase(Id(i));
  }
  ASSERT_EQ(TableOf(**ra, victim_x), "fresh");
  ASSERT_FALSE(Stored(**ra, "fields", victim_x).empty());
  stats = {};
  ASSERT_TRUE((*ra)->Collect((*ra)->Meta()->vv, &stats, 0).ok());
  EXPECT_GT(stats.collected, 0u);
  EXPECT_TRUE(Stored(**ra, "fresh", victim_x).empty());
  EXPECT_TRUE(Stored(**ra, "fields", victim_x).empty());
  ExpectReads(**ra, model, "collected twice");
  ra->reset();
  ra = OpenReplica(a, o);
  ASSERT_TRUE(ra.ok());
  ExpectReads(**ra, model, "collected");
  for (int round = 0; round < 10; ++round)
    ASSERT_TRUE((*ra)
                    ->Write([&](engine::Batch& bt) {
                      for (int i = round; i < 200; i += 10)
                        if (model.count(Id(i))) {
                          TANDEM_RETURN_IF_ERROR(bt.Put("c", Id(i), "x", Value{int64_t{i}}));
                          model[Id(i)]["x"] = i;
                        }
                      return Status::Ok();
                    })
                    .ok());
  ExpectReads(**ra, model, "collected, then folds");
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ExpectReads(**rb, model, "peer, collected");
}

// A replica from before `fresh` (no such table, format 9) opens, gains the table, and
// its first write inside the table marks it as of the new format.
TEST(Fresh, AReplicaFromBeforeGainsTheTable) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  MakeTwoRecords(a);
  {
    testing::RawWriter w(a);
    const MDB_dbi fresh = w.Open("fresh");
    ASSERT_EQ(mdb_drop(w.txn, fresh, 1), 0);
    const MDB_dbi meta = w.Open("meta");
    uint32_t nine = kFormatHeld;
    MDB_val k{6, const_cast<char*>("format")}, v{4, &nine};
    ASSERT_EQ(mdb_put(w.txn, meta, &k, &v, 0), 0);
    w.Commit();
  }
  auto r = OpenReplica(a);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  PutFirstInFresh(**r, 3);
}

// A repack (after a collection that removed much) folds all of `fresh`, wherever the
// last fold stopped.
TEST(Fresh, ARepackFoldsAllOfIt) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  Options o;
  o.fold_floor = 10;
  o.fold_slice = 4;
  auto r = CreateReplica(a, o);
  ASSERT_TRUE(r.ok());
  Model model;
  auto put = [&](int i, int64_t v) {
    ASSERT_TRUE((*r)->Put("c", Id(i), {{"x", Value{v}}}).ok());
    model[Id(i)]["x"] = v;
  };
  for (int i = 0; i < 100; ++i) put(i, i);
  for (int k = 0; k < 60; ++k) put((k * 37) % 100, 1000 + k);  // folds along the way
  ASSERT_GT(FreshCount(**r), 0u);
  ASSERT_TRUE((*r)->Write([&](engine::Batch& bt) {
                    for (int i = 0; i < 100; i += 3) {
                      TANDEM_RETURN_IF_ERROR(bt.Delete("c", Id(i)));
                      model.erase(Id(i));
                    }
                    return Status::Ok();
                  })
                  .ok());
  put(1, 1);  // the newest change is never collected
  // As if the last fold had stopped in the middle, with entries on both sides.
  StoreOf(**r).impl()->fold_at = std::string(1, '\0') + Id(50) + std::string("\0\x01", 2);
  engine::Replica::CollectStats stats;
  ASSERT_TRUE((*r)->Collect((*r)->Meta()->vv, &stats, 0).ok());
  ASSERT_TRUE(stats.repacked);
  EXPECT_EQ(FreshCount(**r), 0u);
  ExpectReads(**r, model, "repacked");
}

// Stores what a filtered session leaves: the peer's state (which collections it took,
// and delivery) and, in the meta, what it bore out for them.
void PutFiltered(engine::Replica& r, const engine::ReplicaId& peer,
                 const engine::CollectionFilter& taken,
                 const engine::CollectionFilter& delivery = {}) {
  auto txn = r.store().BeginWrite();
  ASSERT_TRUE(txn.ok());
  engine::PeerState ps;
  ps.filtered = true;
  ps.received = taken;
  ps.delivered = 5;
  ps.delivery = delivery;
  ASSERT_TRUE((*txn)->PutPeer(peer, ps).ok());
  engine::ReplicaMeta meta;
  ASSERT_TRUE((*txn)->GetMeta(&meta).ok());
  meta.absorbed.Raise(peer, 3);
  meta.scope = taken;
  ASSERT_TRUE((*txn)->PutMeta(meta).ok());
  ASSERT_TRUE((*txn)->Commit().ok());
}

TEST(Fresh, NoneWhileAnotherProcessHasTheReplicaOpen) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  MakeTwoRecords(a);
  OpenElsewhere other(a);
  ASSERT_TRUE(other.open());
  auto r = OpenReplica(a);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Put("c", "r1", {{"x", Value{int64_t{3}}}}).ok());
  EXPECT_EQ(FreshCount(**r), 0u);
  EXPECT_NE(FormatOf(**r), kFormatFresh);
  // Nor what format 11 adds, which would let the next write go to `fresh`: a filtered
  // peer's state and what filtered sessions bore out are written as before it.
  const engine::ReplicaId peer = RandomReplicaId();
  PutFiltered(**r, peer, engine::CollectionFilter::Only({"c"}));
  EXPECT_LT(FormatOf(**r), kFormatFresh);
  EXPECT_EQ((*r)->Peer(peer)->received, engine::CollectionFilter::None());
  EXPECT_TRUE((*r)->Meta()->absorbed.empty());
  // Nor filters that leave collections out (format 12): none received, none delivered,
  // nothing borne out.
  PutFiltered(**r, peer, engine::CollectionFilter::AllBut({"secret"}),
              engine::CollectionFilter::AllBut({"secret"}));
  EXPECT_LT(FormatOf(**r), kFormatFresh);
  EXPECT_EQ((*r)->Peer(peer)->received, engine::CollectionFilter::None());
  EXPECT_EQ((*r)->Peer(peer)->delivery, engine::CollectionFilter::None());
  EXPECT_TRUE((*r)->Meta()->absorbed.empty());
  ASSERT_TRUE((*r)->Put("c", "r1", {{"x", Value{int64_t{4}}}}).ok());
  EXPECT_EQ(FreshCount(**r), 0u);
  // Nor XXH3's checksum (format 13), which an older build would refuse as damage: a
  // small state and a large one (written into the space LMDB reserves) keep SipHash's.
  EXPECT_EQ(SumOf(**r, KeyOf("r1", 'x')), "SipHash");
  const Value large{std::string(2000, 'l')};
  ASSERT_TRUE((*r)->Add("c", "r1", "s", large).ok());
  EXPECT_EQ(SumOf(**r, KeyOf("r1", 's')), "SipHash");
  EXPECT_LT(FormatOf(**r), kFormatFresh);
  ASSERT_TRUE(other.Close());
  PutFirstInFresh(**r, 4);
  EXPECT_EQ(SumOf(**r, KeyOf("r1", 'x')), "XXH3");
  ASSERT_TRUE((*r)->Add("c", "r1", "s", Value{std::string(2000, 'm')}).ok());
  EXPECT_EQ(SumOf(**r, KeyOf("r1", 's')), "XXH3");
  EXPECT_EQ(SumOf(**r, KeyOf("r2", 'x')), "SipHash") << "an older value keeps its sum";
  EXPECT_TRUE(Check(StoreOf(**r)).ok());
}

// Past format 10 as well: a replica at format 10 takes nothing of format 11 while another
// process has it open, one at 11 nothing of 12, and each does once it is alone.
TEST(Fresh, NoFormat11Or12WhileAnotherProcessHasTheReplicaOpen) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  MakeTwoRecords(a);
  {
    uint32_t ten = kFormatFresh;  // as a build of format 10 leaves it
    testing::RawPut(a, "meta", "format", std::string(reinterpret_cast<const char*>(&ten), 4));
  }
  auto r = OpenReplica(a);
  ASSERT_TRUE(r.ok());
  const engine::ReplicaId peer = RandomReplicaId();
  // Stored while another process has the replica open: the format stays, the filter is
  // not written.
  auto held_back = [&](const engine::CollectionFilter& f, uint32_t format) {
    OpenElsewhere other(a);
    ASSERT_TRUE(other.open());
    PutFiltered(**r, peer, f);
    EXPECT_EQ(FormatOf(**r), format);
    EXPECT_EQ((*r)->Peer(peer)->received, engine::CollectionFilter::None());
    EXPECT_TRUE((*r)->Meta()->absorbed.empty());
  };
  held_back(engine::CollectionFilter::Only({"c"}), kFormatFresh);
  PutFiltered(**r, peer, engine::CollectionFilter::Only({"c"}));
  ASSERT_EQ(FormatOf(**r), kFormatFiltered);
  EXPECT_EQ((*r)->Peer(peer)->received, engine::CollectionFilter::Only({"c"}));
  held_back(engine::CollectionFilter::AllBut({"secret"}), kFormatFiltered);
  PutFiltered(**r, peer, engine::CollectionFilter::AllBut({"secret"}));
  EXPECT_EQ(FormatOf(**r), kFormatExclusions);
  EXPECT_EQ((*r)->Peer(peer)->received, engine::CollectionFilter::AllBut({"secret"}));
  EXPECT_EQ((*r)->Meta()->scope, engine::CollectionFilter::AllBut({"secret"}));
}

// The transaction that raises the format keeps other processes from opening the
// replica until it ends: one that opens meanwhile waits, then reads the new format (an
// older build refuses it), never the old one.
TEST(Fresh, NoProcessOpensTheReplicaWhileTheFormatIsRaised) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  MakeTwoRecords(a);
  auto r = OpenReplica(a);
  ASSERT_TRUE(r.ok());
  int go[2], up[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(up), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // opens the replica as any build does, and says which format it read
    close(go[1]);
    close(up[0]);
    char c;
    if (read(go[0], &c, 1) != 1) _exit(2);
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    MDB_dbi meta = 0;
    uint32_t format = 0;
    int rc = mdb_env_create(&env);
    if (!rc) rc = mdb_env_set_maxdbs(env, 16);
    if (!rc) rc = mdb_env_open(env, a.c_str(), MDB_NOTLS, 0644);
    if (!rc) rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "meta", 0, &meta);
    MDB_val k{6, const_cast<char*>("format")}, v;
    if (!rc) rc = mdb_get(txn, meta, &k, &v);
    if (!rc && v.mv_size == 4) std::memcpy(&format, v.mv_data, 4);
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(env);
    _exit(write(up[1], &format, 4) == 4 ? 0 : 3);
  }
  close(go[0]);
  close(up[1]);
  ASSERT_TRUE((*r)->Write([&](engine::Batch& bt) {
                    TANDEM_RETURN_IF_ERROR(bt.Put("c", "r1", "x", Value{int64_t{5}}));
                    // The format is raised in this transaction: the other process opens now.
                    const char c = 'g';
                    if (write(go[1], &c, 1) != 1) return Status::Io("pipe");
                    std::this_thread::sleep_for(std::chrono::milliseconds(300));
                    return Status::Ok();
                  })
                  .ok());
  uint32_t seen = 0;
  ASSERT_EQ(read(up[0], &seen, 4), 4);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(seen, kFormatFastSums);
  EXPECT_EQ(FreshCount(**r), 1u);
}

// What a replica that leaves collections out collects by what it bore out of one
// collection is remembered for that collection (format 14), which an older build would
// not honour: while another process has the replica open, what only that would remove
// stays; once it is gone, it goes.
TEST(Fresh, NoCollectionInOneCollectionWhileAnotherProcessHasTheReplicaOpen) {
  testing::TempDir tmp;
  const std::string bdir = tmp / "b";
  auto a = CreateReplica(tmp / "a");
  auto b = CreateReplica(bdir);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Put("products", "p0", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*a)->Put("secrets", "s0", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*a)->Write([](engine::Batch& t) { return t.Delete("products", "p0"); }).ok());
  auto page = (*a)->CollectDeltas(0, 1 << 20, nullptr);
  ASSERT_TRUE(page.ok() && page->done);
  std::vector<engine::FieldDelta> products;
  for (auto& d : page->deltas)
    if (d.key.collection == "products") products.push_back(std::move(d));
  ASSERT_TRUE((*b)->ApplyDeltas(products).ok());
  ASSERT_TRUE((*b)->Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());  // the newest entry
  {  // as a session that took products alone leaves it
    auto txn = (*b)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    engine::ReplicaMeta meta;
    ASSERT_TRUE((*txn)->GetMeta(&meta).ok());
    meta.absorbed = (*a)->Meta()->vv;
    meta.scope = engine::CollectionFilter::Only({"products"});
    ASSERT_TRUE((*txn)->PutMeta(meta).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  const engine::VersionVector holding = (*b)->Meta()->Holding();
  ASSERT_FALSE((*b)->Meta()->vv.Covers(holding));
  engine::Replica::CollectStats stats;
  {
    OpenElsewhere other(bdir);
    ASSERT_TRUE(other.open());
    ASSERT_TRUE((*b)->Collect(holding, &stats).ok());
    EXPECT_EQ(stats.collected, 0u);
    EXPECT_LT(FormatOf(**b), kFormatCollectedIn);
  }
  ASSERT_TRUE((*b)->Collect(holding, &stats).ok());
  EXPECT_EQ(stats.collected, 1u);
  EXPECT_EQ(FormatOf(**b), kFormatCollectedIn);
  // Kept across a reopen, and read by the check.
  b->reset();
  b = OpenReplica(bdir);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->ApplyDeltas(products).ok());
  EXPECT_FALSE((*b)->Get("products", "p0").ok()) << "collected, then taken back";
  EXPECT_TRUE(Check(StoreOf(**b)).ok());
  // Damaged, it is named, and a state it would judge is not taken.
  b->reset();
  testing::RawPut(bdir, "meta", "collected-in", std::string("\x01\x05", 2));
  b = OpenReplica(bdir);
  ASSERT_TRUE(b.ok());
  Status st = Check(StoreOf(**b));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("collected-in"), std::string::npos) << st.ToString();
  st = (*b)->ApplyDeltas(products);
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE((*b)->Get("products", "p0").ok());
}

}  // namespace
}  // namespace tandem::storage
