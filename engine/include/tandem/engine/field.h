// Field and record CRDTs.
//
// A field is one CRDT whose kind is set by the operation that writes it: register
// (put), counter (incr), or add-wins set (add/remove). All three share one causal
// design, so type changes, conflicts and record deletion follow one rule:
//
//   - Every operation on a field takes a fresh dot. The field keeps a *causal
//     context* `ctx` (a version vector): every dot <= ctx that ever touched the field
//     is reflected in the state. Joining two states keeps an entry if both have it,
//     or if one has it and the other's context does not cover it (the other has not
//     seen it, so it is not a removal). This is the dot-store join of delta-state CRDTs.
//   - `markers` is a multi-value register of operations: dot -> (hlc, kind, value).
//     An operation replaces every marker it has observed with its own. Concurrent
//     operations leave several markers (siblings). A field is live while it has a
//     marker; its visible kind and (for registers) value come from the winning marker,
//     the greatest by (hlc, replica id, seq).
//   - `elements` is the add-wins set: element -> dots of the adds that put it there. A
//     remove drops the observed dots of the element; an add concurrent with it survives.
//   - `counter` / `counter_base` form a PN-counter with a reset baseline: per replica,
//     the total of its increments and decrements (each only ever grows, join = max),
//     and the totals an observer had seen when it reset or deleted the field (join =
//     max). The value is the sum of (total - baseline): a reset keeps increments it
//     had not seen.
//
// An operation of one kind clears what it observed of the other kinds (a put on a
// counter field resets the counter, an incr on a set field empties the set). Two
// *concurrent* operations of different kinds both survive in the state; the field
// reads as the kind of the winning marker, and the loser stays visible in Conflicts()
// until a later operation supersedes both. The result is deterministic on every replica.
//
// Deleting a record applies, to every field the deleter has seen, the removal of
// everything it observed: markers and elements drop, the counter's baseline catches up.
// An update concurrent with the deletion survives (add-wins), so no offline edit is lost.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tandem/engine/ids.h"
#include "tandem/engine/value.h"

namespace tandem::engine {

// Where a field state lives: collection, record id, field name.
struct FieldKey {
  std::string collection;
  std::string record;
  std::string field;
  auto operator<=>(const FieldKey&) const = default;
  // "collection/record.field", as messages name a field.
  std::string Name() const { return collection + "/" + record + "." + field; }
};

enum class Kind : uint8_t { kRegister = 1, kCounter = 2, kSet = 3 };
const char* KindName(Kind k);

struct Marker {
  Hlc hlc = 0;
  Kind kind = Kind::kRegister;
  Value value;  // the register value; null for counter and set operations
  bool operator==(const Marker& o) const {
    return hlc == o.hlc && kind == o.kind && SameValue(value, o.value);
  }
};

struct PnTotals {
  uint64_t pos = 0;  // saturating sums of increments and of decrements
  uint64_t neg = 0;
  bool operator==(const PnTotals&) const = default;
};

struct FieldState {
  VersionVector ctx;
  std::map<Dot, Marker> markers;
  std::map<Value, std::set<Dot>, ValueLess> elements;
  std::map<ReplicaId, PnTotals> counter;
  std::map<ReplicaId, PnTotals> counter_base;

  bool Live() const { return !markers.empty(); }
  bool operator==(const FieldState& o) const;
  // Greatest hlc of any marker (0 if none); the clock observes this on merge.
  Hlc MaxHlc() const;
};

// A total order on markers with the same dot, so that even forged input (one dot, two
// different markers) joins deterministically: Join keeps the greater.
bool MarkerLess(const Marker& a, const Marker& b);

// Joins `other` into `into` (commutative, associative, idempotent). Returns true when
// `into` changed.
bool Join(FieldState& into, const FieldState& other);

// True if Join(into, other) would change `into`: `other` brings an operation, a removal,
// a counter total or an event `into` has not seen. One that brings none is the same
// whoever wrote it, so no judgement of its writer needs to refuse it. Exact for normal
// states (every decoded one): Join may also tidy an abnormal `into` (an element with no
// dots) without that counting as a change here.
bool JoinChanges(const FieldState& into, const FieldState& other);

// True if one of the state's current operations (a marker, or a set element's dot) is an
// event of `r` numbered above `seq`: a value that would come from r's later events.
// (Counter totals are not separable by event and are not considered.)
bool CarriesEventsAfter(const FieldState& s, const ReplicaId& r, uint64_t seq);

// True if `s` has seen events of `r` numbered above `seq` (its context covers them) and
// brings no current operation of another replica that `ours` (null: no state) has not
// seen: whatever it would remove from ours, only r's later events can explain it. A
// record deletion leaves no marker, only context, so this is how one shows.
bool RemovesOnlyByEventsAfter(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                              uint64_t seq);

// Either of the two: what `s` would do to ours relies on r's events past `seq`. The test
// a cutoff applies (a revocation, a permission taken away, a replica no one has bound).
bool ReliesOnEventsAfter(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                         uint64_t seq);

// The same test for r's events numbered in (after, upto] alone, the events a device made
// while a permission it has back was away: `s` carries one of them as a current operation,
// or removes from ours what only r's events explain and has seen r no further than
// `upto`. A state that has seen r past `upto` and brings no current operation of r in
// the window is not judged by it: r's later events, which count, may explain what it
// removes (a record r deleted again once it could).
bool ReliesOnEventsIn(const FieldState& s, const FieldState* ours, const ReplicaId& r,
                      uint64_t after, uint64_t upto);

// Collection. A state with no marker and no element reads as nothing: it only carries a
// removal (a deleted record, say) to replicas that have not seen it. Once every member
// holds the events of its context, none can send anything it removes, so it may go.
bool IsTombstone(const FieldState& s);
// True when `s` is a tombstone whose context `absorbed` covers, and that holds no counter
// totals. Those stay: an increment made concurrently with the removal carries its
// replica's running total, which counts what the removal reset (the tombstone's
// baseline); and a replica that wrote the counter again after forgetting its total
// would start it again from zero, below what others hold (totals join by maximum).
bool Collectable(const FieldState& s, const VersionVector& absorbed);
// Drops the markers and element dots of `s` that `collected` covers: a field this replica
// holds no state for, and whose events it collected, had them removed (see
// Replica::Collect), so a peer still offering them offers what was deleted.
void DropCollected(FieldState& s, const VersionVector& collected);
// Drops the markers and element dots of `s` that `collected` covers and `held` does not
// hold, where `held` is the state of the same field at a replica that collected
// `collected`: that replica had those events and removed them. Its context would show
// the removal, but for a field written again after its tombstone was collected: the new
// state's context starts afresh. So a state joined into ours loses what our collected
// vector covers and ours does not hold, and in a rebase (Replica::RebaseOn) ours loses
// what the peer's covers and the peer's state does not hold. Returns true when something
// went; HoldsCollectedNotIn says whether something would.
bool DropCollectedNotIn(FieldState& s, const VersionVector& collected, const FieldState& held);
bool HoldsCollectedNotIn(const FieldState& s, const VersionVector& collected,
                         const FieldState& held);
// True when DropCollected would drop a marker or a dot of `s` (of a normal state, below:
// anything at all).
bool HoldsCollected(const FieldState& s, const VersionVector& collected);
// True for a state as the mutators, Join and the decoder leave it: every dot numbered
// from 1 and within the context, every set element with a dot, every counter total
// non-zero and of a replica in the context. Joined into the empty state, a normal state
// is itself; Join drops or refuses what makes a state not normal.
bool IsNormal(const FieldState& s);

// Mutators. Each applies one operation with the given fresh dot and timestamp to the
// state in place. The resulting field state is the operation's delta: joined into any
// replica that has seen what this one had, it yields the same state.
void ApplyPut(FieldState& s, const Dot& dot, Hlc hlc, Value v);
void ApplyIncr(FieldState& s, const Dot& dot, Hlc hlc, int64_t by);
void ApplyAdd(FieldState& s, const Dot& dot, Hlc hlc, Value element);
void ApplyRemove(FieldState& s, const Dot& dot, Hlc hlc, const Value& element);
// Removes everything observed (used by record deletion); the field stays as a tombstone
// that carries the removal to other replicas.
void ApplyDelete(FieldState& s, const Dot& dot);

// Makes `s` (the state of a field just written) stand for a field that holds nothing,
// before ApplyPut, ApplyIncr, ApplyAdd or ApplyRemove by `r` with a dot above every event
// of r that `s` names. It is emptied, unless it holds one marker of a small value, no set
// element or counter, and a context of r alone: what r's write of a value to a field
// that held nothing leaves. Such a state is kept, as each of those operations replaces
// every marker it observed and raises r's entry, so it leaves exactly what it would on
// the empty state, and reuses the state's allocations.
void ClearForOwnOperation(FieldState& s, const ReplicaId& r);

// What a live field reads as.
struct FieldValue {
  Kind kind = Kind::kRegister;
  Value scalar;            // kRegister
  int64_t count = 0;       // kCounter (saturated to the int64 range)
  std::vector<Value> set;  // kSet, sorted by ValueLess
  bool operator==(const FieldValue& o) const;
};

// The reading of a live field; nullopt if the field is not live.
std::optional<FieldValue> Read(const FieldState& s);

// The exact counter value as a 128-bit sum (before saturation).
__int128 CounterSum(const FieldState& s);

// One concurrent operation on a field.
struct Sibling {
  Dot dot;
  Hlc hlc = 0;
  Kind kind = Kind::kRegister;
  Value value;  // for registers
  bool winner = false;
};
// The markers of a field, winner first, then by descending (hlc, replica, seq). A field
// is in conflict when this has more than one entry.
std::vector<Sibling> Siblings(const FieldState& s);
// True when the siblings are a conflict a user should see: concurrent register writes,
// or concurrent operations of different kinds. Concurrent increments, or concurrent set
// operations, merge by design and are not conflicts.
bool IsConflict(const std::vector<Sibling>& siblings);

// A record: field name -> field state. A record exists while any field is live.
struct RecordState {
  std::map<std::string, FieldState> fields;
  bool Live() const;
  bool operator==(const RecordState&) const = default;
};
bool Join(RecordState& into, const RecordState& other);
void ApplyDelete(RecordState& r, const Dot& dot);

// The reading of a live record (live fields only).
struct Record {
  std::string id;
  std::map<std::string, FieldValue> fields;
  bool operator==(const Record&) const = default;
};
std::optional<Record> Read(const std::string& id, const RecordState& r);

}  // namespace tandem::engine
