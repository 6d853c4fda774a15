// JoinDeltas, which joins a large state that arrived in pieces with the field's state here
// a part at a time, writes exactly the encoding of Join.
#include "tandem/engine/join_encoded.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <optional>

#include "gen.h"

namespace tandem::engine {
namespace {

using testing::GenFieldStates;
using testing::SmallId;

const FieldKey kKey{"albums", "a1", "photos"};

// A source over `bytes`, handed to the reader in parts of `part` bytes.
class Parts : public Reader::More {
 public:
  Parts(std::string_view bytes, size_t part) : bytes_(bytes), part_(part) {}
  bool Append(std::string* out) override {
    if (at_ >= bytes_.size()) return false;
    const size_t n = std::min(part_, bytes_.size() - at_);
    out->append(bytes_.substr(at_, n));
    at_ += n;
    return true;
  }
  size_t left() const override { return bytes_.size() - at_; }

 private:
  std::string_view bytes_;
  size_t part_, at_ = 0;
};

DeltaSource SourceOf(const std::string& bytes, size_t part, int* opened = nullptr) {
  return [&bytes, part, opened](const std::function<void(Reader&)>& read) {
    if (opened) ++*opened;
    Parts more(bytes, part);
    Reader r({}, &more);
    read(r);
    return Status::Ok();
  };
}

Result<std::string> JoinOf(const std::string& ours, const std::string& theirs, size_t part = 7,
                           const JoinCuts& cuts = {}, JoinFacts* facts = nullptr) {
  std::string out;
  Status st = JoinDeltas(
      SourceOf(ours, part), SourceOf(theirs, part + 4),
      [&](std::string_view p) {
        EXPECT_FALSE(p.empty());
        out.append(p);
        return Status::Ok();
      },
      cuts, facts);
  if (!st.ok()) return st;
  return out;
}

std::string Encoded(const FieldState& s) {
  auto e = EncodeDelta(kKey, s);
  EXPECT_TRUE(e.ok());
  return e.ok() ? *e : std::string();
}

// A collected vector over the replicas GenFieldStates writes from, or none.
std::optional<VersionVector> GenCut() {
  if (*rc::gen::inRange(0, 3) != 0) return std::nullopt;
  VersionVector v;
  for (int i = 0; i < 4; ++i) v.Raise(SmallId(i), *rc::gen::inRange<uint64_t>(0, 6));
  return v;
}

// Over reachable states (markers, counters, sets, removals, concurrent writes): the
// bytes written are EncodeDelta's of Join(ours, theirs), whoever is which, each side
// first losing what its cut drops (DropCollectedNotIn, by the other as it came); and the
// facts say whether that is ours, and whether ours' cut dropped anything.
RC_GTEST_PROP(JoinDeltas, WritesTheEncodingOfTheJoin, ()) {
  const auto s = GenFieldStates(3);
  const FieldState& ours = s[*rc::gen::inRange(0, 3)];
  const FieldState& theirs = s[*rc::gen::inRange(0, 3)];
  const std::optional<VersionVector> cut_theirs = GenCut(), cut_ours = GenCut();
  FieldState kept_ours = ours, kept_theirs = theirs;
  const bool dropped = cut_ours && DropCollectedNotIn(kept_ours, *cut_ours, theirs);
  if (cut_theirs) DropCollectedNotIn(kept_theirs, *cut_theirs, ours);
  FieldState joined = kept_ours;
  Join(joined, kept_theirs);
  JoinFacts facts;
  const JoinCuts cuts{cut_theirs ? &*cut_theirs : nullptr, cut_ours ? &*cut_ours : nullptr};
  auto got = JoinOf(Encoded(ours), Encoded(theirs), *rc::gen::inRange<size_t>(1, 40), cuts, &facts);
  RC_ASSERT(got.ok());
  RC_ASSERT(*got == Encoded(joined));
  RC_ASSERT(facts.changes_ours == !(joined == ours));
  RC_ASSERT(facts.dropped_ours == dropped);
}

TEST(JoinDeltas, ConcurrentAddsToALargeSetKeepBoth) {
  FieldState base;
  for (int i = 0; i < 200; ++i)
    ApplyAdd(base, Dot{SmallId(0), static_cast<uint64_t>(i + 1)}, MakeHlc(1000 + i, 0),
             Value{std::string(1000, static_cast<char>('a' + i % 26)) + std::to_string(i)});
  FieldState ours = base, theirs = base;
  ApplyAdd(ours, Dot{SmallId(1), 1}, MakeHlc(5000, 0), Value{std::string("ours")});
  ApplyRemove(ours, Dot{SmallId(1), 2}, MakeHlc(5001, 0), base.elements.begin()->first);
  ApplyAdd(theirs, Dot{SmallId(2), 1}, MakeHlc(5000, 0), Value{std::string("theirs")});
  FieldState joined = ours;
  Join(joined, theirs);
  std::string out;
  int parts = 0;
  ASSERT_TRUE(JoinDeltas(SourceOf(Encoded(ours), 4096), SourceOf(Encoded(theirs), 100),
                         [&](std::string_view p) {
                           EXPECT_LE(p.size(), kJoinedPartBytes + 2000);
                           out.append(p);
                           ++parts;
                           return Status::Ok();
                         })
                  .ok());
  EXPECT_GT(parts, 2);  // in parts, never whole
  EXPECT_EQ(out, Encoded(joined));
  auto back = DecodeDelta(out);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->second.elements.size(), 201u);  // one removed, two added
}

TEST(JoinDeltas, RefusesWhatIsNotTwoCanonicalStatesOfOneField) {
  FieldState a, b;
  ApplyAdd(a, Dot{SmallId(0), 1}, MakeHlc(1000, 0), Value{std::string("x")});
  ApplyAdd(a, Dot{SmallId(0), 2}, MakeHlc(1001, 0), Value{std::string("y")});
  ApplyPut(b, Dot{SmallId(1), 1}, MakeHlc(1000, 0), Value{int64_t{5}});
  const std::string ea = Encoded(a), eb = Encoded(b);
  ASSERT_TRUE(JoinOf(ea, eb).ok());
  // Another field's state.
  auto other = EncodeDelta(FieldKey{"albums", "a2", "photos"}, b);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(JoinOf(ea, *other).status().code(), Code::kInvalidArgument);
  // Truncated, with trailing bytes, or elements out of order: corrupt, whichever side.
  EXPECT_EQ(JoinOf(ea.substr(0, ea.size() - 1), eb).status().code(), Code::kCorrupt);
  EXPECT_EQ(JoinOf(ea, eb + "x").status().code(), Code::kCorrupt);
  const size_t x = ea.rfind('x'), y = ea.rfind('y');
  ASSERT_TRUE(x != std::string::npos && y != std::string::npos && x < y);
  std::string swapped = ea;
  std::swap(swapped[x], swapped[y]);       // "y" then "x", each with the other's dot
  ASSERT_TRUE(DecodeDelta(swapped).ok());  // a decoder takes any order
  EXPECT_EQ(JoinOf(swapped, eb).status().code(), Code::kCorrupt);
  EXPECT_EQ(JoinOf(eb, swapped).status().code(), Code::kCorrupt);
  // What the writer refuses stops the join.
  EXPECT_EQ(JoinDeltas(SourceOf(ea, 3), SourceOf(eb, 3),
                       [](std::string_view) { return Status::Busy("full"); })
                .code(),
            Code::kBusy);
}

// A state no replica would make, one dot under two markers: the join keeps the greater
// (MarkerLess), as Join does, whichever side holds it.
TEST(JoinDeltas, OfTwoMarkersUnderOneDotKeepsTheGreater) {
  const Dot dot{SmallId(0), 1};
  FieldState ours, theirs;
  ApplyPut(ours, dot, MakeHlc(1000, 0), Value{std::string("ours")});
  ApplyPut(theirs, dot, MakeHlc(1000, 0), Value{std::string("theirs")});
  ApplyPut(theirs, Dot{SmallId(1), 1}, MakeHlc(900, 0), Value{int64_t{1}});
  theirs.markers.emplace(dot,
                         Marker{MakeHlc(1000, 0), Kind::kRegister, Value{std::string("theirs")}});
  for (const auto& [x, y] : {std::pair{&ours, &theirs}, std::pair{&theirs, &ours}}) {
    FieldState joined = *x;
    Join(joined, *y);
    auto got = JoinOf(Encoded(*x), Encoded(*y));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, Encoded(joined));
    auto back = DecodeDelta(*got);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(back->second.markers.at(dot).value, Value{std::string("theirs")});
  }
}

// A source whose bytes differ between the two passes (a field written meanwhile) makes
// the join fail, never write a state that is neither.
TEST(JoinDeltas, ASourceThatChangesBetweenPassesFails) {
  FieldState a, b, a2;
  ApplyAdd(a, Dot{SmallId(0), 1}, MakeHlc(1000, 0), Value{std::string("x")});
  a2 = a;
  ApplyAdd(a2, Dot{SmallId(0), 2}, MakeHlc(1001, 0), Value{std::string("z")});
  ApplyAdd(b, Dot{SmallId(1), 1}, MakeHlc(1000, 0), Value{std::string("y")});
  const std::string ea = Encoded(a), ea2 = Encoded(a2), eb = Encoded(b);
  int opened = 0;
  DeltaSource changing = [&](const std::function<void(Reader&)>& read) {
    Parts more(opened++ == 0 ? ea : ea2, 5);
    Reader r({}, &more);
    read(r);
    return Status::Ok();
  };
  std::string out;
  const Status st = JoinDeltas(changing, SourceOf(eb, 5), [&](std::string_view p) {
    out.append(p);
    return Status::Ok();
  });
  EXPECT_EQ(opened, 2);
  EXPECT_EQ(st.code(), Code::kCorrupt);
}

}  // namespace
}  // namespace tandem::engine
