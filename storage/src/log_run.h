// The change log's entries as stored: the `log` table's key is a change-log seq, its
// value either one field key (the entry of that seq, as builds before format 7 wrote
// every entry) or a run of entries a write transaction appended at once:
//
//   run   := 0x00 0x00 0x01 entry+
//   entry := varint(seq - previous seq, the first from the table key: 0 as written)
//            varint(bytes shared with the previous entry's field key)
//            varint(length of the rest) rest
//
// A field key starts with a varint and a record id of at least one byte that is not
// NUL, so no field key starts with 0x00 0x00. Every entry of a run has a seq at least
// its table key and below the next table key, so the run that holds a seq is the one at
// the greatest key not above it.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "tandem/engine/codec.h"
#include "tandem/engine/status.h"

namespace tandem::storage {

inline constexpr std::string_view kLogRunMagic{"\0\0\1", 3};
// A run stays within one LMDB leaf node (a 4 KiB page holds two).
inline constexpr size_t kMaxLogRunBytes = 1900;

inline bool IsLogRun(std::string_view value) {
  return value.substr(0, 2) == kLogRunMagic.substr(0, 2);
}

// Appends entries to a run, in ascending seq order.
class LogRunWriter {
 public:
  bool empty() const { return entries_ == 0; }
  size_t entries() const { return entries_; }
  uint64_t first() const { return first_; }
  std::string_view bytes() const { return bytes_; }
  // Whether an entry for `key` could still be added without passing kMaxLogRunBytes.
  bool Fits(std::string_view key) const {
    return empty() || bytes_.size() + 30 + key.size() <= kMaxLogRunBytes;
  }
  void Add(uint64_t seq, std::string_view key) {
    if (empty()) {
      bytes_.assign(kLogRunMagic);
      first_ = last_ = seq;
      prev_.clear();
    }
    size_t shared = 0;
    const size_t most = std::min(prev_.size(), key.size());
    while (shared < most && prev_[shared] == key[shared]) ++shared;
    // Three varints and the rest of the key, appended at once (each append is a call).
    const std::string_view rest = key.substr(shared);
    char buf[128];
    size_t n = engine::PutVarint(buf, seq - last_);
    n += engine::PutVarint(buf + n, shared);
    n += engine::PutVarint(buf + n, rest.size());
    if (rest.size() <= sizeof buf - n) {
      std::memcpy(buf + n, rest.data(), rest.size());
      bytes_.append(buf, n + rest.size());
    } else {
      bytes_.append(buf, n).append(rest);
    }
    prev_.assign(key);
    last_ = seq;
    ++entries_;
  }
  void Clear() {
    bytes_.clear();
    entries_ = 0;
  }

 private:
  std::string bytes_, prev_;
  uint64_t first_ = 0, last_ = 0;
  size_t entries_ = 0;
};

// Calls fn(seq, field key) for each entry of the `log` table's entry (key_seq, value),
// in ascending seq order, until fn returns false. Corrupt if the value is malformed.
template <typename Fn>
Status ForEachLogEntry(uint64_t key_seq, std::string_view value, Fn&& fn) {
  if (!IsLogRun(value)) {
    if (value.empty()) return Status::Corrupt("empty change-log entry");
    fn(key_seq, value);
    return Status::Ok();
  }
  if (value.size() < kLogRunMagic.size() || value[2] != kLogRunMagic[2])
    return Status::Corrupt("change-log run of an unknown version");
  engine::Reader r(value.substr(kLogRunMagic.size()));
  std::string key;
  uint64_t seq = key_seq;
  bool first = true;
  while (r.remaining() > 0) {
    const uint64_t delta = r.Varint();
    const uint64_t shared = r.Varint();
    const std::string_view rest = r.LengthPrefixed(kMaxLogRunBytes);
    if (!r.ok()) return Status::Corrupt("malformed change-log run: " + r.status().message());
    if ((!first && delta == 0) || seq + delta < seq || shared > key.size() ||
        shared + rest.size() == 0)
      return Status::Corrupt("malformed change-log run");
    seq += delta;
    key.resize(shared);
    key.append(rest);
    first = false;
    if (!fn(seq, std::string_view(key))) return Status::Ok();
  }
  if (first) return Status::Corrupt("empty change-log run");
  return Status::Ok();
}

}  // namespace tandem::storage
