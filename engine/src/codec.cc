// The encodings' primitives (Writer, Reader, varints), values and field states;
// the encodings built on them are in codec_records.cc.
#include "tandem/engine/codec.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <type_traits>

#include "codec_state.h"

namespace tandem::engine {

// ---- primitives -------------------------------------------------------------------

namespace {

void PutFixed64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

// Writer's interface over a fixed buffer, for a small field state: each byte is a store,
// not a call into std::string. Writing past the end writes nothing more and is reported
// by overflowed().
class SpanWriter {
 public:
  SpanWriter(char* p, size_t n) : start_(p), p_(p), end_(p + n) {}
  void U8(uint8_t v) {
    if (p_ < end_)
      *p_++ = static_cast<char>(v);
    else
      overflowed_ = true;
  }
  void Varint(uint64_t v) {
    if (end_ - p_ >= 10) [[likely]]
      p_ += PutVarint(p_, v);
    else
      VarintNearEnd(v);
  }
  void SignedVarint(int64_t v) { Varint(ZigZag(v)); }
  void Fixed64(uint64_t v) {
    if (end_ - p_ >= 8) {
      PutFixed64(p_, v);
      p_ += 8;
    } else {
      overflowed_ = true;
    }
  }
  void Raw(std::string_view s) {
    if (static_cast<size_t>(end_ - p_) >= s.size()) {
      if (!s.empty()) std::memcpy(p_, s.data(), s.size());
      p_ += s.size();
    } else {
      overflowed_ = true;
    }
  }
  void LengthPrefixed(std::string_view s) {
    Varint(s.size());
    Raw(s);
  }
  bool overflowed() const { return overflowed_; }
  std::string_view written() const { return {start_, static_cast<size_t>(p_ - start_)}; }

 private:
  // Exactly what it takes, out of line: the common case stays small.
  [[gnu::noinline]] void VarintNearEnd(uint64_t v) {
    char buf[10];
    Raw(std::string_view(buf, PutVarint(buf, v)));
  }

  char* start_;
  char* p_;
  char* end_;
  bool overflowed_ = false;
};

// Writer's interface that only counts the bytes.
class CountingWriter {
 public:
  void U8(uint8_t) { ++n_; }
  void Varint(uint64_t v) { n_ += VarintBytes(v); }
  void SignedVarint(int64_t v) { Varint(ZigZag(v)); }
  void Fixed64(uint64_t) { n_ += 8; }
  void Raw(std::string_view s) { n_ += s.size(); }
  void LengthPrefixed(std::string_view s) {
    Varint(s.size());
    Raw(s);
  }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
};
}  // namespace

void Writer::LongVarint(uint64_t v) {
  char buf[10];
  out_->append(buf, PutVarint(buf, v));
}

void Writer::Fixed64(uint64_t v) {
  char buf[8];
  PutFixed64(buf, v);
  out_->append(buf, 8);
}

void Reader::MarkUnsupported() { status_ = Status::Unsupported(status_.message()); }

void Reader::Fail(const std::string& why) {
  if (status_.ok()) status_ = Status::Corrupt(why);
  pos_ = in_.size();
  more_ = nullptr;
}

bool Reader::Refill(size_t n) {
  if (!more_) return false;
  std::string& next = window_[turn_ ^= 1];
  next.assign(in_.substr(pos_));
  while (next.size() < n && more_->Append(&next)) {
  }
  in_ = next;
  pos_ = 0;
  return in_.size() >= n;
}

uint8_t Reader::U8() {
  if (!ok() || (pos_ >= in_.size() && !Refill(1))) {
    Fail("truncated");
    return 0;
  }
  return static_cast<uint8_t>(in_[pos_++]);
}

void Writer::SignedVarint(int64_t v) { Varint(ZigZag(v)); }

int64_t Reader::SignedVarint() {
  const uint64_t v = Varint();
  return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
}

uint64_t Reader::Varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (!ok() || (pos_ >= in_.size() && !Refill(1))) {
      Fail("truncated varint");
      return 0;
    }
    uint8_t b = static_cast<uint8_t>(in_[pos_++]);
    if (shift == 63 && b > 1) {
      Fail("varint overflows 64 bits");
      return 0;
    }
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (b == 0 && shift > 0) {
        Fail("non-canonical varint");
        return 0;
      }
      return v;
    }
  }
  Fail("varint too long");
  return 0;
}

uint64_t Reader::Fixed64() {
  std::string_view s = Raw(8);
  if (s.size() != 8) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

std::string_view Reader::Raw(size_t n) {
  if (!ok() || remaining() < n || (in_.size() - pos_ < n && !Refill(n))) {
    Fail("truncated");
    return {};
  }
  std::string_view s = in_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::string_view Reader::LengthPrefixed(size_t max_len) {
  uint64_t n = Varint();
  if (!ok()) return {};
  if (n > max_len) {
    Fail("length " + std::to_string(n) + " exceeds limit " + std::to_string(max_len));
    return {};
  }
  return Raw(static_cast<size_t>(n));
}

uint64_t Reader::Count(size_t min_item_bytes) {
  uint64_t n = Varint();
  if (ok() && min_item_bytes > 0 && n > remaining() / min_item_bytes) {
    Fail("count " + std::to_string(n) + " exceeds the remaining input");
    return 0;
  }
  return n;
}

uint64_t VectorReplicaTable::IndexOf(const ReplicaId& id) {
  auto [it, inserted] = index_.emplace(id, ids_.size());
  if (inserted) ids_.push_back(id);
  return it->second;
}

bool VectorReplicaTable::IdAt(uint64_t index, ReplicaId* out) const {
  if (index >= ids_.size()) return false;
  *out = ids_[index];
  return true;
}

// ---- values -----------------------------------------------------------------------

namespace {
enum ValueTag : uint8_t {
  kTagNull = 0,
  kTagFalse = 1,
  kTagTrue = 2,
  kTagInt = 3,
  kTagDouble = 4,
  kTagString = 5,
  kTagBytes = 6,
  kTagBlob = 7,
};
}  // namespace

namespace {
template <typename W>
void PutValue(const Value& v, W& w) {
  switch (TypeOf(v)) {
    case ValueType::kNull:
      w.U8(kTagNull);
      break;
    case ValueType::kBool:
      w.U8(std::get<bool>(v) ? kTagTrue : kTagFalse);
      break;
    case ValueType::kInt:
      w.U8(kTagInt);
      w.SignedVarint(std::get<int64_t>(v));
      break;
    case ValueType::kDouble: {
      w.U8(kTagDouble);
      uint64_t bits;
      double d = std::get<double>(v);
      std::memcpy(&bits, &d, 8);
      w.Fixed64(bits);
      break;
    }
    case ValueType::kString:
      w.U8(kTagString);
      w.LengthPrefixed(std::get<std::string>(v));
      break;
    case ValueType::kBytes:
      w.U8(kTagBytes);
      w.LengthPrefixed(std::get<Bytes>(v).data);
      break;
    case ValueType::kBlob: {
      const auto& b = std::get<BlobRef>(v);
      w.U8(kTagBlob);
      w.Raw(std::string_view(reinterpret_cast<const char*>(b.hash.data()), b.hash.size()));
      w.Varint(b.size);
      w.LengthPrefixed(b.type);
      break;
    }
  }
}
}  // namespace

void EncodeValue(const Value& v, Writer& w) { PutValue(v, w); }

Value DecodeValue(Reader& r) {
  switch (r.U8()) {
    case kTagNull:
      return Value{};
    case kTagFalse:
      return Value{false};
    case kTagTrue:
      return Value{true};
    case kTagInt:
      return Value{r.SignedVarint()};
    case kTagDouble: {
      uint64_t bits = r.Fixed64();
      double d;
      std::memcpy(&d, &bits, 8);
      return Value{d};
    }
    case kTagString: {
      std::string_view s = r.LengthPrefixed(kMaxValueBytes);
      if (!IsValidUtf8(s)) r.Fail("string value is not valid UTF-8");
      return Value{std::string(s)};
    }
    case kTagBytes:
      return Value{Bytes{std::string(r.LengthPrefixed(kMaxValueBytes))}};
    case kTagBlob: {
      BlobRef b;
      std::string_view h = r.Raw(b.hash.size());
      if (r.ok()) std::memcpy(b.hash.data(), h.data(), h.size());
      b.size = r.Varint();
      b.type = std::string(r.LengthPrefixed(kMaxBlobTypeBytes));
      Value v{std::move(b)};
      if (r.ok()) {
        if (Status st = ValidateValue(v); !st.ok()) r.Fail(st.message());
      }
      return v;
    }
    default:
      r.Fail("unknown value tag");
      return Value{};
  }
}

// ---- field states -------------------------------------------------------------------
//
// state    := header:u8 ctx markers [elements] [counter] [base]
// header   := version << 4 | has_elements | has_counter << 1 | has_base << 2
// ctx      := count (table_index seq)*          replica ids ascending, seq >= 1
// dot      := ctx_position offset               seq = ctx[position].seq - offset
// markers  := count (dot hlc_ms (hlc_logical << 2 | kind) [value if register])*
// elements := count (value count dot+)*
// counter  := count (ctx_position pos neg)*     (base has the same shape)
//
// Dots name their replica by position in the field's own context, so a dot costs two
// bytes in the common case and is covered by the context by construction.

namespace {

// False (nothing written) if the context does not cover the dot, which every state built
// by the mutators, Join and the decoder guarantees.
template <typename W>
[[nodiscard]] bool EncodeDot(const Dot& d, CtxView ctx, W& w) {
  size_t pos = 0;
  while (pos < ctx.size() && ctx[pos].first != d.replica) ++pos;
  if (pos == ctx.size() || d.seq > ctx[pos].second || d.seq == 0) return false;
  w.Varint(pos);
  w.Varint(ctx[pos].second - d.seq);
  return true;
}

}  // namespace

Dot DecodeDot(Reader& r, CtxView ctx) {
  uint64_t pos = r.Varint();
  uint64_t offset = r.Varint();
  if (!r.ok()) return {};
  if (pos >= ctx.size()) {
    r.Fail("dot names a replica outside the context");
    return {};
  }
  if (offset >= ctx[pos].second) {
    r.Fail("dot below sequence 1");
    return {};
  }
  return Dot{ctx[pos].first, ctx[pos].second - offset};
}

namespace {

// False if the context does not name a replica of the totals (see EncodeDot).
template <typename W>
[[nodiscard]] bool EncodeTotals(const std::map<ReplicaId, PnTotals>& m, CtxView ctx, W& w) {
  size_t n = 0;
  for (const auto& [r, t] : m) n += (t.pos || t.neg);
  w.Varint(n);
  for (const auto& [r, t] : m) {
    if (!t.pos && !t.neg) continue;
    size_t pos = 0;
    while (pos < ctx.size() && ctx[pos].first != r) ++pos;
    if (pos == ctx.size()) return false;
    w.Varint(pos);
    w.Varint(t.pos);
    w.Varint(t.neg);
  }
  return true;
}

}  // namespace

void DecodeTotals(Reader& r, CtxView ctx, std::map<ReplicaId, PnTotals>* out, bool ordered) {
  uint64_t n = r.Count(3);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    uint64_t pos = r.Varint();
    PnTotals t{r.Varint(), r.Varint()};
    if (!r.ok()) return;
    if (pos >= ctx.size()) return r.Fail("counter names a replica outside the context");
    if (ordered && !out->empty() && !(out->rbegin()->first < ctx[pos].first))
      return r.Fail("counter totals not in canonical order");
    if (!t.pos && !t.neg) return r.Fail("zero counter totals");
    if (!out->emplace(ctx[pos].first, t).second) return r.Fail("duplicate counter entry");
  }
}

namespace {

template <typename W>
Status PutMarker(const Dot& d, const Marker& m, CtxView ctx, W& w) {
  TANDEM_CHECK(EncodeDot(d, ctx, w), "a field's marker dot is covered by its context");
  w.Varint(HlcMillis(m.hlc));
  w.Varint(static_cast<uint64_t>(HlcLogical(m.hlc)) << 2 | static_cast<uint8_t>(m.kind));
  if (m.kind == Kind::kRegister) PutValue(m.value, w);
  return Status::Ok();
}

template <typename W>
Status PutElement(const Value& v, const std::set<Dot>& dots, CtxView ctx, W& w) {
  PutValue(v, w);
  w.Varint(dots.size());
  for (const Dot& d : dots)
    TANDEM_CHECK(EncodeDot(d, ctx, w), "a set element's dot is covered by its context");
  return Status::Ok();
}

// The body of EncodeFieldState, through any of the writers. Given a state it may change
// (S not const), it frees each marker and element once written: a large state is not
// held twice, decoded and encoded, while it is encoded.
template <typename W, typename S = const FieldState>
Status PutFieldState(S& s, ReplicaTable& table, W& w) {
  constexpr bool kConsume = !std::is_const_v<S>;
  // Header: format version in the high nibble, which optional sections follow in the low.
  uint8_t flags = (s.elements.empty() ? 0 : kHasElements) | (s.counter.empty() ? 0 : kHasCounter) |
                  (s.counter_base.empty() ? 0 : kHasBase);
  w.U8(static_cast<uint8_t>(kFieldFormatVersion << 4) | flags);
  // The context in order, on the stack when it is small (it names few replicas): copied
  // into storage left uninitialized (zeroing eight entries first cost as much again).
  constexpr size_t kSmallCtx = 8;
  static_assert(std::is_trivially_destructible_v<CtxEntry>);  // nothing to destroy
  alignas(CtxEntry) unsigned char small[kSmallCtx * sizeof(CtxEntry)];
  std::vector<CtxEntry> large;
  CtxView ctx;
  if (s.ctx.size() <= kSmallCtx) {
    CtxEntry* at = reinterpret_cast<CtxEntry*>(small);
    std::uninitialized_copy(s.ctx.entries().begin(), s.ctx.entries().end(), at);
    if (!s.ctx.empty()) ctx = CtxView(std::launder(at), s.ctx.size());
  } else {
    large.assign(s.ctx.entries().begin(), s.ctx.entries().end());
    ctx = large;
  }
  w.Varint(ctx.size());
  for (const auto& [r, seq] : ctx) {
    w.Varint(table.IndexOf(r));
    w.Varint(seq);
  }
  w.Varint(s.markers.size());
  for (auto it = s.markers.begin(); it != s.markers.end();) {
    TANDEM_RETURN_IF_ERROR(PutMarker(it->first, it->second, ctx, w));
    if constexpr (kConsume)
      it = s.markers.erase(it);
    else
      ++it;
  }
  if (flags & kHasElements) {
    w.Varint(s.elements.size());
    for (auto it = s.elements.begin(); it != s.elements.end();) {
      TANDEM_RETURN_IF_ERROR(PutElement(it->first, it->second, ctx, w));
      if constexpr (kConsume)
        it = s.elements.erase(it);
      else
        ++it;
    }
  }
  if (flags & kHasCounter)
    TANDEM_CHECK(EncodeTotals(s.counter, ctx, w), "counter replicas are in the context");
  if (flags & kHasBase)
    TANDEM_CHECK(EncodeTotals(s.counter_base, ctx, w), "counter replicas are in the context");
  return Status::Ok();
}

}  // namespace

Status WriteMarker(const Dot& d, const Marker& m, CtxView ctx, Writer& w) {
  return PutMarker(d, m, ctx, w);
}

Status WriteElement(const Value& v, const std::set<Dot>& dots, CtxView ctx, Writer& w) {
  return PutElement(v, dots, ctx, w);
}

Status WriteTotals(const std::map<ReplicaId, PnTotals>& m, CtxView ctx, Writer& w) {
  TANDEM_CHECK(EncodeTotals(m, ctx, w), "counter replicas are in the context");
  return Status::Ok();
}

Result<size_t> EncodedFieldStateSize(const FieldState& s, ReplicaTable& table) {
  CountingWriter w;
  TANDEM_RETURN_IF_ERROR(PutFieldState(s, table, w));
  return w.size();
}

namespace {
template <typename S>
Status EncodeInto(S& s, ReplicaTable& table, char* p, size_t n) {
  SpanWriter w(p, n);
  TANDEM_RETURN_IF_ERROR(PutFieldState(s, table, w));
  if (w.overflowed() || w.written().size() != n)
    return Status::Corrupt("a field state's encoding is not the size counted for it");
  return Status::Ok();
}
}  // namespace

Status EncodeFieldStateInto(const FieldState& s, ReplicaTable& table, char* p, size_t n) {
  return EncodeInto(s, table, p, n);
}

Status EncodeFieldStateInto(FieldState&& s, ReplicaTable& table, char* p, size_t n) {
  return EncodeInto(s, table, p, n);
}

namespace {
// Appended to `out` through a Writer; nothing half-encoded is left on failure.
template <typename S>
Status AppendEncoding(S& s, ReplicaTable& table, std::string* out) {
  const size_t start = out->size();
  Writer w(out);
  Status st = PutFieldState(s, table, w);
  if (!st.ok()) out->resize(start);
  return st;
}
}  // namespace

Status EncodeFieldState(FieldState&& s, ReplicaTable& table, std::string* out) {
  return AppendEncoding(s, table, out);
}

Result<size_t> EncodeSmallFieldState(const FieldState& s, ReplicaTable& table, char* p) {
  SpanWriter w(p, kSmallEncoding);
  TANDEM_RETURN_IF_ERROR(PutFieldState(s, table, w));
  return w.overflowed() ? 0 : w.written().size();
}

Status EncodeFieldState(const FieldState& s, ReplicaTable& table, std::string* out) {
  if (EncodesSmall(s)) {
    // Most states: encoded on the stack, then appended at once.
    char buf[kSmallEncoding];
    TANDEM_ASSIGN_OR_RETURN(const size_t n, EncodeSmallFieldState(s, table, buf));
    if (n) {
      out->append(buf, n);
      return Status::Ok();
    }
  }
  return AppendEncoding(s, table, out);
}

void ReadHead(Reader& r, const ReplicaTable& table, FieldState& s, std::vector<CtxEntry>& ctx,
              uint8_t* flags) {
  const uint8_t header = r.U8();
  const uint8_t version = header >> 4;
  *flags = header & 0x0f;
  if (r.ok() && version != kFieldFormatVersion) {
    r.Fail("field state format " + std::to_string(version) + " is not supported");
    if (version > kFieldFormatVersion) r.MarkUnsupported();
    return;
  }
  if (*flags & ~(kHasElements | kHasCounter | kHasBase)) {
    r.Fail("unknown field state flags");
    return;
  }
  uint64_t n = r.Count(2);
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    uint64_t idx = r.Varint();
    uint64_t seq = r.Varint();
    ReplicaId id;
    if (!r.ok()) break;
    if (!table.IdAt(idx, &id)) {
      r.Fail("unknown replica index " + std::to_string(idx));
      break;
    }
    if (seq == 0) {
      r.Fail("context entry with sequence 0");
      break;
    }
    if (s.ctx.Get(id) != 0) {
      r.Fail("duplicate replica in context");
      break;
    }
    s.ctx.Raise(id, seq);
    ctx.emplace_back(id, seq);
  }
  // Positions follow the encoder's order, which is ascending replica id.
  for (size_t i = 1; i < ctx.size() && r.ok(); ++i)
    if (!(ctx[i - 1].first < ctx[i].first)) r.Fail("context not in canonical order");
}

Result<StoredHead> ReadStoredHead(std::string_view state, const ReplicaTable& table) {
  Reader r(state);
  FieldState s;
  std::vector<CtxEntry> ctx;
  uint8_t flags = 0;
  ReadHead(r, table, s, ctx, &flags);
  if (!r.ok()) return r.status().With("field state");
  return StoredHead{static_cast<uint8_t>(state[0]), std::move(s.ctx), state.size() - r.remaining()};
}

bool ReadMarker(Reader& r, CtxView ctx, Dot* d, Marker* m) {
  *d = DecodeDot(r, ctx);
  const uint64_t ms = r.Varint();
  const uint64_t logical_kind = r.Varint();
  const uint64_t logical = logical_kind >> 2;
  const uint8_t kind = logical_kind & 3;
  if (!r.ok()) return false;
  if (ms > 0xffffffffffffULL || logical > 0xffff) {
    r.Fail("timestamp out of range");
    return false;
  }
  if (kind < 1 || kind > 3) {
    r.Fail("unknown field kind");
    return false;
  }
  *m = Marker{MakeHlc(ms, static_cast<uint16_t>(logical)), static_cast<Kind>(kind), Value{}};
  if (m->kind == Kind::kRegister) m->value = DecodeValue(r);
  return r.ok();
}

bool ReadElement(Reader& r, CtxView ctx, bool ordered, Value* v, std::set<Dot>* dots,
                 uint64_t most) {
  *v = DecodeValue(r);
  const uint64_t nd = r.Count(2);
  if (r.ok() && nd == 0) r.Fail("set element without dots");
  if (r.ok() && most && nd > most) r.Fail(kPastMostItems);
  dots->clear();
  for (uint64_t k = 0; k < nd && r.ok(); ++k) {
    const Dot d = DecodeDot(r, ctx);
    if (!r.ok()) break;
    if (!ordered) {
      if (!dots->insert(d).second) r.Fail("duplicate element dot");
    } else if (!dots->empty() && !(*dots->rbegin() < d)) {
      r.Fail("dots not in canonical order");
    } else {
      dots->insert(dots->end(), d);
    }
  }
  return r.ok();
}

namespace {
// The sections after the head, each marker and element handed to `marker` and `element`
// as it is read. With `ordered`, every list must be in the order the encoder writes it
// (markers by dot, elements by value, an element's dots and the totals ascending), which
// also rules out duplicates; without, any order, and the callers refuse duplicates.
template <typename OnMarker, typename OnElement>
void ReadBody(Reader& r, CtxView ctx, uint8_t flags, FieldState& s, bool ordered,
              OnMarker on_marker, OnElement on_element, const StateItems* items = nullptr) {
  // StateItems::most, checked as each count is read, before what it counts is.
  const uint64_t most = items ? items->most : 0;
  uint64_t counted = 0;
  auto past = [&](uint64_t k) {
    if (most && k > most - counted) r.Fail(kPastMostItems);
    counted += r.ok() ? k : 0;
    return !r.ok();
  };
  uint64_t n = r.Count(4);
  if (r.ok() && past(n)) return;
  if (items && items->markers && r.ok()) items->markers(n);
  std::optional<Dot> last_dot;
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    Dot d;
    Marker m;
    if (!ReadMarker(r, ctx, &d, &m)) break;
    if (ordered && last_dot && !(*last_dot < d)) {
      r.Fail("markers not in canonical order");
      break;
    }
    last_dot = d;
    on_marker(d, std::move(m));
  }
  n = flags & kHasElements ? r.Count(4) : 0;
  if (r.ok() && (flags & kHasElements) && n == 0) r.Fail("empty optional section");
  if (r.ok() && past(n)) return;  // a dot each, at least
  if (items && items->elements && r.ok()) items->elements(n);
  std::optional<Value> last_value;
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    Value v;
    std::set<Dot> dots;
    if (!ReadElement(r, ctx, ordered, &v, &dots, most ? 1 + (most - counted) : 0)) break;
    counted += dots.size() - 1;
    if (ordered && last_value && CompareValues(*last_value, v) >= 0) {
      r.Fail("set elements not in canonical order");
      break;
    }
    if (ordered) last_value = v;
    on_element(std::move(v), std::move(dots));
  }
  if (flags & kHasCounter) DecodeTotals(r, ctx, &s.counter, ordered);
  if (flags & kHasBase) DecodeTotals(r, ctx, &s.counter_base, ordered);
  if (r.ok() && (((flags & kHasCounter) && s.counter.empty()) ||
                 ((flags & kHasBase) && s.counter_base.empty())))
    r.Fail("empty optional section");
}
}  // namespace

FieldState DecodeFieldState(Reader& r, const ReplicaTable& table) {
  FieldState s;
  std::vector<CtxEntry> ctx;
  uint8_t flags = 0;
  ReadHead(r, table, s, ctx, &flags);
  if (!r.ok()) return s;
  ReadBody(
      r, ctx, flags, s, false,
      [&](const Dot& d, Marker&& m) {
        if (!s.markers.emplace(d, std::move(m)).second) r.Fail("duplicate marker dot");
      },
      [&](Value&& v, std::set<Dot>&& dots) {
        if (!s.elements.emplace(std::move(v), std::move(dots)).second)
          r.Fail("duplicate set element");
      });
  return s;
}

FieldState OutlineFieldState(Reader& r, const ReplicaTable& table, const StateItems* items,
                             uint8_t* header, uint64_t* body_left) {
  FieldState s;
  std::vector<CtxEntry> ctx;
  uint8_t flags = 0;
  ReadHead(r, table, s, ctx, &flags);
  if (!r.ok()) return s;
  *header = static_cast<uint8_t>(kFieldFormatVersion << 4) | flags;
  *body_left = r.remaining();
  std::set<Dot> element_dots;
  auto is_ref = [](const Value& v) { return std::holds_alternative<BlobRef>(v); };
  ReadBody(
      r, ctx, flags, s, true,
      [&](const Dot& d, Marker&& m) {
        if (items && items->marker) items->marker(d, m);
        if (items && items->only) return;
        if (!is_ref(m.value)) m.value = Value{};
        s.markers.emplace_hint(s.markers.end(), d, std::move(m));
      },
      [&](Value&& v, std::set<Dot>&& dots) {
        if (items && items->element) items->element(v, dots);
        if (items && items->only) return;
        if (is_ref(v))
          s.elements.emplace(std::move(v), std::move(dots));
        else
          element_dots.merge(dots);
      },
      items);
  if (!element_dots.empty()) s.elements[Value{}].merge(element_dots);
  return s;
}

Result<FieldState> DecodeFieldState(std::string_view in, const ReplicaTable& table) {
  Reader r(in);
  FieldState s = DecodeFieldState(r, table);
  if (r.ok() && r.remaining() != 0) r.Fail("trailing bytes");
  if (!r.ok()) return r.status().With("field state");
  return s;
}

}  // namespace tandem::engine
