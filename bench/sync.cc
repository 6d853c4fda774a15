// bench/sync: bandwidth and speed of the sync protocol over an in-process transport
// (every message Cap'n Proto encoded, counted in bytes; no encryption yet).
//   1. A holds the local_writes data set (100,000 records x 10 fields); full sync to an
//      empty B.
//   2. A changes 1,000 fields and B a different 1,000; sync both ways.
// Raw LMDB write speed is measured in the same run. The payload of a change is its
// record id, field name and value bytes (strings: their length; integers: 8).
//
//   sync [--records N] [--dir DIR]
#include <cstring>

#include "bench_sync.h"
#include "tandem/storage/replica.h"

using namespace tandem;
using namespace tandem::bench;

namespace {

uint64_t PayloadBytes(const std::string& id, const std::string& field, const engine::Value& v) {
  uint64_t n = id.size() + field.size();
  if (auto* s = std::get_if<std::string>(&v)) return n + s->size();
  return n + 8;
}

}  // namespace

int main(int argc, char** argv) {
  DataSet ds;
  std::string base = "bench-sync-data";
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--records")) ds.records = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) base = argv[i + 1];
  }
  const int total = ds.records * ds.fields;
  uint64_t raw_bytes = 0;
  const double raw_puts = RawLmdbPuts(base + "/raw", ds, 1000, &raw_bytes);

  auto a = storage::CreateReplica(base + "/a");
  auto b = storage::CreateReplica(base + "/b");
  Must(a.status(), "create a");
  Must(b.status(), "create b");
  std::mt19937_64 rng(42);
  LoadDataSet(**a, ds, rng);

  SyncPhase full = SyncOnce(**a, **b);
  // Comparing states (a node's sessions now and then): one pass over every field state.
  const double c0 = Now();
  auto digests = (*b)->Digests();
  Must(digests.status(), "digests");
  const double compare_pass = Now() - c0;

  // Each side changes 1,000 different fields (A the even records, B the odd ones).
  uint64_t payload = 0;
  std::mt19937_64 pick(7);
  auto change = [&](engine::Replica& r, int parity) {
    Must(r.Write([&](engine::Batch& bt) {
      for (int i = 0; i < 1000; ++i) {
        int rec = static_cast<int>(pick() % (ds.records / 2)) * 2 + parity;
        int f = static_cast<int>(pick() % ds.fields);
        engine::Value v = DataSetValue(f, rng);
        payload += PayloadBytes(DataSet::RecordId(rec), DataSet::FieldName(f), v);
        TANDEM_RETURN_IF_ERROR(bt.Put("bench", DataSet::RecordId(rec), DataSet::FieldName(f), v));
      }
      return Status::Ok();
    }),
         "change");
  };
  change(**a, 0);
  change(**b, 1);
  SyncPhase inc = SyncOnce(**a, **b);

  const double full_rate = full.fields / full.seconds;
  std::printf("sync: %d records x %d fields, in-process transport, Cap'n Proto messages\n",
              ds.records, ds.fields);
  std::printf("  %-26s %10s %10s %14s %12s\n", "phase", "seconds", "messages", "bytes", "fields");
  std::printf("  %-26s %10.2f %10llu %14llu %12llu\n", "full sync A -> empty B", full.seconds,
              (unsigned long long)full.messages, (unsigned long long)full.bytes,
              (unsigned long long)full.fields);
  std::printf("  %-26s %10.3f %10llu %14llu %12llu\n", "1,000 + 1,000 changes", inc.seconds,
              (unsigned long long)inc.messages, (unsigned long long)inc.bytes,
              (unsigned long long)inc.fields);
  std::printf("  full sync %.0f fields/s; raw LMDB puts %.0f/s (ratio %.2f)\n", full_rate, raw_puts,
              full_rate / raw_puts);
  std::printf("  comparing states: one pass over %d fields %.2f s (%.2f x the full sync)\n", total,
              compare_pass, compare_pass / full.seconds);
  std::printf("  incremental: %llu bytes for %llu payload bytes (%.2f x); %.1f bytes per field\n",
              (unsigned long long)inc.bytes, (unsigned long long)payload,
              static_cast<double>(inc.bytes) / payload, static_cast<double>(inc.bytes) / 2000);
  std::printf(
      "{\"bench\": \"sync\", \"fields\": %d, \"full_sync_seconds\": %.3f, \"full_sync_messages\": "
      "%llu, \"full_sync_bytes\": %llu, \"full_sync_fields_per_s\": %.0f, "
      "\"raw_lmdb_puts_per_s\": %.0f, \"ratio_full_sync_vs_lmdb\": %.3f, \"incremental_messages\": "
      "%llu, \"incremental_bytes\": %llu, \"changed_payload_bytes\": %llu, "
      "\"ratio_incremental_bytes_vs_payload\": %.3f, \"compare_pass_seconds\": %.3f, "
      "\"ratio_compare_pass_vs_full_sync\": %.3f}\n",
      total, full.seconds, (unsigned long long)full.messages, (unsigned long long)full.bytes,
      full_rate, raw_puts, full_rate / raw_puts, (unsigned long long)inc.messages,
      (unsigned long long)inc.bytes, (unsigned long long)payload,
      static_cast<double>(inc.bytes) / payload, compare_pass, compare_pass / full.seconds);
  a->reset();
  b->reset();
  std::filesystem::remove_all(base);
  return 0;
}
