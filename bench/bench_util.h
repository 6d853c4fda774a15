// Shared helpers for the benchmarks: timing, sizes, the data set, raw LMDB baseline.
#pragma once

#include <lmdb.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/engine/status.h"

namespace tandem::bench {

// Ends the benchmark with a message when st is not OK.
inline void Must(const Status& st, const char* what) {
  if (!st.ok()) {
    std::fprintf(stderr, "bench: %s: %s\n", what, st.ToString().c_str());
    std::exit(1);
  }
}

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Bytes this process has handed to write calls so far (/proc/self/io wchar): what its
// LMDB commits wrote, pages and meta, whatever the disk's speed. 0 if unknown.
inline uint64_t BytesWritten() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (!f) return 0;
  char line[128];
  unsigned long long n = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "wchar: %llu", &n) == 1) break;
  std::fclose(f);
  return n;
}

inline double PeakRssMb() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

// Bytes the file occupies on disk.
inline uint64_t DiskBytes(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// The data set of bench/local_writes: records r000000.., fields f0-f4 16-byte strings,
// f5-f9 integers, from a fixed seed.
struct DataSet {
  int records = 100000;
  int fields = 10;
  static std::string RecordId(int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "r%06d", i);
    return buf;
  }
  static std::string FieldName(int f) {
    std::string s = "f";  // not "f" + ...: g++ 12 warns (-Wrestrict) on that falsely
    return s += std::to_string(f);
  }
};

inline std::string RandomString16(std::mt19937_64& rng) {
  static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(16, ' ');
  for (auto& c : s) c = kAlpha[rng() % 36];
  return s;
}

// A value of field f of the data set: f0-f4 16-byte strings, f5-f9 integers.
inline engine::Value DataSetValue(int f, std::mt19937_64& rng) {
  return f < 5 ? engine::Value{RandomString16(rng)}
               : engine::Value{static_cast<int64_t>(rng() % 1000000)};
}

// Writes fields [first, end) of the data set into collection "bench", `batch` fields
// per transaction.
inline void LoadFields(engine::Replica& r, const DataSet& ds, std::mt19937_64& rng, int first,
                       int end, int batch = 1000) {
  for (int n = first; n < end; n += batch) {
    Must(r.Write([&](engine::Batch& b) {
      for (int k = n; k < n + batch && k < end; ++k) {
        const int f = k % ds.fields;
        TANDEM_RETURN_IF_ERROR(b.Put("bench", DataSet::RecordId(k / ds.fields),
                                     DataSet::FieldName(f), DataSetValue(f, rng)));
      }
      return Status::Ok();
    }),
         "load");
  }
}

// Writes the whole data set into collection "bench", `batch` fields per transaction.
inline void LoadDataSet(engine::Replica& r, const DataSet& ds, std::mt19937_64& rng,
                        int batch = 1000) {
  LoadFields(r, ds, rng, 0, ds.records * ds.fields, batch);
}

// Fields of the "bench" collection a replica holds, read by a scan.
inline uint64_t CountFields(engine::Replica& r) {
  uint64_t n = 0;
  Must(r.Scan("bench", "",
              [&](const engine::Record& rec) {
                n += rec.fields.size();
                return true;
              }),
       "scan");
  return n;
}

// The median of a few measurements (the upper one of an even count).
inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Raw LMDB, the baseline every ratio is against: the data set's keys (collection \0
// record \0 field) in one unnamed database, 16-byte values, durable commits.
inline MDB_env* OpenRawEnv(const std::string& dir) {
  MDB_env* env;
  mdb_env_create(&env);
  mdb_env_set_mapsize(env, size_t{4} << 30);
  if (mdb_env_open(env, dir.c_str(), 0, 0644)) std::abort();
  return env;
}

// Puts field f of record rec with a random 16-byte value.
inline void RawPut(MDB_txn* txn, MDB_dbi dbi, int rec, int f, std::mt19937_64& rng) {
  std::string key = "bench";
  key.push_back('\0');
  key += DataSet::RecordId(rec);
  key.push_back('\0');
  key += DataSet::FieldName(f);
  std::string val = RandomString16(rng);
  MDB_val k{key.size(), key.data()}, v{val.size(), val.data()};
  if (mdb_put(txn, dbi, &k, &v, 0)) std::abort();
}

// Raw LMDB's durable transactions over the data set's keys, one at a time, so that a
// benchmark can interleave them with the engine's writes: both then meet the same disk
// (on a VM, the latency of an fsync can double within a minute).
class RawLoader {
 public:
  // Opens `dir`, emptied first unless `keep`.
  explicit RawLoader(const std::string& dir, bool keep = false) : dir_(dir) {
    if (!keep) std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    env_ = OpenRawEnv(dir);
  }
  ~RawLoader() { mdb_env_close(env_); }
  RawLoader(const RawLoader&) = delete;
  RawLoader& operator=(const RawLoader&) = delete;

  // Puts fields [first, end) of the data set (in key order, random 16-byte values) in
  // one durable transaction; returns its seconds.
  double Txn(const DataSet& ds, int first, int end) {
    const double t0 = Now();
    MDB_txn* txn = Begin();
    for (int n = first; n < end; ++n) RawPut(txn, dbi_, n / ds.fields, n % ds.fields, rng_);
    if (mdb_txn_commit(txn)) std::abort();
    return Now() - t0;
  }
  // Overwrites `count` fields at random in one durable transaction; returns its seconds.
  double RandomTxn(const DataSet& ds, int count, std::mt19937_64& pick) {
    const double t0 = Now();
    MDB_txn* txn = Begin();
    for (int i = 0; i < count; ++i) {
      const int rec = static_cast<int>(pick() % static_cast<uint64_t>(ds.records));
      RawPut(txn, dbi_, rec, static_cast<int>(pick() % static_cast<uint64_t>(ds.fields)), pick);
    }
    if (mdb_txn_commit(txn)) std::abort();
    return Now() - t0;
  }
  uint64_t FileBytes() const { return DiskBytes(dir_ + "/data.mdb"); }

 private:
  MDB_txn* Begin() {
    MDB_txn* txn;
    if (mdb_txn_begin(env_, nullptr, 0, &txn) || mdb_dbi_open(txn, nullptr, 0, &dbi_)) std::abort();
    return txn;
  }
  std::string dir_;
  MDB_env* env_;
  MDB_dbi dbi_ = 0;
  std::mt19937_64 rng_{42};
};

// The data set in key order, `batch` puts per transaction. Returns puts per second;
// *bytes gets the file size.
inline double RawLmdbPuts(const std::string& dir, const DataSet& ds, int batch, uint64_t* bytes) {
  RawLoader raw(dir);
  const int total = ds.records * ds.fields;
  double seconds = 0;
  for (int n = 0; n < total; n += batch) seconds += raw.Txn(ds, n, std::min(total, n + batch));
  *bytes = raw.FileBytes();
  return total / seconds;
}

}  // namespace tandem::bench
