// The replica table and the name table as LMDB keeps them, cached in memory (used by
// the store's insides, lmdb_internal.h).
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "lmdb_val.h"
#include "tandem/engine/codec.h"

namespace tandem::storage {

using engine::ReplicaId;

// A persistent table of interned values (replica ids, names), indices 0.. in an LMDB
// database with integer keys, cached here. Only a write transaction adds entries; they
// stay pending until it commits and vanish from the cache if it aborts.
template <typename T>
class InternTable {
 public:
  // The index of v, adding it (pending) if new. Only inside a write transaction.
  template <typename K>
  uint64_t Intern(const K& v) {
    std::lock_guard lock(mu_);
    auto it = index_.find(v);
    if (it != index_.end()) return it->second;
    assert(writer_ && "tables grow only inside a write transaction");
    uint64_t idx = values_.size();
    values_.push_back(T(v));
    index_.emplace(T(v), idx);
    pending_.push_back(idx);
    return idx;
  }
  template <typename K>
  std::optional<uint64_t> Find(const K& v) const {
    std::lock_guard lock(mu_);
    auto it = index_.find(v);
    if (it == index_.end()) return std::nullopt;
    return it->second;
  }
  uint64_t size() const {
    std::lock_guard lock(mu_);
    return values_.size();
  }
  bool At(uint64_t index, T* out) const {
    std::lock_guard lock(mu_);
    if (index >= values_.size()) return false;
    *out = values_[index];
    return true;
  }
  // Loads entries another process (or an earlier run) added.
  Status Refresh(MDB_txn* txn, MDB_dbi dbi, const char* what) {
    MDB_stat st;
    int rc = mdb_stat(txn, dbi, &st);
    if (rc) return LmdbError(rc, what);
    std::lock_guard lock(mu_);
    if (st.ms_entries <= values_.size() - pending_.size()) return Status::Ok();
    MDB_cursor* cur;
    if ((rc = mdb_cursor_open(txn, dbi, &cur))) return LmdbError(rc, what);
    values_.clear();
    index_.clear();
    pending_.clear();
    MDB_val k, v;
    Status status;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      uint64_t idx;
      T value;
      if (k.mv_size != 8 || !FromBytes(View(v), &value)) {
        status = Status::Corrupt(std::string(what) + " has a malformed entry");
        break;
      }
      std::memcpy(&idx, k.mv_data, 8);
      if (idx != values_.size() || !index_.emplace(value, idx).second) {
        status = Status::Corrupt(std::string(what) + " has a gap or a duplicate");
        break;
      }
      values_.push_back(std::move(value));
    }
    mdb_cursor_close(cur);
    return status;
  }
  void BeginWriter() {
    std::lock_guard lock(mu_);
    writer_ = true;
  }
  // Returns an LMDB error code (the caller notes MDB_MAP_FULL so the map grows).
  int FlushPending(MDB_txn* txn, MDB_dbi dbi) {
    std::lock_guard lock(mu_);
    for (uint64_t idx : pending_) {
      std::string bytes = ToBytes(values_[idx]);
      MDB_val k{8, &idx}, v = Val(bytes);
      int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
      if (rc) return rc;
    }
    return 0;
  }
  void EndWriter(bool committed) {
    std::lock_guard lock(mu_);
    if (!committed) {
      for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
        index_.erase(values_[*it]);
        values_.pop_back();
      }
    }
    pending_.clear();
    writer_ = false;
  }

 private:
  static std::string ToBytes(const ReplicaId& id) {
    return std::string(reinterpret_cast<const char*>(id.bytes.data()), 16);
  }
  static std::string ToBytes(const std::string& s) { return s; }
  static bool FromBytes(std::string_view b, ReplicaId* out) {
    if (b.size() != 16) return false;
    *out = ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(b.data()));
    return true;
  }
  static bool FromBytes(std::string_view b, std::string* out) {
    *out = std::string(b);
    return !b.empty();
  }

  mutable std::mutex mu_;
  std::vector<T> values_;
  std::map<T, uint64_t, std::less<>> index_;  // transparent: look up string_views as they are
  std::vector<uint64_t> pending_;
  bool writer_ = false;
};

// The engine's view of the replica table.
class LmdbReplicaTable : public engine::ReplicaTable {
 public:
  uint64_t IndexOf(const ReplicaId& id) override { return t.Intern(id); }
  bool IdAt(uint64_t index, ReplicaId* out) const override { return t.At(index, out); }
  InternTable<ReplicaId> t;
};

}  // namespace tandem::storage
