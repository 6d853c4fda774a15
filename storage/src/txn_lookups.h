// What a write transaction keeps of the replica's shared tables (names and replica ids),
// so that most of its lookups take neither a table's lock nor a hash: a transaction
// names few collections, fields and replicas, usually in turn.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lmdb_internal.h"

namespace tandem::storage {

// The stored keys of fields (Impl::Key), each name looked up in the shared name table once
// per transaction.
class KeyMaker {
 public:
  explicit KeyMaker(LmdbStore::Impl& impl) : impl_(impl) {}

  // The stored key of `k`; none if a name is not in the table (and not `intern`ed).
  std::optional<std::string> Key(const engine::FieldKey& k, bool intern) {
    std::string key;
    if (!KeyInto(k, intern, &key)) return std::nullopt;
    return key;
  }
  // The same into *out; false (*out unchanged) if a name is not in the table.
  bool KeyInto(const engine::FieldKey& k, bool intern, std::string* out) {
    if (!coll_index_ || k.collection != coll_name_) {
      const auto c = NameIndex(k.collection, intern);
      if (!c) return false;
      coll_name_ = k.collection;
      coll_index_ = *c;
    }
    const auto f = FieldIndex(k.field, intern);
    if (!f) return false;
    out->clear();
    LmdbStore::Impl::AppendKey(out, *coll_index_, k.record, *f);
    return true;
  }

 private:
  // NameIndex for a field name, through the last few found: a transaction's writes
  // usually go through a record's fields in turn, so the next one is the one after the
  // last found, and a comparison costs less than a hash.
  std::optional<uint64_t> FieldIndex(const std::string& name, bool intern) {
    const size_t n = recent_fields_.size();
    for (size_t i = 0, at = last_recent_ + 1; i < n; ++i, ++at) {
      if (at >= n) at = 0;
      if (recent_fields_[at].first == name) {
        last_recent_ = at;
        return recent_fields_[at].second;
      }
    }
    const auto idx = NameIndex(name, intern);
    if (idx && n < kRecentFieldsKept) {
      recent_fields_.emplace_back(name, *idx);
      last_recent_ = n;
    }
    return idx;
  }
  std::optional<uint64_t> NameIndex(const std::string& name, bool intern) {
    if (auto it = names_.find(name); it != names_.end()) return it->second;
    const auto idx = intern ? impl_.names.Intern(name) : impl_.names.Find(name);
    // Only names the table holds (one interned later in the transaction is found then).
    if (idx && names_.size() < kMaxNamesKept) names_.emplace(name, *idx);
    return idx;
  }

  LmdbStore::Impl& impl_;
  std::unordered_map<std::string, uint64_t> names_;  // NameIndex
  std::string coll_name_;                            // the collection KeyInto named last
  std::optional<uint64_t> coll_index_;
  static constexpr size_t kMaxNamesKept = 256;
  std::vector<std::pair<std::string, uint64_t>> recent_fields_;  // FieldIndex
  size_t last_recent_ = 0;
  static constexpr size_t kRecentFieldsKept = 32;
};

// The shared replica table, the indexes this transaction looked up kept (its fields name
// few replicas).
class KeptReplicaTable : public engine::ReplicaTable {
 public:
  explicit KeptReplicaTable(engine::ReplicaTable& t) : t_(t) {}
  uint64_t IndexOf(const engine::ReplicaId& id) override {
    for (const auto& [r, i] : kept_)
      if (r == id) return i;
    const uint64_t i = t_.IndexOf(id);
    if (kept_.size() < kKept) kept_.emplace_back(id, i);
    return i;
  }
  bool IdAt(uint64_t index, engine::ReplicaId* out) const override { return t_.IdAt(index, out); }

 private:
  static constexpr size_t kKept = 8;
  engine::ReplicaTable& t_;
  std::vector<std::pair<engine::ReplicaId, uint64_t>> kept_;
};

}  // namespace tandem::storage
