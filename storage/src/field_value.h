// The value of a field in the `fields` table (format.md): the change-log seq and the
// state, with a checksum since format 8.
#pragma once

#include <sodium.h>
#define XXH_INLINE_ALL  // the header alone: inlined, nothing to link
#include <xxhash.h>
static_assert(XXH_VERSION_NUMBER >= 800, "XXH3's output is stable from xxhash 0.8.0 on");

#include <cstdint>
#include <cstring>
#include <string_view>

#include "tandem/engine/codec.h"
#include "tandem/engine/status.h"

namespace tandem::storage {

// A stored field value: [0] seq:varint state checksum:4, the checksum keyed by the
// field's stored key, so that a value found under another key is refused too; 4 bytes,
// as most values are a few dozen bytes long. Or, as written before checksums, seq:varint
// state. A value whose bytes were damaged since is refused, rather than read as another
// state (and merged as one).
inline constexpr size_t kValueChecksum = 4;

// The checksum since format 13: the first 4 bytes (little-endian) of XXH3-64 of all that
// comes before it, seeded with the key's own XXH3-64: about a quarter of SipHash's
// instructions on a key and a value of a few dozen bytes (SipHash took about a tenth
// of a field write's).
inline void FastChecksum(std::string_view key, const char* p, size_t n, char* out) {
  const uint64_t h = XXH3_64bits_withSeed(p, n, XXH3_64bits(key.data(), key.size()));
  for (size_t i = 0; i < kValueChecksum; ++i) out[i] = static_cast<char>(h >> (8 * i));
}

// The checksum of format 8 to 12: the first 4 bytes of SipHash-2-4 (libsodium's
// crypto_shorthash) of all that comes before it, keyed by the key's own SipHash under a
// key of zeros, twice.
inline void SipChecksum(std::string_view key, const char* p, size_t n, char* out) {
  static_assert(crypto_shorthash_KEYBYTES == 2 * crypto_shorthash_BYTES);
  static const unsigned char kZero[crypto_shorthash_KEYBYTES] = {};
  unsigned char sip[crypto_shorthash_KEYBYTES], h[crypto_shorthash_BYTES];
  crypto_shorthash(sip, reinterpret_cast<const unsigned char*>(key.data()), key.size(), kZero);
  std::memcpy(sip + crypto_shorthash_BYTES, sip, crypto_shorthash_BYTES);
  crypto_shorthash(h, reinterpret_cast<const unsigned char*>(p), n, sip);
  std::memcpy(out, h, kValueChecksum);  // the first 4 of its 8 bytes
}

// The checksum a value gets: XXH3's where the format allows it (`fast`), else SipHash's.
inline void ValueChecksum(std::string_view key, const char* p, size_t n, bool fast, char* out) {
  fast ? FastChecksum(key, p, n, out) : SipChecksum(key, p, n, out);
}

// Whether `sum` is the checksum of the n bytes at p under `key`, of either kind: a
// replica raised to format 13 keeps the values it wrote before. Damage that matches one
// of two 32-bit sums by chance is two in 2^32. The kind that matched last is tried
// first (per thread): a replica's values are mostly of one kind, and a replica from
// before format 13 would otherwise pay for both on every read.
inline bool ChecksumMatches(std::string_view key, const char* p, size_t n, const char* sum) {
  thread_local bool sip_first = false;
  char h[kValueChecksum];
  for (const bool sip : {sip_first, !sip_first}) {
    (sip ? SipChecksum : FastChecksum)(key, p, n, h);
    if (std::memcmp(h, sum, kValueChecksum) == 0) {
      sip_first = sip;
      return true;
    }
  }
  return false;
}

// The change-log seq of a stored field value, its checksum not checked: for what needs
// the seq alone (the log's upkeep, deletes, overwrites), so that one damaged value
// stops only what reads its state.
inline Status ValueSeq(std::string_view v, uint64_t* seq) {
  if (!v.empty() && v[0] == 0) v.remove_prefix(1);
  engine::Reader r(v);
  *seq = r.Varint();
  if (!r.ok() || *seq == 0) return Status::Corrupt("field entry without a change-log seq");
  return Status::Ok();
}

// SplitValue (below) without checking the checksum: for what reads a value a part at a
// time and checks it once (LmdbReader::ReadDelta).
inline Status SplitUnchecked(std::string_view v, uint64_t* seq, std::string_view* state) {
  if (!v.empty() && v[0] == 0) {
    if (v.size() < 2 + kValueChecksum) return Status::Corrupt("field entry cut short");
    v = v.substr(1, v.size() - 1 - kValueChecksum);
  }
  engine::Reader r(v);
  *seq = r.Varint();
  if (!r.ok() || *seq == 0) return Status::Corrupt("field entry without a change-log seq");
  *state = v.substr(v.size() - r.remaining());
  return Status::Ok();
}

// Splits the stored value of the field stored under `key` into its log seq and state.
inline Status SplitValue(std::string_view key, std::string_view v, uint64_t* seq,
                         std::string_view* state) {
  if (!v.empty() && v[0] == 0 && v.size() >= 2 + kValueChecksum) {
    if (!ChecksumMatches(key, v.data(), v.size() - kValueChecksum,
                         v.data() + v.size() - kValueChecksum))
      return Status::Corrupt("field entry damaged: its bytes do not match their checksum");
  }
  return SplitUnchecked(v, seq, state);
}

}  // namespace tandem::storage
