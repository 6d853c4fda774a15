// Generators shared by the property tests: reachable field and record states, built by
// running random operations and merges on a few replicas (arbitrary structs would break
// the invariants every real state has, such as "entries are covered by the context").
#pragma once

#include <rapidcheck.h>

#include <vector>

#include "tandem/engine/field.h"

namespace tandem::engine::testing {

inline ReplicaId SmallId(int i) {
  ReplicaId id;
  id.bytes[0] = static_cast<uint8_t>(i + 1);
  id.bytes[15] = static_cast<uint8_t>(0xa0 + i);
  return id;
}

inline rc::Gen<Value> GenValue() {
  return rc::gen::oneOf(
      rc::gen::just(Value{}),
      rc::gen::map(rc::gen::arbitrary<bool>(), [](bool b) { return Value{b}; }),
      rc::gen::map(rc::gen::inRange<int64_t>(-3, 4), [](int64_t i) { return Value{i}; }),
      rc::gen::map(rc::gen::arbitrary<int64_t>(), [](int64_t i) { return Value{i}; }),
      rc::gen::map(rc::gen::element(0.5, -0.0, 0.0, 1e300, -2.25),
                   [](double d) { return Value{d}; }),
      rc::gen::map(rc::gen::element<std::string>("a", "b", "Ann", "\xc3\xa9t\xc3\xa9", ""),
                   [](std::string s) { return Value{s}; }),
      rc::gen::map(rc::gen::element<std::string>(std::string("\0\1", 2), "zz"),
                   [](std::string s) { return Value{Bytes{s}}; }));
}

// A small element domain, so adds and removes collide.
inline rc::Gen<Value> GenElement() {
  return rc::gen::oneOf(
      rc::gen::map(rc::gen::inRange<int64_t>(0, 3), [](int64_t i) { return Value{i}; }),
      rc::gen::map(rc::gen::element<std::string>("x", "y"),
                   [](std::string s) { return Value{s}; }));
}

// Runs a random history of operations and pairwise merges over `n` replicas of one
// field and returns every replica's final state.
inline std::vector<FieldState> GenFieldStates(int n) {
  std::vector<FieldState> states(n);
  std::vector<uint64_t> seq(n, 0);
  Hlc now = MakeHlc(1000, 0);
  const int steps = *rc::gen::inRange(0, 25);
  for (int i = 0; i < steps; ++i) {
    const int r = *rc::gen::inRange(0, n);
    now += *rc::gen::inRange<uint64_t>(0, 3);
    Dot dot{SmallId(r), ++seq[r]};
    switch (*rc::gen::inRange(0, 7)) {
      case 0:
        ApplyPut(states[r], dot, now, *GenValue());
        break;
      case 1:
        ApplyIncr(states[r], dot, now, *rc::gen::inRange<int64_t>(-5, 6));
        break;
      case 2:
        ApplyAdd(states[r], dot, now, *GenElement());
        break;
      case 3:
        ApplyRemove(states[r], dot, now, *GenElement());
        break;
      case 4:
        ApplyDelete(states[r], dot);
        break;
      default: {  // merge another replica's state in
        --seq[r];
        const int from = *rc::gen::inRange(0, n);
        Join(states[r], states[from]);
      }
    }
  }
  return states;
}

}  // namespace tandem::engine::testing
