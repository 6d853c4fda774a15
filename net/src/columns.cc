#include "columns.h"

#include <array>
#include <limits>

namespace tandem::net {

namespace {

using engine::FieldDelta;
using engine::FieldState;
using engine::Reader;
using engine::Writer;

// What an entry's state is, in the shapes column.
// kOwnText is a kOwnRegister holding a string: its length goes in the values column,
// its bytes in the text column, so text sits with text and compresses as such.
enum Shape : uint8_t { kWhole = 0, kOwnRegister = 1, kOwnText = 2 };

// The columns, in the order they follow the entry count.
enum Column { kKeys, kShapes, kReplicas, kSeqs, kClocks, kValues, kText, kWholeStates, kColumns };

// The most a sequence number in the seqs column may be: a state whose sequence number
// is larger (legal, if no replica gets there) travels whole.
constexpr uint64_t kMaxColumnSeq = uint64_t{std::numeric_limits<int64_t>::max()};

// A register written once by one replica: its context is exactly its marker's dot.
bool IsOwnRegister(const FieldState& s) {
  if (s.ctx.size() != 1 || s.markers.size() != 1 || !s.elements.empty() || !s.counter.empty() ||
      !s.counter_base.empty())
    return false;
  const auto& [dot, m] = *s.markers.begin();
  const auto& [replica, seq] = *s.ctx.entries().begin();
  return m.kind == engine::Kind::kRegister && dot.replica == replica && dot.seq == seq &&
         seq <= kMaxColumnSeq;
}

}  // namespace

Status EncodeColumns(const std::vector<FieldDelta>& deltas,
                     const std::function<uint64_t(const std::string&)>& name,
                     engine::ReplicaTable& table, bool logical_deltas, std::string* out) {
  std::array<std::string, kColumns> col;
  std::vector<Writer> w;
  for (auto& c : col) w.emplace_back(&c);
  std::string_view prev_record;
  uint64_t prev_seq = 0, prev_ms = 0, prev_logical = 0;
  for (const auto& d : deltas) {
    const std::string& rec = d.key.record;
    size_t shared = 0;
    while (shared < rec.size() && shared < prev_record.size() && rec[shared] == prev_record[shared])
      ++shared;
    w[kKeys].Varint(name(d.key.collection));
    w[kKeys].Varint(shared);
    w[kKeys].LengthPrefixed(std::string_view(rec).substr(shared));
    w[kKeys].Varint(name(d.key.field));
    prev_record = rec;
    if (!IsOwnRegister(d.state)) {
      w[kShapes].U8(kWhole);
      TANDEM_RETURN_IF_ERROR(engine::EncodeFieldState(d.state, table, &col[kWholeStates])
                                 .With("field " + d.key.field + " of " + d.key.record));
      continue;
    }
    const auto& [dot, m] = *d.state.markers.begin();
    const auto* text = std::get_if<std::string>(&m.value);
    w[kShapes].U8(text ? kOwnText : kOwnRegister);
    w[kReplicas].Varint(table.IndexOf(dot.replica));
    // Differences wrap modulo 2^64; the decoder undoes them the same way.
    w[kSeqs].SignedVarint(static_cast<int64_t>(dot.seq - prev_seq));
    const uint64_t ms = engine::HlcMillis(m.hlc), logical = engine::HlcLogical(m.hlc);
    w[kClocks].SignedVarint(static_cast<int64_t>(ms - prev_ms));
    // Writes within one millisecond count up: each a difference of one, not a counter of
    // two bytes once it passes 127.
    if (logical_deltas) {
      const uint64_t base = ms == prev_ms ? prev_logical : 0;
      w[kClocks].SignedVarint(static_cast<int64_t>(logical) - static_cast<int64_t>(base));
    } else {
      w[kClocks].Varint(logical);
    }
    if (text) {
      w[kValues].Varint(text->size());
      w[kText].Raw(*text);
    } else {
      engine::EncodeValue(m.value, w[kValues]);
    }
    prev_seq = dot.seq;
    prev_ms = ms;
    prev_logical = logical;
  }
  Writer body(out);
  body.Varint(deltas.size());
  for (const auto& c : col) body.LengthPrefixed(c);
  return Status::Ok();
}

Status DecodeColumns(std::string_view bytes, const std::vector<std::string>& names,
                     const engine::ReplicaTable& table, size_t max_entries, bool logical_deltas,
                     std::vector<FieldDelta>* out) {
  Reader body(bytes);
  const uint64_t n = body.Count(5);  // a key takes at least four bytes, a shape one
  if (body.ok() && n > max_entries)
    return Status::Corrupt("batch has more than " + std::to_string(max_entries) + " entries");
  std::array<std::string_view, kColumns> col;
  for (auto& c : col) c = body.LengthPrefixed(bytes.size());
  if (body.ok() && body.remaining()) body.Fail("trailing bytes after the columns");
  if (!body.ok()) return body.status().With("batch columns");
  std::vector<Reader> r(col.begin(), col.end());
  auto name_at = [&](uint64_t i) -> const std::string* {
    return i < names.size() ? &names[i] : nullptr;
  };
  std::string prev_record;
  uint64_t prev_seq = 0, prev_ms = 0, prev_logical = 0;
  out->reserve(static_cast<size_t>(n));
  for (uint64_t i = 0; i < n; ++i) {
    FieldDelta d;
    Reader& keys = r[kKeys];
    const std::string* coll = name_at(keys.Varint());
    const uint64_t shared = keys.Varint();
    const std::string_view suffix = keys.LengthPrefixed(engine::kMaxRecordId);
    const std::string* field = name_at(keys.Varint());
    if (!keys.ok()) return keys.status().With("batch keys");
    if (!coll || !field) return Status::Corrupt("batch entry names an unknown name");
    if (shared > prev_record.size() || shared + suffix.size() > engine::kMaxRecordId)
      return Status::Corrupt("batch entry shares more of the previous record id than it has");
    d.key.collection = *coll;
    d.key.record = prev_record.substr(0, static_cast<size_t>(shared));
    d.key.record += suffix;
    d.key.field = *field;
    TANDEM_RETURN_IF_ERROR(engine::ValidateKey(d.key).With("batch entry"));
    prev_record = d.key.record;
    const uint8_t shape = r[kShapes].U8();
    if (!r[kShapes].ok()) return r[kShapes].status().With("batch shapes");
    if (shape == kWhole) {
      d.state = engine::DecodeFieldState(r[kWholeStates], table);
      if (!r[kWholeStates].ok()) return r[kWholeStates].status().With("batch field state");
    } else if (shape == kOwnRegister || shape == kOwnText) {
      engine::ReplicaId replica;
      const uint64_t index = r[kReplicas].Varint();
      if (!r[kReplicas].ok()) return r[kReplicas].status().With("batch replicas");
      if (!table.IdAt(index, &replica))
        return Status::Corrupt("batch entry names unknown replica index " + std::to_string(index));
      const uint64_t seq = prev_seq + static_cast<uint64_t>(r[kSeqs].SignedVarint());
      if (!r[kSeqs].ok()) return r[kSeqs].status().With("batch sequence numbers");
      if (seq == 0 || seq > kMaxColumnSeq)
        return Status::Corrupt("batch entry with sequence number out of range");
      const uint64_t ms = prev_ms + static_cast<uint64_t>(r[kClocks].SignedVarint());
      uint64_t logical;
      if (logical_deltas) {
        const uint64_t base = ms == prev_ms ? prev_logical : 0;  // at most 0xffff
        const int64_t delta = r[kClocks].SignedVarint();
        // Out of range either way unless within [-base, 0xffff - base]: no overflow.
        logical = delta < -static_cast<int64_t>(base) || delta > 0xffff
                      ? uint64_t{0x10000}
                      : static_cast<uint64_t>(static_cast<int64_t>(base) + delta);
      } else {
        logical = r[kClocks].Varint();
      }
      if (!r[kClocks].ok()) return r[kClocks].status().With("batch timestamps");
      if (ms > 0xffffffffffffULL || logical > 0xffff)
        return Status::Corrupt("batch entry with timestamp out of range");
      engine::Value value;
      if (shape == kOwnText) {
        const uint64_t size = r[kValues].Varint();
        if (r[kValues].ok() && size > engine::kMaxValueBytes)
          return Status::Corrupt("batch text longer than a value may be");
        const std::string_view chars = r[kText].Raw(static_cast<size_t>(size));
        if (!r[kValues].ok()) return r[kValues].status().With("batch values");
        if (!r[kText].ok()) return r[kText].status().With("batch text");
        if (!engine::IsValidUtf8(chars)) return Status::Corrupt("batch text is not valid UTF-8");
        value = engine::Value{std::string(chars)};
      } else {
        value = engine::DecodeValue(r[kValues]);
        if (!r[kValues].ok()) return r[kValues].status().With("batch values");
        if (std::holds_alternative<std::string>(value))
          return Status::Corrupt("batch text outside the text column");
      }
      d.state.ctx.Raise(replica, seq);
      d.state.markers.emplace(engine::Dot{replica, seq},
                              engine::Marker{engine::MakeHlc(ms, static_cast<uint16_t>(logical)),
                                             engine::Kind::kRegister, std::move(value)});
      prev_seq = seq;
      prev_ms = ms;
      prev_logical = logical;
    } else {
      return Status::Corrupt("batch entry of unknown shape " + std::to_string(shape));
    }
    out->push_back(std::move(d));
  }
  for (const auto& c : r)
    if (c.remaining()) return Status::Corrupt("batch columns hold more than their entries");
  return Status::Ok();
}

}  // namespace tandem::net
