// The field-state encoding's parts (codec.cc, codec_records.cc), for code that reads or
// writes a state an item at a time: a join of two encodings (join_encoded.cc).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "tandem/engine/codec.h"

namespace tandem::engine {

inline constexpr uint8_t kHasElements = 1, kHasCounter = 2, kHasBase = 4;

// The bytes PutVarint writes for v.
inline size_t VarintBytes(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) ++n;
  return n;
}

// A field state's context in replica order: dots and counters name a replica by its
// position in it.
using CtxEntry = std::pair<ReplicaId, uint64_t>;
using CtxView = std::span<const CtxEntry>;

// The header and the context, the part of a field state that names replicas through the
// table: *flags the header's optional sections, ctx the context in order (positions).
void ReadHead(Reader& r, const ReplicaTable& table, FieldState& s, std::vector<CtxEntry>& ctx,
              uint8_t* flags);
Dot DecodeDot(Reader& r, CtxView ctx);
// One marker, or one set element (with `ordered`, its dots must ascend; with `most`, at
// most that many, else it fails with kPastMostItems); false, and `r` failed, if the
// bytes are not one.
bool ReadMarker(Reader& r, CtxView ctx, Dot* d, Marker* m);
bool ReadElement(Reader& r, CtxView ctx, bool ordered, Value* v, std::set<Dot>* dots,
                 uint64_t most = 0);
void DecodeTotals(Reader& r, CtxView ctx, std::map<ReplicaId, PnTotals>* out, bool ordered = false);

// The same written, each dot and replica named against `ctx`: Corrupt (and some bytes
// written) where it does not cover them.
Status WriteMarker(const Dot& d, const Marker& m, CtxView ctx, Writer& w);
Status WriteElement(const Value& v, const std::set<Dot>& dots, CtxView ctx, Writer& w);
Status WriteTotals(const std::map<ReplicaId, PnTotals>& m, CtxView ctx, Writer& w);

// A delta's key, and the replica table a self-contained state embeds (codec_records.cc).
FieldKey ReadKey(Reader& r);
void ReadReplicaTable(Reader& r, VectorReplicaTable* table);

}  // namespace tandem::engine
