// Data that grows, then shrinks: 100,000 records x 10 fields written on one replica and
// synced to two more, nine records in ten deleted (every one but each tenth, the worst
// case for page fill) and synced, then collected on all three (what every one of them
// holds). The store's data (the pages every table holds, storage::LmdbStore::DataBytes)
// is compared with a fresh replica that received only the live data by sync.
//
//   growth [--records N] [--dir DIR]
#include <cstring>

#include "bench_sync.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

uint64_t DataBytes(engine::Replica& r) {
  auto b = dynamic_cast<storage::LmdbStore&>(r.store()).DataBytes();
  Must(b.status(), "data bytes");
  return *b;
}

uint64_t LogEntries(engine::Replica& r) {
  auto txn = r.store().BeginRead();
  Must(txn.status(), "read");
  uint64_t n = 0;
  Must((*txn)->ScanLog(0, [&](uint64_t, const engine::FieldKey&) { return ++n, true; }), "log");
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  DataSet ds;
  std::string base = "bench-growth-data";
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--records")) ds.records = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) base = argv[i + 1];
  }
  std::filesystem::remove_all(base);
  auto a = FreshReplica(base + "/a"), b = FreshReplica(base + "/b"), c = FreshReplica(base + "/c");
  std::mt19937_64 rng(42);
  double t0 = Now();
  LoadDataSet(*a, ds, rng, 1000);
  const double load_s = Now() - t0;
  SyncOnce(*a, *b);
  SyncOnce(*b, *c);
  const uint64_t full_bytes = DataBytes(*a);

  t0 = Now();
  int deleted = 0;
  for (int start = 0; start < ds.records; start += 1000) {
    Must(a->Write([&](engine::Batch& batch) {
      for (int i = start; i < std::min(ds.records, start + 1000); ++i) {
        if (i % 10 == 0) continue;
        TANDEM_RETURN_IF_ERROR(batch.Delete("bench", DataSet::RecordId(i)));
        ++deleted;
      }
      return Status::Ok();
    }),
         "delete");
  }
  const double delete_s = Now() - t0;
  SyncOnce(*a, *b);
  SyncOnce(*b, *c);
  const uint64_t before_bytes = DataBytes(*a);
  const uint64_t before_log = LogEntries(*a);

  engine::VersionVector absorbed = a->Meta()->vv;
  for (auto* r : {b.get(), c.get()})
    absorbed = engine::VersionVector::Meet(absorbed, r->Meta()->vv);
  engine::Replica::CollectStats stats;
  t0 = Now();
  Must(a->Collect(absorbed, &stats), "collect");
  const double collect_s = Now() - t0;
  engine::Replica::CollectStats others;
  Must(b->Collect(absorbed, &others), "collect");
  Must(c->Collect(absorbed, &others), "collect");
  const uint64_t after_bytes = DataBytes(*a);
  const uint64_t after_log = LogEntries(*a);
  // Nothing comes back, and the three still agree.
  SyncOnce(*a, *b);
  SyncOnce(*b, *c);
  const uint64_t live_fields = CountFields(*a);
  if (live_fields != CountFields(*c) || live_fields != uint64_t(ds.records / 10) * ds.fields)
    Must(Status::Corrupt("replicas disagree after collection"), "verify");

  auto fresh = FreshReplica(base + "/fresh");
  SyncOnce(*a, *fresh);
  const uint64_t live_bytes = DataBytes(*fresh);
  const double ratio = double(after_bytes) / double(live_bytes);

  std::printf("growth: %d records x %d fields on three durable replicas, %d records deleted\n",
              ds.records, ds.fields, deleted);
  std::printf("  %-52s %14s\n", "", "bytes of data");
  std::printf("  %-52s %14llu\n", "after the load and sync",
              static_cast<unsigned long long>(full_bytes));
  std::printf("  %-52s %14llu  (%llu log entries)\n", "after the deletions, before collection",
              static_cast<unsigned long long>(before_bytes),
              static_cast<unsigned long long>(before_log));
  std::printf("  %-52s %14llu  (%llu log entries)\n", "after collection",
              static_cast<unsigned long long>(after_bytes),
              static_cast<unsigned long long>(after_log));
  std::printf("  %-52s %14llu\n", "a fresh replica holding the live data",
              static_cast<unsigned long long>(live_bytes));
  std::printf(
      "  collected %llu field states (%llu bytes) in %.2f s, %llu transactions; "
      "load %.2f s, deletes %.2f s\n",
      static_cast<unsigned long long>(stats.collected),
      static_cast<unsigned long long>(stats.bytes), collect_s,
      static_cast<unsigned long long>(stats.transactions), load_s, delete_s);
  std::printf(
      "{\"bench\": \"growth\", \"fields\": %d, \"deleted_records\": %d, \"bytes_full\": %llu, "
      "\"bytes_before_gc\": %llu, \"bytes_after_gc\": %llu, \"bytes_live\": %llu, "
      "\"collected\": %llu, \"collect_s\": %.3f, \"ratio_size_after_gc_vs_live\": %.3f}\n",
      ds.records * ds.fields, deleted, static_cast<unsigned long long>(full_bytes),
      static_cast<unsigned long long>(before_bytes), static_cast<unsigned long long>(after_bytes),
      static_cast<unsigned long long>(live_bytes), static_cast<unsigned long long>(stats.collected),
      collect_s, ratio);
  std::filesystem::remove_all(base);
  return 0;
}
