// Whether a field state joined into ours leaves itself: read an item at a time, so that a
// large state that arrived in pieces takes the place of ours without either being decoded
// whole (Replica::JoinInto; docs/design.md#large-field-states).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "tandem/engine/blob.h"
#include "tandem/engine/codec.h"

namespace tandem::engine {

// Hands each item of a state to `fn` as the hash of all a join compares of it: a marker,
// its dot and whole content; a set element, its value and one of its dots. Two items hash
// alike only if they are the same (the content hash). StateItems, for a read of the state.
StateItems ItemHashes(ContentHash hash, std::function<void(const Dot&, const BlobHash&)> fn);

// Judges whether Join(ours, theirs) is `theirs`, and if so whether it changes ours: `theirs`
// has seen all ours holds (its context covers ours, each of its items ours' context
// covers ours holds as it is, its counter totals are at least ours), and holds nothing
// `gone` (what this replica collected) covers that ours does not (DropCollectedNotIn
// would drop it). Exact for every state replicas make; for a forged one that reuses a
// dot with another content (a marker of a greater timestamp, say, which Join would take)
// it says no, and the join is made whole: it never says yes where Join differs. Ours' items are
// read first (Ours), then the outlines of both are compared (Compare), then theirs' items are read
// (Theirs); both outlines must stay alive until Result. Holds a hash for each item of ours
// (and its dot, until Compare).
class TakeOver {
 public:
  TakeOver(ContentHash hash, const VersionVector& gone) : hash_(hash), gone_(gone) {}
  TakeOver(const TakeOver&) = delete;
  TakeOver& operator=(const TakeOver&) = delete;
  StateItems Ours();
  // False when the contexts or counters already rule out a join that is either state
  // (then read nothing more).
  bool Compare(const FieldState& ours, const FieldState& theirs);
  StateItems Theirs();
  // Nullopt when the join is not theirs; else whether it changes ours.
  std::optional<bool> Result() const;
  // Whether the join is ours as it is: theirs brings nothing ours has not seen (its
  // context and totals within ours, and each item of ours its context covers held as it
  // is). Exact for the states replicas make; for a forged one, as Result, it may say no
  // where the join is ours, never yes where it is not.
  bool KeepsOurs() const { return joins_to_ours_ && both_ == ours_seen_; }

 private:
  ContentHash hash_;
  const VersionVector& gone_;
  const FieldState* ours_ = nullptr;
  const FieldState* theirs_ = nullptr;
  std::vector<BlobHash> items_;  // ours, sorted by Compare
  std::vector<Dot> dots_;        // ours' items' dots, until Compare counts them
  bool joins_to_theirs_ = false, joins_to_ours_ = false;
  uint64_t held_ = 0, fresh_ = 0;  // theirs' items ours holds, and ours' context does not cover
  uint64_t ours_seen_ = 0;         // ours' items whose dots theirs' context covers
  uint64_t both_ = 0;              // theirs' items ours holds
};

}  // namespace tandem::engine
