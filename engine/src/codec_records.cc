// The engine's encodings that stand on their own: a field state with its replica table,
// a delta (key and state), version vectors, quarantine entries, peer states and the
// change log's hull. Built on the primitives and field-state encoding in codec.cc.
#include <algorithm>
#include <cstring>

#include "codec_state.h"
#include "tandem/engine/codec.h"

namespace tandem::engine {

namespace {
// Appends the self-contained encoding. Every replica a state names is in its context
// (markers, elements and counters are checked against it), and the body numbers the
// context's replicas first, in order: so the table is known before the body is written.
template <typename S>  // const FieldState&, or FieldState&& to consume it
Status AppendFieldState(S&& s, std::string* out) {
  VectorReplicaTable table;
  for (const auto& [r, seq] : s.ctx.entries()) table.IndexOf(r);
  const size_t start = out->size();
  Writer w(out);
  w.Varint(table.ids().size());
  for (const auto& id : table.ids())
    w.Raw(std::string_view(reinterpret_cast<const char*>(id.bytes.data()), 16));
  Status st = EncodeFieldState(std::forward<S>(s), table, out);
  if (!st.ok()) out->resize(start);
  return st;
}
}  // namespace

Result<std::string> EncodeFieldState(const FieldState& s) {
  std::string out;
  out.reserve(EncodedSizeBound(s));
  TANDEM_RETURN_IF_ERROR(AppendFieldState(s, &out));
  return out;
}

void ReadReplicaTable(Reader& r, VectorReplicaTable* table) {
  uint64_t n = r.Count(16);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string_view raw = r.Raw(16);
    if (r.ok()) table->IndexOf(ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(raw.data())));
  }
  if (r.ok() && table->ids().size() != n) r.Fail("duplicate replica in table");
}

namespace {
// The embedded replica table, then the state against it; nothing may follow.
Result<FieldState> ReadSelfContained(Reader& r) {
  VectorReplicaTable table;
  ReadReplicaTable(r, &table);
  FieldState s;
  if (r.ok()) s = DecodeFieldState(r, table);
  if (r.ok() && r.remaining() != 0) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("field state");
  return s;
}
}  // namespace

Result<FieldState> DecodeFieldState(std::string_view in) {
  Reader r(in);
  return ReadSelfContained(r);
}

namespace {
// A field's key, each name length-prefixed (quarantine entries, deltas in pieces).
void WriteKey(Writer& w, const FieldKey& key) {
  w.LengthPrefixed(key.collection);
  w.LengthPrefixed(key.record);
  w.LengthPrefixed(key.field);
}
}  // namespace

FieldKey ReadKey(Reader& r) {
  FieldKey key;
  key.collection = std::string(r.LengthPrefixed(kMaxCollectionName));
  key.record = std::string(r.LengthPrefixed(kMaxRecordId));
  key.field = std::string(r.LengthPrefixed(kMaxFieldName));
  return key;
}

std::string DeltaKeyPrefix(const FieldKey& key) {
  std::string out;
  Writer w(&out);
  w.U8(1);
  WriteKey(w, key);
  return out;
}

void AppendWindow(std::string_view head, std::string_view rest, uint64_t offset, size_t n,
                  std::string* out) {
  if (offset < head.size()) {
    const std::string_view part = head.substr(offset, n);
    out->append(part);
    n -= part.size();
    offset = head.size();
  }
  if (offset - head.size() < rest.size()) out->append(rest.substr(offset - head.size(), n));
}

std::string DeltaHead(const FieldKey& key, const StoredHead& head) {
  std::string out = DeltaKeyPrefix(key);
  Writer w(&out);
  // AppendFieldState's table (the context's replicas in order), then the state's header
  // and context against it: replica i at position i.
  w.Varint(head.ctx.size());
  for (const auto& [r, seq] : head.ctx.entries())
    w.Raw(std::string_view(reinterpret_cast<const char*>(r.bytes.data()), 16));
  w.U8(head.header);
  w.Varint(head.ctx.size());
  uint64_t i = 0;
  for (const auto& [r, seq] : head.ctx.entries()) {
    w.Varint(i++);
    w.Varint(seq);
  }
  return out;
}

namespace {
template <typename S>
Result<std::string> EncodeDeltaOf(const FieldKey& key, S&& s) {
  std::string out;
  out.reserve(1 + 3 * 10 + key.collection.size() + key.record.size() + key.field.size() +
              EncodedSizeBound(s));
  Writer w(&out);
  w.U8(1);
  WriteKey(w, key);
  TANDEM_RETURN_IF_ERROR(AppendFieldState(std::forward<S>(s), &out));
  return out;
}
}  // namespace

Result<std::string> EncodeDelta(const FieldKey& key, const FieldState& s) {
  return EncodeDeltaOf(key, s);
}

Result<std::string> EncodeDelta(const FieldKey& key, FieldState&& s) {
  return EncodeDeltaOf(key, std::move(s));
}

Result<std::pair<FieldKey, FieldState>> DecodeDelta(Reader& r) {
  if (r.U8() != 1) r.Fail("unknown field delta version");
  FieldKey key = ReadKey(r);
  if (!r.ok()) return r.status().With("field delta");
  TANDEM_ASSIGN_OR_RETURN(FieldState s, ReadSelfContained(r));
  return std::make_pair(std::move(key), std::move(s));
}

Result<DeltaOutline> OutlineDelta(Reader& r, const StateItems* items) {
  const uint64_t total = r.remaining();
  if (r.U8() != 1) r.Fail("unknown field delta version");
  DeltaOutline out;
  out.key = ReadKey(r);
  VectorReplicaTable table;
  ReadReplicaTable(r, &table);
  uint64_t body_left = 0;
  if (r.ok()) out.outline = OutlineFieldState(r, table, items, &out.header, &body_left);
  if (r.ok() && r.remaining() != 0) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("field delta");
  out.state_at = total - body_left;
  return out;
}

Result<std::pair<FieldKey, FieldState>> DecodeDelta(std::string_view in) {
  Reader r(in);
  return DecodeDelta(r);
}

void EncodeWholeDot(const Dot& d, Writer& w) {
  w.Raw(std::string_view(reinterpret_cast<const char*>(d.replica.bytes.data()), 16));
  w.Varint(d.seq);
}

void EncodeWholeMarker(const Dot& d, const Marker& m, Writer& w) {
  EncodeWholeDot(d, w);
  w.Fixed64(m.hlc);
  w.U8(static_cast<uint8_t>(m.kind));
  EncodeValue(m.value, w);
}

void ForEachItem(const FieldState& s, const StateItems& items) {
  if (items.markers) items.markers(s.markers.size());
  if (items.marker)
    for (const auto& [d, m] : s.markers) items.marker(d, m);
  if (items.elements) items.elements(s.elements.size());
  if (items.element)
    for (const auto& [v, dots] : s.elements) items.element(v, dots);
}

void EncodeVersionVector(const VersionVector& vv, Writer& w) {
  w.Varint(vv.size());
  for (const auto& [r, seq] : vv.entries()) {
    w.Raw(std::string_view(reinterpret_cast<const char*>(r.bytes.data()), 16));
    w.Varint(seq);
  }
}

VersionVector DecodeVersionVector(Reader& r) {
  VersionVector vv;
  uint64_t n = r.Count(17);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    std::string_view raw = r.Raw(16);
    if (!r.ok()) break;
    const ReplicaId id = ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(raw.data()));
    uint64_t seq = r.Varint();
    if (!r.ok()) break;
    if (seq == 0 || vv.Get(id) != 0) {
      r.Fail("bad version vector entry");
      break;
    }
    vv.Raise(id, seq);
  }
  return vv;
}

void EncodeCollectionFilter(const CollectionFilter& f, Writer& w) {
  // 2: every collection but those named (format 12).
  w.U8(f.Excludes() ? 2 : f.all ? 1 : 0);
  w.Varint(f.names.size());
  for (const auto& n : f.names) w.LengthPrefixed(n);
}

CollectionFilter DecodeCollectionFilter(Reader& r) {
  CollectionFilter f;
  const uint8_t all = r.U8();
  if (all > 2) r.Fail("unknown collection filter flag");
  f.all = all >= 1;
  const uint64_t n = r.Count(2);
  for (uint64_t i = 0; i < n && r.ok(); ++i) f.names.emplace(r.LengthPrefixed(kMaxCollectionName));
  if (all == 1) f.names.clear();  // every collection, whatever follows
  if (all == 2 && f.names.empty()) r.Fail("a collection filter leaves out no collection");
  return f;
}

Result<std::string> EncodeQuarantineEntry(const QuarantineEntry& e) {
  TANDEM_ASSIGN_OR_RETURN(std::string state, EncodeFieldState(e.state));
  std::string out;
  Writer w(&out);
  // 2: held (the same layout); 3 and 4 as 1 and 2, the state in pieces (its reference
  // before its outline).
  w.U8(static_cast<uint8_t>((e.held ? 2 : 1) + (e.pieces ? 2 : 0)));
  WriteKey(w, e.key);
  w.Raw(std::string_view(reinterpret_cast<const char*>(e.from.bytes.data()), 16));
  w.Varint(e.received_ms);
  // Bounded (it may quote a value): cut at a character boundary.
  size_t cut = std::min<size_t>(e.reason.size(), 1024);
  while (cut < e.reason.size() && cut > 0 && (static_cast<uint8_t>(e.reason[cut]) & 0xC0) == 0x80)
    --cut;
  w.LengthPrefixed(std::string_view(e.reason).substr(0, cut));
  if (e.pieces) {
    const QuarantineEntry::InPieces& p = *e.pieces;
    w.Raw(std::string_view(reinterpret_cast<const char*>(p.entry.data()), p.entry.size()));
    w.Raw(std::string_view(reinterpret_cast<const char*>(p.content.data()), p.content.size()));
    w.Varint(p.size);
    w.U8(p.header);
    w.Varint(p.state_at);
  }
  w.LengthPrefixed(state);
  return out;
}

Result<QuarantineEntry> DecodeQuarantineEntry(std::string_view in) {
  Reader r(in);
  QuarantineEntry e;
  const uint8_t version = r.U8();
  if (version < 1 || version > 4) r.Fail("unknown quarantine entry version");
  e.held = version == 2 || version == 4;
  e.key = ReadKey(r);
  std::string_view from = r.Raw(16);
  if (r.ok()) std::memcpy(e.from.bytes.data(), from.data(), 16);
  e.received_ms = r.Varint();
  e.reason = std::string(r.LengthPrefixed(4096));
  if (version >= 3) {
    QuarantineEntry::InPieces& p = e.pieces.emplace();
    auto hash = [&r](BlobHash* h) {
      std::string_view b = r.Raw(h->size());
      if (r.ok()) std::memcpy(h->data(), b.data(), h->size());
    };
    hash(&p.entry);
    hash(&p.content);
    p.size = r.Varint();
    p.header = r.U8();
    p.state_at = r.Varint();
    if (r.ok() && (p.size == 0 || p.state_at >= p.size)) r.Fail("a state in pieces out of bounds");
  }
  std::string_view state = r.LengthPrefixed(in.size());
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("quarantine entry");
  TANDEM_ASSIGN_OR_RETURN(e.state, DecodeFieldState(state));
  return e;
}

std::string EncodePeerState(const PeerState& p) {
  std::string out;
  Writer w(&out);
  // The oldest version that says everything, so that older builds read what they can.
  // A filtered state that knows of no collection taken whole reads so from version 1 on.
  const bool v5 = p.filtered && !(p.received == CollectionFilter::None());
  const bool v4 = v5 || p.pieces.has_value();
  const bool v3 = v4 || p.mark != 0;
  const bool v2 = v3 || p.delivered != 0 || !p.delivery.Everything();
  w.U8(v5 ? 5 : v4 ? 4 : v3 ? 3 : v2 ? 2 : 1);
  w.Varint(p.cursor);
  EncodeVersionVector(p.vv, w);
  w.Varint(p.last_sync_ms);
  w.Varint(p.fields_received);
  w.Varint(p.fields_refused);
  w.U8(p.filtered ? 1 : 0);
  if (!v2) return out;
  // Version 2: what the peer has of our log.
  w.Varint(p.delivered);
  EncodeCollectionFilter(p.delivery, w);
  if (v3) w.Varint(p.mark);
  if (v5) w.U8(p.pieces ? 1 : 0);  // version 4 always has them
  if (p.pieces) {
    w.Varint(p.pieces->from);
    w.Varint(p.pieces->total);
    w.Varint(p.pieces->held);
    w.Raw(std::string_view(reinterpret_cast<const char*>(p.pieces->digest.data()), 32));
  }
  if (v5) EncodeCollectionFilter(p.received, w);
  return out;
}

Result<PeerState> DecodePeerState(std::string_view in) {
  Reader r(in);
  PeerState p;
  const uint8_t version = r.U8();
  if (version < 1 || version > 5) r.Fail("unknown peer state version");
  p.cursor = r.Varint();
  p.vv = DecodeVersionVector(r);
  p.last_sync_ms = r.Varint();
  p.fields_received = r.Varint();
  p.fields_refused = r.Varint();
  uint8_t flags = r.U8();
  if (flags > 1) r.Fail("unknown peer state flags");
  p.filtered = flags == 1;
  if (p.filtered) p.received = CollectionFilter::None();  // unless version 5 says more
  if (version >= 2 && r.ok()) {
    p.delivered = r.Varint();
    p.delivery = DecodeCollectionFilter(r);
  }
  if (version >= 3 && r.ok()) p.mark = r.Varint();
  bool pieces = version == 4;
  if (version >= 5 && r.ok()) {
    const uint8_t has = r.U8();
    if (has > 1) r.Fail("unknown pieces flag");
    pieces = has == 1;
  }
  if (pieces && r.ok()) {
    PieceProgress pp;
    pp.from = r.Varint();
    pp.total = r.Varint();
    pp.held = r.Varint();
    std::string_view d = r.Raw(32);
    if (r.ok()) std::memcpy(pp.digest.data(), d.data(), 32);
    if (r.ok() && pp.held >= pp.total) r.Fail("pieces held past their total");
    p.pieces = pp;
  }
  if (version >= 5 && r.ok()) {
    if (!p.filtered) r.Fail("collections taken from an unfiltered peer");
    p.received = DecodeCollectionFilter(r);
  }
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("peer state");
  return p;
}

std::string EncodeLogHull(const LogHull& h) {
  std::string out;
  Writer w(&out);
  w.U8(1);
  w.Varint(h.base);
  EncodeVersionVector(h.hull, w);
  w.Varint(h.checkpoints.size());
  for (const auto& c : h.checkpoints) {
    w.Varint(c.seq);
    EncodeVersionVector(c.hull, w);
  }
  return out;
}

Result<LogHull> DecodeLogHull(std::string_view in) {
  Reader r(in);
  LogHull h;
  if (r.U8() != 1) r.Fail("unknown log hull version");
  h.base = r.Varint();
  h.hull = DecodeVersionVector(r);
  const uint64_t n = r.Count(2);
  if (n > LogHull::kMaxCheckpoints) r.Fail("too many log checkpoints");
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    LogCheckpoint c;
    c.seq = r.Varint();
    c.hull = DecodeVersionVector(r);
    // Ascending positions, each hull within the next and within the whole: anything else
    // would let a sync skip what it must send.
    const LogCheckpoint* prev = h.checkpoints.empty() ? nullptr : &h.checkpoints.back();
    if (c.seq <= (prev ? prev->seq : h.base) || (prev && !c.hull.Covers(prev->hull)) ||
        !h.hull.Covers(c.hull))
      r.Fail("log checkpoints out of order");
    h.checkpoints.push_back(std::move(c));
  }
  if (r.ok() && r.remaining()) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("log hull");
  return h;
}

}  // namespace tandem::engine
