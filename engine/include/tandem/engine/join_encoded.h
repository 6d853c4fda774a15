// The join of two field states held as delta encodings (EncodeDelta's bytes), read and
// written a part at a time: a large state that arrived in pieces joined with the state
// held here, neither decoded whole (Replica::JoinPieces; docs/design.md#large-field-states).
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

#include "tandem/engine/codec.h"

namespace tandem::engine {

// A delta encoding, read from its start each time it is opened: it hands `read` a Reader
// over itself, and returns what stopped it (a part it could not read), else Ok.
using DeltaSource = std::function<Status(const std::function<void(Reader&)>& read)>;

// Parts JoinDeltas writes are about this long (a longer value goes whole).
inline constexpr size_t kJoinedPartBytes = 64 << 10;

// What a join drops beside what Join drops, as DropCollectedNotIn drops it: of theirs,
// the markers and element dots `theirs` covers that ours does not hold (what this replica
// collected); of ours, those `ours` covers that theirs does not hold (a rebase on what
// the peer collected). Null: nothing.
struct JoinCuts {
  const VersionVector* theirs = nullptr;
  const VersionVector* ours = nullptr;
};
// What the join came to, beside its bytes.
struct JoinFacts {
  bool changes_ours = false;  // it is not ours as it was
  bool dropped_ours = false;  // JoinCuts::ours dropped something of ours
};

// Writes the delta encoding of Join(ours, theirs), under their common key, to `out` a part
// at a time, as EncodeDelta would write it: each source is read twice, the first time to
// count what the second writes (counts precede lists), and of each a marker or set
// element is held at a time (with the value before it, for the order). With `cuts`, each
// loses first what they drop. Corrupt where either is not a delta in the order every
// encoder writes (OutlineFieldState's), or one changes between the passes; Invalid where
// the keys differ. What `out` returns stops it.
Status JoinDeltas(const DeltaSource& ours, const DeltaSource& theirs,
                  const std::function<Status(std::string_view part)>& out,
                  const JoinCuts& cuts = {}, JoinFacts* facts = nullptr);

}  // namespace tandem::engine
