// The workloads Tandem is compared on with in-memory CRDT libraries, on durable replicas:
//   W1  100,000 records x 10 fields (five 16-byte strings, five integers), 1,000 field
//       writes per transaction;
//   W2  a full sync of that state to an empty replica: bytes on the wire (every message
//       encoded as on the wire, batch bodies compressed) and time;
//   W3  then each side updates 1,000 disjoint fields and they sync (and a hundred more
//       rounds of the same, for the cost that writes inside the table defer);
//   W5  100,000 increments of one counter on each of two replicas, 1,000 per
//       transaction, then a sync.
// Raw LMDB (durable puts, 1,000 per transaction) is measured in the same run, interleaved
// with each workload so that both meet the same disk (on a VM the latency of an fsync
// can double within a minute): W1 and W5 are rates against it, W3 a time against one
// such transaction.
//
//   workloads [--records N] [--dir DIR]
#include <cstring>
#include <optional>

#include "bench_sync.h"
#include "tandem/storage/replica.h"

using namespace tandem;
using namespace tandem::bench;

int main(int argc, char** argv) {
  DataSet ds;
  std::string base = "bench-workloads-data";
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--records")) ds.records = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) base = argv[i + 1];
  }
  std::filesystem::remove_all(base);
  const int total = ds.records * ds.fields;
  const double fields = total;

  // W1, interleaved with raw LMDB's durable puts of the same keys, ten transactions of
  // each at a time: both meet the same disk.
  auto a = FreshReplica(base + "/a");
  std::optional<RawLoader> raw;
  raw.emplace(base + "/raw");
  std::mt19937_64 rng(42);
  double raw_seconds = 0, w1_seconds = 0;
  for (int n = 0; n < total; n += 10000) {
    const int end = std::min(total, n + 10000);
    for (int k = n; k < end; k += 1000) raw_seconds += raw->Txn(ds, k, std::min(end, k + 1000));
    const double t0 = Now();
    LoadFields(*a, ds, rng, n, end, 1000);
    w1_seconds += Now() - t0;
  }
  const double raw_puts = fields / raw_seconds;
  const double w1_rate = fields / w1_seconds;

  // W2
  auto b = FreshReplica(base + "/b");
  const SyncPhase w2 = SyncOnce(*a, *b);

  // W3: A the even records, B the odd ones.
  std::mt19937_64 pick(7);
  auto change = [&](engine::Replica& r, int parity) {
    Must(r.Write([&](engine::Batch& bt) {
      for (int i = 0; i < 1000; ++i) {
        const int rec = static_cast<int>(pick() % (ds.records / 2)) * 2 + parity;
        const int f = static_cast<int>(pick() % ds.fields);
        TANDEM_RETURN_IF_ERROR(
            bt.Put("bench", DataSet::RecordId(rec), DataSet::FieldName(f), DataSetValue(f, rng)));
      }
      return Status::Ok();
    }),
         "change");
  };
  change(*a, 0);
  change(*b, 1);
  // Its measure: raw transactions of 1,000 puts in key order just before and after it
  // (the median of ten).
  std::vector<double> raw_txns;
  for (int k = 0; k < 5; ++k) raw_txns.push_back(raw->Txn(ds, k * 1000, (k + 1) * 1000));
  const uint64_t written_before_w3 = BytesWritten();
  const SyncPhase w3 = SyncOnce(*a, *b);
  const uint64_t w3_written = BytesWritten() - written_before_w3;
  for (int k = 5; k < 10; ++k) raw_txns.push_back(raw->Txn(ds, k * 1000, (k + 1) * 1000));
  const double raw_txn_seconds = Median(raw_txns);
  // The floor of an in-place update: raw transactions of 1,000 random overwrites, on the
  // raw data set as loaded (the median of 7).
  std::mt19937_64 raw_pick(11);
  std::vector<double> randoms;
  for (int t = 0; t < 7; ++t) randoms.push_back(raw->RandomTxn(ds, 1000, raw_pick));
  const double raw_random_txn_seconds = Median(randoms);
  // W3 sustained: a hundred more rounds of changes and sync, so that values written
  // inside the table go through `fresh` and are folded into `fields` (kFoldFloor): the
  // folds' cost lands in the changes' commits or the sync's.
  const int rounds = 100;
  double sustained_sync = 0, sustained_round = 0;
  const uint64_t written_before_rounds = BytesWritten();
  for (int i = 0; i < rounds; ++i) {
    const double t0 = Now();
    change(*a, 0);
    change(*b, 1);
    sustained_sync += SyncOnce(*a, *b).seconds;
    sustained_round += Now() - t0;
  }
  const double sustained_written =
      static_cast<double>(BytesWritten() - written_before_rounds) / rounds;
  a.reset();
  b.reset();

  // W5, each transaction followed by a raw one of 1,000 puts in key order.
  auto c = FreshReplica(base + "/c"), d = FreshReplica(base + "/d");
  const int increments = 100000;
  double w5_seconds = 0, w5_raw_seconds = 0;
  for (auto* r : {c.get(), d.get()})
    for (int n = 0; n < increments; n += 1000) {
      const double t0 = Now();
      Must(r->Write([&](engine::Batch& bt) {
        for (int k = 0; k < 1000; ++k) TANDEM_RETURN_IF_ERROR(bt.Incr("bench", "c", "count", 1));
        return Status::Ok();
      }),
           "incr");
      w5_seconds += Now() - t0;
      w5_raw_seconds += raw->Txn(ds, n % total, std::min(total, n % total + 1000));
    }
  raw.reset();
  const double w5_raw_puts = 2.0 * increments / w5_raw_seconds;
  const double w5_rate = 2.0 * increments / w5_seconds;
  const SyncPhase w5 = SyncOnce(*c, *d);
  auto rec = c->Get("bench", "c");
  Must(rec.status(), "read the counter");
  if (rec->fields.at("count").count != 2 * increments)
    Must(Status::Corrupt("the counter does not add up"), "W5");
  c.reset();
  d.reset();
  std::filesystem::remove_all(base);

  std::printf("workloads: %d records x %d fields, durable replicas, wire-encoded sync\n",
              ds.records, ds.fields);
  std::printf("  raw LMDB: %.0f durable puts/s (1,000 per transaction: %.2f ms each)\n", raw_puts,
              1000 / raw_puts * 1e3);
  std::printf("  raw LMDB: %.2f ms for a durable transaction of 1,000 random overwrites\n",
              raw_random_txn_seconds * 1e3);
  std::printf(
      "  (raw LMDB interleaved: with W1 ten transactions of each at a time, five before and\n"
      "   five after W3 (the median), one after each of W5's; %.0f puts/s during W5)\n",
      w5_raw_puts);
  std::printf("  %-44s %12s %14s %10s\n", "workload", "seconds", "rate or bytes", "ratio");
  std::printf("  %-44s %12.2f %12.0f/s %10.2f\n", "W1 field writes, 1,000 per transaction",
              w1_seconds, w1_rate, w1_rate / raw_puts);
  std::printf("  %-44s %12.2f %12llu B %10s\n", "W2 full sync to an empty replica", w2.seconds,
              (unsigned long long)w2.bytes, "");
  std::printf("  %-44s %12.3f %12llu B %10.1f\n", "W3 1,000 + 1,000 changes, then sync", w3.seconds,
              (unsigned long long)w3.bytes, w3.seconds / raw_txn_seconds);
  std::printf("  %-44s %12.2f %12.0f/s %10.2f\n", "W5 counter increments, 1,000 per transaction",
              w5_seconds, w5_rate, w5_rate / w5_raw_puts);
  std::printf("  (W3 against 1,000 random raw overwrites: %.1f; its commits wrote %.1f MB)\n",
              w3.seconds / raw_random_txn_seconds, w3_written / 1e6);
  std::printf(
      "  (W3 sustained, %d more rounds: sync %.1f ms, changes and sync %.1f ms, %.1f MB "
      "written a round)\n",
      rounds, sustained_sync / rounds * 1e3, sustained_round / rounds * 1e3,
      sustained_written / 1e6);
  std::printf("  (W5 sync: %.3f s, %llu bytes)\n", w5.seconds, (unsigned long long)w5.bytes);
  std::printf(
      "{\"bench\": \"workloads\", \"raw_lmdb_puts_per_s\": %.0f, \"w1_writes_per_s\": %.0f, "
      "\"w2_seconds\": %.3f, \"w2_wire_bytes\": %llu, \"w3_seconds\": %.4f, \"w3_wire_bytes\": "
      "%llu, \"w3_bytes_written\": %llu, \"w5_increments_per_s\": %.0f, \"w1_ratio_vs_lmdb\": "
      "%.3f, "
      "\"raw_random_update_txn_ms\": %.2f, \"w3_ratio_vs_random_update_txn\": %.2f, "
      "\"w3_sustained_seconds\": %.4f, \"w3_sustained_round_seconds\": %.4f, "
      "\"w3_sustained_bytes_written\": %.0f, "
      "\"w3_ratio_vs_lmdb_txn\": %.2f, \"w5_ratio_vs_lmdb\": %.3f}\n",
      raw_puts, w1_rate, w2.seconds, (unsigned long long)w2.bytes, w3.seconds,
      (unsigned long long)w3.bytes, (unsigned long long)w3_written, w5_rate, w1_rate / raw_puts,
      raw_random_txn_seconds * 1e3, w3.seconds / raw_random_txn_seconds, sustained_sync / rounds,
      sustained_round / rounds, sustained_written, w3.seconds / raw_txn_seconds,
      w5_rate / w5_raw_puts);
  return 0;
}
