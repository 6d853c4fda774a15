// What an LmdbStore says of itself (its last transaction, the size of its data, its
// commit latencies), and giving back the memory its map holds.
#include <lmdb.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <shared_mutex>
#include <string>

#include "lmdb_internal.h"
#include "tandem/storage/lmdb_store.h"

namespace tandem::storage {

uint64_t LmdbStore::LastTxnId() {
  // mdb_env_info reads the meta pages inside the map, which a growing map moves (another
  // thread's MaybeGrow): read while it stays where it is.
  std::shared_lock lock(impl_->resize_mu);
  MDB_envinfo info{};
  if (mdb_env_info(impl_->env, &info) != 0) return 0;  // only for a closed environment
  return info.me_last_txnid;
}

uint64_t LmdbStore::ReadableTxnId() {
  std::shared_lock lock(impl_->resize_mu);
  MDB_txn* txn;
  if (mdb_txn_begin(impl_->env, nullptr, MDB_RDONLY, &txn) != 0) return 0;
  const uint64_t id = mdb_txn_id(txn);
  mdb_txn_abort(txn);
  return id;
}

Result<uint64_t> LmdbStore::DataBytes() {
  std::shared_lock lock(impl_->resize_mu);
  MDB_txn* txn;
  if (int rc = mdb_txn_begin(impl_->env, nullptr, MDB_RDONLY, &txn)) return LmdbError(rc, "begin");
  uint64_t bytes = 0;
  int rc = 0;
  for (MDB_dbi dbi : {MDB_dbi{0}, impl_->meta, impl_->fields, impl_->log, impl_->replicas,
                      impl_->names_db, impl_->peers, impl_->fresh}) {
    MDB_stat st;
    if ((rc = mdb_stat(txn, dbi, &st))) break;
    bytes += uint64_t{st.ms_psize} * (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
  }
  mdb_txn_abort(txn);
  if (rc) return LmdbError(rc, "read table sizes");
  return bytes;
}

Result<uint32_t> LmdbStore::Format() {
  std::shared_lock lock(impl_->resize_mu);
  MDB_txn* txn;
  if (int rc = mdb_txn_begin(impl_->env, nullptr, MDB_RDONLY, &txn)) return LmdbError(rc, "begin");
  uint32_t format = 0;
  Status st = LmdbReader(impl_.get(), txn).GetFormat(&format);
  mdb_txn_abort(txn);
  TANDEM_RETURN_IF_ERROR(st);
  if (!format) return Status::Corrupt("the format version is missing or malformed");
  return format;
}

LmdbStore::CommitLatency LmdbStore::CommitLatencies() const {
  CommitLatency out;
  const auto& h = impl_->commits;
  for (size_t i = 0; i < CommitLatency::kBounds.size() + 1; ++i)
    out.buckets[i] = h.buckets[i].load(std::memory_order_relaxed);
  out.count = h.count.load(std::memory_order_relaxed);
  out.sum_seconds = static_cast<double>(h.sum_ns.load(std::memory_order_relaxed)) / 1e9;
  return out;
}

void LmdbStore::ReleaseMemory() {
  std::shared_lock lock(impl_->resize_mu);  // the map stays where it is meanwhile
  // LMDB does not say where its map is (mdb_env_info only for fixed maps): find the
  // mappings of data.mdb in /proc/self/maps, by inode and device, or by inode and path
  // (overlay and btrfs mounts show another device number there than stat does).
  const std::string data = dir_ + "/data.mdb";
  struct stat st;
  if (::stat(data.c_str(), &st) != 0) return;
  std::error_code ec;
  const std::string path = fs::weakly_canonical(data, ec).string();
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    unsigned long start = 0, end = 0, offset = 0, inode = 0;
    unsigned dev_major = 0, dev_minor = 0;
    char perms[8];
    int consumed = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx %x:%x %lu %n", &start, &end, perms, &offset,
                    &dev_major, &dev_minor, &inode, &consumed) != 7)
      continue;
    if (inode != static_cast<unsigned long>(st.st_ino)) continue;
    const bool same_dev = dev_major == major(st.st_dev) && dev_minor == minor(st.st_dev);
    const bool same_path =
        !path.empty() && line.compare(static_cast<size_t>(consumed), std::string::npos, path) == 0;
    // Only the read-only map of this very file (dropping a private writable mapping would
    // lose its writes).
    if ((!same_dev && !same_path) || perms[1] == 'w') continue;
    ::madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED);
  }
}

}  // namespace tandem::storage
