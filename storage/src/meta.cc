// The encodings of what the store keeps in its `meta` table: the replica's identity,
// clock and version vector, the log's gaps, and what was collected in single
// collections.
#include "lmdb_internal.h"
#include "tandem/engine/codec.h"

namespace tandem::storage {

std::string EncodeMeta(const ReplicaMeta& m) {
  std::string out;
  engine::Writer w(&out);
  const bool v2 = !m.absorbed.empty() || !m.scope.Everything();
  w.U8(v2 ? 2 : 1);
  w.Raw(std::string_view(reinterpret_cast<const char*>(m.id.bytes.data()), 16));
  w.Fixed64(m.clock);
  engine::EncodeVersionVector(m.vv, w);
  if (v2) {
    engine::EncodeVersionVector(m.absorbed, w);
    engine::EncodeCollectionFilter(m.scope, w);
  }
  return out;
}

std::string EncodeLogGaps(const LogGaps& gaps) {
  std::string out;
  engine::Writer w(&out);
  w.U8(1);
  w.Varint(gaps.size());
  for (const auto& [from, to] : gaps) {
    w.Varint(from);
    w.Varint(to - from);
  }
  return out;
}

Result<LogGaps> DecodeLogGaps(std::string_view in) {
  engine::Reader r(in);
  LogGaps gaps;
  if (r.U8() != 1) r.Fail("unknown log gaps version");
  const uint64_t n = r.Count(2);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    const uint64_t from = r.Varint(), span = r.Varint();
    if (!r.ok()) break;
    if (span < 2 || from > UINT64_MAX - span) r.Fail("log gap of no width");
    gaps.emplace_back(from, from + span);
  }
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("log gaps");
  return gaps;
}

std::string EncodeCollectedIn(const engine::ReadTxn::CollectedIn& in) {
  std::string out;
  engine::Writer w(&out);
  w.U8(1);
  w.Varint(in.size());
  for (const auto& [name, vv] : in) {
    w.LengthPrefixed(name);
    engine::EncodeVersionVector(vv, w);
  }
  return out;
}

Result<engine::ReadTxn::CollectedIn> DecodeCollectedIn(std::string_view in) {
  engine::Reader r(in);
  engine::ReadTxn::CollectedIn out;
  if (r.U8() != 1) r.Fail("unknown version");
  const uint64_t n = r.Count(2);
  if (n > engine::ReadTxn::kMaxCollectedIn) r.Fail("more collections than a replica records");
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string name(r.LengthPrefixed(engine::kMaxCollectionName));
    engine::VersionVector vv = engine::DecodeVersionVector(r);
    if (!r.ok()) break;
    if (Status v = engine::ValidateCollection(name); !v.ok()) r.Fail(v.message());
    if (r.ok() && !out.empty() && !(out.rbegin()->first < name))
      r.Fail("collections out of order or named twice");
    if (r.ok()) out.emplace_hint(out.end(), std::move(name), std::move(vv));
  }
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("collected-in");
  return out;
}

Result<ReplicaMeta> DecodeMeta(std::string_view in) {
  engine::Reader r(in);
  ReplicaMeta m;
  const uint8_t version = r.U8();
  if (version != 1 && version != 2) r.Fail("unknown replica meta version");
  std::string_view id = r.Raw(16);
  if (r.ok()) m.id = ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(id.data()));
  m.clock = r.Fixed64();
  m.vv = engine::DecodeVersionVector(r);
  if (version == 2 && r.ok()) {
    m.absorbed = engine::DecodeVersionVector(r);
    m.scope = engine::DecodeCollectionFilter(r);
  }
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("replica meta");
  return m;
}

}  // namespace tandem::storage
