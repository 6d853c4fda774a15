// Replica ids, values and joins for the field CRDT's tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tandem/engine/field.h"

namespace tandem::engine {
namespace {

inline ReplicaId Rid(uint8_t n) {
  ReplicaId id;
  id.bytes[15] = n;
  return id;
}

const ReplicaId kA = Rid(1);
const ReplicaId kB = Rid(2);
const ReplicaId kC = Rid(3);

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

inline Value S(const char* s) { return Value{std::string(s)}; }
inline Value I(int64_t i) { return Value{i}; }

inline FieldState Joined(FieldState a, const FieldState& b) {
  Join(a, b);
  return a;
}

// Joins in both orders, checks they agree, and returns the result.
inline FieldState JoinBoth(const FieldState& a, const FieldState& b) {
  FieldState ab = Joined(a, b);
  FieldState ba = Joined(b, a);
  EXPECT_EQ(ab, ba) << "join is not commutative";
  return ab;
}

inline RecordState JoinBoth(const RecordState& a, const RecordState& b) {
  RecordState ab = a, ba = b;
  Join(ab, b);
  Join(ba, a);
  EXPECT_EQ(ab, ba) << "record join is not commutative";
  return ab;
}

inline FieldValue ReadLive(const FieldState& s) {
  auto v = Read(s);
  EXPECT_TRUE(v.has_value()) << "field is not live";
  return v.value_or(FieldValue{});
}

inline std::vector<Value> SetOf(std::initializer_list<Value> vs) { return std::vector<Value>(vs); }

}  // namespace
}  // namespace tandem::engine
