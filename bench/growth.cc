// Data that grows, then shrinks: 100,000 records x 10 fields written on one replica and
// synced to two more, nine records in ten deleted (every one but each tenth, the worst
// case for page fill) and synced, then collected on all three (what every one of them
// holds). The store's data (the pages every table holds, storage::LmdbStore::DataBytes)
// is compared with a fresh replica that received only the live data by sync.
//
// Then an attachment: a file of --attachment-mb MiB (1,024 by default) attached on one
// replica, and the time until a second replica, its `tandem serve` dialling the first's,
// holds the whole blob; the peak anonymous memory (RssAnon) of both daemons meanwhile.
// Against the limits of the same bytes in the same run: libsodium secretstream (sealed
// and opened) plus raw LMDB (512 KiB values, durable transactions of 8 MiB).
//
// Then one field state of --state-mb MiB (64 by default: a set of 4 MiB elements), which
// travels in pieces, synced the same way; the peak RssAnon of both daemons. Then one
// element more, synced into the field the receiver now holds.
//
//   growth [--records N] [--attachment-mb N] [--state-mb N] [--dir DIR]
#include <cstring>
#include <functional>

#include "bench_proc.h"
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

struct AttachmentFigures {
  double attach_s = 0, sync_s = 0, mb_per_s = 0, limit_mb_per_s = 0, ratio = 0;
  double lmdb_mb_per_s = 0, secretstream_mb_per_s = 0;
  double peak_sender_mb = 0, peak_receiver_mb = 0;
};

// Fills `buf` (a multiple of 8 bytes) with bytes from `rng`.
void FillRandom(std::string& buf, std::mt19937_64& rng) {
  for (size_t at = 0; at + 8 <= buf.size(); at += 8) {
    const uint64_t x = rng();
    std::memcpy(buf.data() + at, &x, 8);
  }
}

// Two replicas base/NAME-a and base/NAME-b, members of one new group.
std::pair<std::string, std::string> MemberPair(const std::string& base, const std::string& name) {
  net::InitCrypto();
  const net::Key32 group = net::NewGroupKey();
  const net::Identity ia = net::GenerateIdentity(), ib = net::GenerateIdentity();
  const std::string da = base + "/" + name + "-a", db = base + "/" + name + "-b";
  MakeMember(da, group, ia, {ia, ib});
  MakeMember(db, group, ib, {ia, ib});
  return {da, db};
}

struct DaemonSync {
  double seconds = 0, peak_sender_mb = 0, peak_receiver_mb = 0;
  uint64_t out_of_line = 0;  // field states the receiver kept as they came
};

// `tandem serve` on `da` listening and on `db` dialling it, until `arrived()` holds, at
// most 15 minutes; the time and each daemon's peak RssAnon.
DaemonSync SyncDaemons(const std::string& base, const std::string& da, const std::string& db,
                       const std::function<bool()>& arrived, const char* what) {
  std::filesystem::remove(da + "/daemon.json");  // a run before this one's address
  pid_t pa = Spawn({TANDEM_BIN, "serve", da, "--listen", "127.0.0.1:0"}, da + ".log");
  const std::string addr = WaitListen(da);
  const double t0 = Now();
  pid_t pb = Spawn({TANDEM_BIN, "serve", db, "--peer", addr}, db + ".log");
  PeakRssAnon rss({pa, pb});
  while (!arrived()) {
    if (Now() - t0 > 900) {
      std::fprintf(stderr, "growth: %s did not arrive in 15 minutes; see %s/*.log\n", what,
                   base.c_str());
      kill(pa, SIGKILL);
      kill(pb, SIGKILL);
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  DaemonSync out;
  out.seconds = Now() - t0;
  rss.Stop();
  Stop(pb);
  Stop(pa);
  out.peak_sender_mb = rss.PeakMb(0);
  out.peak_receiver_mb = rss.PeakMb(1);
  return out;
}

// Raw LMDB: `bytes` in 512 KiB values, 8 MiB per durable transaction. MiB/s.
double RawLmdbLargeValues(const std::string& dir, uint64_t bytes) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_mapsize(env, bytes * 2 + (size_t{64} << 20));
  if (mdb_env_open(env, dir.c_str(), 0, 0644)) std::abort();
  std::string value(512 << 10, '\0');
  std::mt19937_64 rng(7);
  const uint64_t n = (bytes + value.size() - 1) / value.size();
  const double t0 = Now();
  MDB_txn* txn = nullptr;
  MDB_dbi dbi;
  for (uint64_t i = 0; i < n; ++i) {
    if (!txn) {
      mdb_txn_begin(env, nullptr, 0, &txn);
      mdb_dbi_open(txn, nullptr, 0, &dbi);
    }
    FillRandom(value, rng);
    const uint64_t key = __builtin_bswap64(i);
    MDB_val k{8, const_cast<uint64_t*>(&key)}, v{value.size(), value.data()};
    if (mdb_put(txn, dbi, &k, &v, 0)) std::abort();
    if ((i + 1) % 16 == 0 || i + 1 == n) {
      if (mdb_txn_commit(txn)) std::abort();
      txn = nullptr;
    }
  }
  const double dt = Now() - t0;
  mdb_env_close(env);
  std::filesystem::remove_all(dir);
  return static_cast<double>(bytes) / (1 << 20) / dt;
}

AttachmentFigures Attachment(const std::string& base, uint64_t bytes) {
  AttachmentFigures f;
  f.lmdb_mb_per_s = RawLmdbLargeValues(base + "/raw-large", bytes);
  f.secretstream_mb_per_s = SecretstreamMbPerS();
  const double mib = static_cast<double>(bytes) / (1 << 20);
  f.limit_mb_per_s = mib / (mib / f.lmdb_mb_per_s + mib / f.secretstream_mb_per_s);

  const std::string file = base + "/attachment.bin";
  {
    std::ofstream out(file, std::ios::binary);
    std::mt19937_64 rng(11);
    std::string block(1 << 20, '\0');
    for (uint64_t done = 0; done < bytes; done += block.size()) {
      FillRandom(block, rng);
      out.write(block.data(),
                static_cast<std::streamsize>(std::min<uint64_t>(block.size(), bytes - done)));
    }
  }
  const auto [da, db] = MemberPair(base, "attach");
  engine::BlobRef ref;
  {
    auto a = storage::OpenReplica(da);
    Must(a.status(), "open a");
    FILE* in = std::fopen(file.c_str(), "rb");
    if (!in) std::abort();
    const double t0 = Now();
    auto r = (*a)->Attach(
        "photos", "big", "img",
        [in](char* buf, size_t cap) -> Result<size_t> { return std::fread(buf, 1, cap, in); },
        "application/octet-stream");
    f.attach_s = Now() - t0;
    std::fclose(in);
    Must(r.status(), "attach");
    ref = *r;
  }
  std::filesystem::remove(file);

  auto b = storage::OpenReplica(db);
  Must(b.status(), "open b");
  const DaemonSync run = SyncDaemons(
      base, da, db,
      [&] {
        auto info = (*b)->Blob(ref.hash);
        Must(info.status(), "blob");
        return *info && (*info)->complete();
      },
      "the attachment");
  f.sync_s = run.seconds;
  f.peak_sender_mb = run.peak_sender_mb;
  f.peak_receiver_mb = run.peak_receiver_mb;
  // Every chunk is there and matches its hash.
  uint64_t read = 0;
  Must((*b)->ReadBlob(ref.hash,
                      [&](std::string_view s) {
                        read += s.size();
                        return Status::Ok();
                      }),
       "read the blob");
  if (read != bytes) Must(Status::Corrupt("the blob arrived short"), "verify");
  f.mb_per_s = mib / f.sync_s;
  f.ratio = f.mb_per_s / f.limit_mb_per_s;
  return f;
}

// One set field of `bytes` in elements of 4 MiB (a field state in pieces, never in a
// blob), synced between two daemons as the attachment is; the peak RssAnon of each. Then
// one more element added on the sender, and synced again: the receiver holds the field
// now, and the state that comes has seen all of it (it takes that one's place).
struct LargeStateFigures {
  DaemonSync first, grown, both;
};

LargeStateFigures LargeState(const std::string& base, uint64_t bytes) {
  constexpr size_t kElement = size_t{4} << 20;
  const size_t count = std::max<size_t>(1, bytes / kElement);
  const auto [da, db] = MemberPair(base, "state");
  std::mt19937_64 rng(13);
  auto add = [&](size_t n, const std::string& dir) {
    auto a = storage::OpenReplica(dir);
    Must(a.status(), ("open " + dir).c_str());
    for (size_t i = 0; i < n; ++i) {
      std::string element(kElement, '\0');
      FillRandom(element, rng);
      Must((*a)->Add("docs", "big", "parts", engine::Value{engine::Bytes{std::move(element)}}),
           "add");
    }
  };
  // Opened for each look, not held open: a daemon alone with its replica may store the
  // state as it came (the first time raises the format, docs/format.md). Whether it did
  // is reported: else it took the state in line, decoded whole.
  auto sync = [&, da = da, db = db](size_t want) {
    DaemonSync out = SyncDaemons(
        base, da, db,
        [&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(40));
          auto b = storage::OpenReplica(db);
          Must(b.status(), "open b");
          auto rec = (*b)->Get("docs", "big");
          if (!rec.ok()) return false;
          auto it = rec->fields.find("parts");
          return it != rec->fields.end() && it->second.set.size() == want;
        },
        "the field state");
    auto b = storage::OpenReplica(db);
    Must(b.status(), "open b");
    storage::CheckReport report;
    Must(storage::Check(*dynamic_cast<storage::LmdbStore*>(&(*b)->store()), &report), "check b");
    out.out_of_line = report.fields_out_of_line;
    return out;
  };
  add(count, da);
  const DaemonSync first = sync(count);
  add(1, da);
  const DaemonSync grown = sync(count + 1);
  // Both sides add one: each state holds what the other has not seen, and each daemon
  // joins the other's with its own.
  add(1, db);
  add(1, da);
  return {first, grown, sync(count + 3)};
}

}  // namespace

int main(int argc, char** argv) {
  DataSet ds;
  std::string base = "bench-growth-data";
  int attachment_mb = 1024;
  int state_mb = 64;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--records")) ds.records = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--dir")) base = argv[i + 1];
    if (!std::strcmp(argv[i], "--attachment-mb")) attachment_mb = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--state-mb")) state_mb = std::atoi(argv[i + 1]);
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
  const AttachmentFigures att = Attachment(base, uint64_t(attachment_mb) << 20);
  std::printf("  attachment of %d MiB: attached in %.2f s; synced between two daemons in %.2f s\n",
              attachment_mb, att.attach_s, att.sync_s);
  std::printf("  %-52s %14.1f\n", "attachment sync MiB/s", att.mb_per_s);
  std::printf("  %-52s %14.1f\n", "raw LMDB MiB/s (512 KiB values, 8 MiB txns)", att.lmdb_mb_per_s);
  std::printf("  %-52s %14.1f\n", "secretstream MiB/s (seal + open)", att.secretstream_mb_per_s);
  std::printf("  %-52s %14.1f\n", "both in sequence MiB/s", att.limit_mb_per_s);
  std::printf("  %-52s %14.2f\n", "ratio (goal >= 0.3)", att.ratio);
  std::printf("  %-52s %8.1f %5.1f\n", "peak RssAnon MB, sending / receiving daemon",
              att.peak_sender_mb, att.peak_receiver_mb);
  const auto [st, grown, both] = LargeState(base, uint64_t(state_mb) << 20);
  std::printf("  a set field of %d MiB (4 MiB elements) synced between two daemons in %.2f s\n",
              state_mb, st.seconds);
  std::printf("  %-52s %8.1f %5.1f\n", "peak RssAnon MB, sending / receiving daemon",
              st.peak_sender_mb, st.peak_receiver_mb);
  std::printf("  %-52s %8s\n", "kept as it came (out of line) by the receiver",
              st.out_of_line ? "yes" : "no");
  std::printf("  then one element more, into the field the receiver holds, in %.2f s\n",
              grown.seconds);
  std::printf("  %-52s %8.1f %5.1f\n", "peak RssAnon MB, sending / receiving daemon",
              grown.peak_sender_mb, grown.peak_receiver_mb);
  std::printf("  %-52s %8s\n", "kept as it came, in place of the one held",
              grown.out_of_line ? "yes" : "no");
  std::printf("  then one element more on each side, the two joined, in %.2f s\n", both.seconds);
  std::printf("  %-52s %8.1f %5.1f\n", "peak RssAnon MB, sending / receiving daemon",
              both.peak_sender_mb, both.peak_receiver_mb);
  std::printf("  %-52s %8s\n", "the join kept out of line, in place of the one held",
              both.out_of_line ? "yes" : "no");
  std::printf(
      "{\"bench\": \"growth\", \"fields\": %d, \"deleted_records\": %d, \"bytes_full\": %llu, "
      "\"bytes_before_gc\": %llu, \"bytes_after_gc\": %llu, \"bytes_live\": %llu, "
      "\"collected\": %llu, \"collect_s\": %.3f, \"ratio_size_after_gc_vs_live\": %.3f, "
      "\"attachment_bytes\": %llu, \"attachment_seconds\": %.3f, \"attachment_mb_per_s\": %.1f, "
      "\"limit_mb_per_s\": %.1f, \"ratio_attachment_vs_secretstream_lmdb\": %.3f, "
      "\"peak_rss_mb\": %.1f, \"peak_rss_mb_sender\": %.1f, \"peak_rss_mb_receiver\": %.1f, "
      "\"state_bytes\": %llu, \"state_seconds\": %.3f, \"state_peak_rss_mb_sender\": %.1f, "
      "\"state_peak_rss_mb_receiver\": %.1f, \"state_kept_as_it_came\": %llu, "
      "\"grown_state_seconds\": %.3f, \"grown_state_peak_rss_mb_sender\": %.1f, "
      "\"grown_state_peak_rss_mb_receiver\": %.1f, \"grown_state_kept_as_it_came\": %llu, "
      "\"joined_state_seconds\": %.3f, \"joined_state_peak_rss_mb_sender\": %.1f, "
      "\"joined_state_peak_rss_mb_receiver\": %.1f, \"joined_state_out_of_line\": %llu}\n",
      ds.records * ds.fields, deleted, static_cast<unsigned long long>(full_bytes),
      static_cast<unsigned long long>(before_bytes), static_cast<unsigned long long>(after_bytes),
      static_cast<unsigned long long>(live_bytes), static_cast<unsigned long long>(stats.collected),
      collect_s, ratio, static_cast<unsigned long long>(attachment_mb) << 20, att.sync_s,
      att.mb_per_s, att.limit_mb_per_s, att.ratio,
      std::max(att.peak_sender_mb, att.peak_receiver_mb), att.peak_sender_mb, att.peak_receiver_mb,
      static_cast<unsigned long long>(state_mb) << 20, st.seconds, st.peak_sender_mb,
      st.peak_receiver_mb, static_cast<unsigned long long>(st.out_of_line), grown.seconds,
      grown.peak_sender_mb, grown.peak_receiver_mb,
      static_cast<unsigned long long>(grown.out_of_line), both.seconds, both.peak_sender_mb,
      both.peak_receiver_mb, static_cast<unsigned long long>(both.out_of_line));
  std::filesystem::remove_all(base);
  return 0;
}
