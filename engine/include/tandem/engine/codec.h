// The compact, versioned binary encoding of values, field states and version vectors.
//
// Format (docs/format.md has the full grammar): varints (LEB128) for integers, replica
// ids replaced by small indices into a replica table, dots stored as an offset below
// the field's context entry (the common "latest write" dot costs two bytes).
//
// Decoding untrusted bytes never crashes, asserts or allocates more than the input
// could describe: every count is checked against the bytes that remain, and every
// decoded state is checked against the invariants (entries covered by the context,
// valid kinds, valid UTF-8, no duplicates, the context in ascending replica order). Other
// lists decode in any order to the same state; re-encoding gives the canonical bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/field.h"
#include "tandem/engine/store.h"

namespace tandem::engine {

inline constexpr uint8_t kFieldFormatVersion = 1;

// The varint of v at p (room for 10 bytes); returns the bytes written. Inline: it is
// on every write's path, several times.
inline size_t PutVarint(char* p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  p[n++] = static_cast<char>(v);
  return n;
}

// Appends primitive encodings to a string.
class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Varint(uint64_t v) {
    if (v < 0x80) {
      out_->push_back(static_cast<char>(v));
      return;
    }
    LongVarint(v);
  }
  void SignedVarint(int64_t v);  // zigzag: small magnitudes, either sign, in few bytes
  void Fixed64(uint64_t v);      // little endian
  void Raw(std::string_view s) { out_->append(s); }
  void LengthPrefixed(std::string_view s) {
    Varint(s.size());
    Raw(s);
  }
  std::string* out() { return out_; }

 private:
  void LongVarint(uint64_t v);  // v >= 0x80: two bytes or more, appended at once
  std::string* out_;
};

// Reads primitives from untrusted bytes. Every read checks bounds; the first failure
// sticks, later reads return zero values, and status() reports it. A view Raw or
// LengthPrefixed returns is valid until the next read (as long as the input, without
// More).
class Reader {
 public:
  // The bytes after those a Reader was given, for input held in parts (a field state
  // that arrived in pieces), read a part at a time so that it is never joined whole.
  class More {
   public:
    virtual ~More() = default;
    // Appends the next part to `out`; false when none is left (or it cannot be read:
    // the source keeps its own error).
    virtual bool Append(std::string* out) = 0;
    virtual size_t left() const = 0;  // bytes not appended yet
  };

  explicit Reader(std::string_view in, More* more = nullptr) : in_(in), more_(more) {}
  Reader(const Reader&) = delete;  // its view may be into its own window
  Reader& operator=(const Reader&) = delete;
  uint8_t U8();
  uint64_t Varint();
  int64_t SignedVarint();
  uint64_t Fixed64();
  std::string_view Raw(size_t n);
  std::string_view LengthPrefixed(size_t max_len);
  // A count of items each at least `min_item_bytes` long; fails if the remaining input
  // cannot hold that many (no over-allocation from a forged count).
  uint64_t Count(size_t min_item_bytes = 1);
  size_t remaining() const { return in_.size() - pos_ + (more_ ? more_->left() : 0); }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  void Fail(const std::string& why);
  // Turns the failure into kUnsupported: the bytes come from a newer format.
  void MarkUnsupported();

 private:
  // Makes at least n bytes readable at pos_ from More: what is left of the current
  // window, then the next parts, copied into the other window (never into itself).
  bool Refill(size_t n);
  std::string_view in_;
  size_t pos_ = 0;
  More* more_ = nullptr;
  std::string window_[2];
  int turn_ = 0;
  Status status_;
};

// Maps replica ids to small integers and back. Storage keeps one persistent table per
// replica; a sync message carries its own; the self-contained encoding embeds one.
class ReplicaTable {
 public:
  virtual ~ReplicaTable() = default;
  // The index of id, adding it if new.
  virtual uint64_t IndexOf(const ReplicaId& id) = 0;
  // The id at index; false if there is none.
  virtual bool IdAt(uint64_t index, ReplicaId* out) const = 0;
};

// A ReplicaTable held in memory.
class VectorReplicaTable : public ReplicaTable {
 public:
  uint64_t IndexOf(const ReplicaId& id) override;
  bool IdAt(uint64_t index, ReplicaId* out) const override;
  const std::vector<ReplicaId>& ids() const { return ids_; }
  void Clear() {
    ids_.clear();
    index_.clear();
  }

 private:
  std::vector<ReplicaId> ids_;
  std::map<ReplicaId, uint64_t> index_;
};

void EncodeValue(const Value& v, Writer& w);
Value DecodeValue(Reader& r);

// Field state against an external replica table. Fails (kCorrupt, nothing appended) if
// the state breaks the invariants every valid state keeps (its context covers its dots).
Status EncodeFieldState(const FieldState& s, ReplicaTable& table, std::string* out);
// The same, freeing each marker and element of `s` once written (on success it is left
// with its context and counters only): a large state is not held twice meanwhile.
Status EncodeFieldState(FieldState&& s, ReplicaTable& table, std::string* out);
// The same encoding in two steps, for a large state written straight into storage the
// store reserved (no copy of it in memory beside that): its exact size, then the bytes
// into exactly that many at `p` (Corrupt, and `p` undefined, if they are not).
Result<size_t> EncodedFieldStateSize(const FieldState& s, ReplicaTable& table);
Status EncodeFieldStateInto(const FieldState& s, ReplicaTable& table, char* p, size_t n);
// The same, freeing each marker and element of `s` once written.
Status EncodeFieldStateInto(FieldState&& s, ReplicaTable& table, char* p, size_t n);
Result<FieldState> DecodeFieldState(std::string_view in, const ReplicaTable& table);
// Reads one field state from a reader that holds more (for framed containers).
FieldState DecodeFieldState(Reader& r, const ReplicaTable& table);

// A field state too large to hold decoded (one that arrived in pieces) is read an item at
// a time, each handed to these (either may be empty) and none kept.
struct StateItems {
  std::function<void(uint64_t count)> markers;  // before the markers, how many
  std::function<void(const Dot&, const Marker&)> marker;
  std::function<void(uint64_t count)> elements;  // before the elements (none: 0)
  std::function<void(const Value&, const std::set<Dot>&)> element;
  // The items alone: an outline read with these keeps no marker or element (its caller
  // holds the outline already).
  bool only = false;
  // At most this many markers and element dots (0: any): an outline past it fails, its
  // status naming kPastMostItems.
  uint64_t most = 0;
};
inline constexpr char kPastMostItems[] = "more markers and set elements than allowed";
// Reads a field state as DecodeFieldState does, keeping its *outline*: the context and
// counter totals, the markers without their values (null), and one element, null, that
// holds the dots of every element but blob references (which, short, stay as they are).
// Every dot, timestamp, kind and blob reference is there, none of the other values: what
// a judgement by events (ReliesOnEventsAfter, say), collection (Collectable) and blob
// references (ForEachBlobRef) need, in far less memory. Fails
// where DecodeFieldState would, and also where a list is not in the order every encoder
// writes it (markers by dot, elements by value, dots and totals ascending), so that the
// bytes past the head are those EncodeFieldState would write. *header gets the state's
// first byte, *body_left the bytes the reader held where the markers start.
FieldState OutlineFieldState(Reader& r, const ReplicaTable& table, const StateItems* items,
                             uint8_t* header, uint64_t* body_left);

// A dot with its replica's whole id (16 bytes, then the varint seq), and a marker whole
// (its dot so, its timestamp as 8 bytes, its kind, its value): how a marker is named
// where no context gives positions (a digest's bytes, the hashes TakeOver compares).
void EncodeWholeDot(const Dot& d, Writer& w);
void EncodeWholeMarker(const Dot& d, const Marker& m, Writer& w);

// Hands a decoded state's markers and elements to `items`, as OutlineFieldState would.
void ForEachItem(const FieldState& s, const StateItems& items);

// A stored state whose markers, elements and counter totals lie out of line, in chunks
// the store holds (a state that arrived in pieces, kept as it came: format.md), has this
// bit in its header, and after its context where they lie. Only a store reads it;
// DecodeFieldState refuses it as it does any unknown flag.
inline constexpr uint8_t kOutOfLine = 8;

// Self-contained: the replica table is embedded before the state.
// A quarantined field state (all but its id, which is the store's key).
Result<std::string> EncodeQuarantineEntry(const QuarantineEntry& e);
Result<QuarantineEntry> DecodeQuarantineEntry(std::string_view in);
Result<std::string> EncodeFieldState(const FieldState& s);
Result<FieldState> DecodeFieldState(std::string_view in);
// An upper bound on the size of the self-contained encoding, so that a large state is
// encoded into one allocation (growing a buffer by doubling holds it twice meanwhile).
size_t EncodedSizeBound(const FieldState& s);
// True when the self-contained encoding is certainly at most kSmallEncoding bytes, for
// less than EncodedSizeBound costs (a few markers of short values, no set, no counter).
inline constexpr size_t kSmallEncoding = 512;
bool EncodesSmall(const FieldState& s);
// A state EncodesSmall passes, encoded (as EncodeFieldState) into the kSmallEncoding
// bytes at `p`, with no string in between: the bytes written, or 0 if it did not fit
// after all (EncodesSmall is a quick estimate; then encode it another way).
Result<size_t> EncodeSmallFieldState(const FieldState& s, ReplicaTable& table, char* p);
// What precedes a stored state's markers (its header and context, against a store's
// table), read without the rest. EncodeDelta's bytes for the state are DeltaHead's,
// then the stored state's from `rest` on, unchanged: past the context a state names
// replicas only by their position in it. So a store hands a large state out in pieces
// without decoding it.
struct StoredHead {
  uint8_t header = 0;  // the state's first byte: format version and sections
  VersionVector ctx;
  size_t rest = 0;  // where the markers start
};
Result<StoredHead> ReadStoredHead(std::string_view state, const ReplicaTable& table);
std::string DeltaHead(const FieldKey& key, const StoredHead& head);
// EncodeDelta's bytes before the state's self-contained encoding (its version and key).
std::string DeltaKeyPrefix(const FieldKey& key);
// Appends bytes [offset, offset + n) of `head` then `rest`, as if joined, to `out` (fewer
// at their end): a window of a delta encoding a store holds in two parts.
void AppendWindow(std::string_view head, std::string_view rest, uint64_t offset, size_t n,
                  std::string* out);
// A field's key and state (a state too large for a batch travels so, in pieces). The
// decoder checks the state, not the key (ValidateKey).
Result<std::string> EncodeDelta(const FieldKey& key, const FieldState& s);
// The same, consuming `s` as EncodeFieldState(FieldState&&) does.
Result<std::string> EncodeDelta(const FieldKey& key, FieldState&& s);
Result<std::pair<FieldKey, FieldState>> DecodeDelta(std::string_view in);
// The same from a reader that holds exactly one delta (nothing may follow it).
Result<std::pair<FieldKey, FieldState>> DecodeDelta(Reader& r);
// The same, keeping the state's outline only (OutlineFieldState). `header` is the state's
// first byte, `state_at` where its markers start in the encoding.
struct DeltaOutline {
  FieldKey key;
  FieldState outline;
  uint8_t header = 0;
  uint64_t state_at = 0;
};
Result<DeltaOutline> OutlineDelta(Reader& r, const StateItems* items = nullptr);

void EncodeVersionVector(const VersionVector& vv, Writer& w);  // with full 16-byte ids
std::string EncodePeerState(const PeerState& p);
Result<PeerState> DecodePeerState(std::string_view in);
VersionVector DecodeVersionVector(Reader& r);
// u8 all, count, (length-prefixed collection name)* (the names when not all).
void EncodeCollectionFilter(const CollectionFilter& f, Writer& w);
CollectionFilter DecodeCollectionFilter(Reader& r);
std::string EncodeLogHull(const LogHull& h);
Result<LogHull> DecodeLogHull(std::string_view in);

}  // namespace tandem::engine
