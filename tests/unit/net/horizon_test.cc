// Which members hold collection back: a member is silent past the horizon when this
// replica first held its newest report longer ago than the horizon, on this replica's
// own clock, whatever the reporter's clock said.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"
#include "tandem/net/collect.h"
#include "tandem/net/group.h"
#include "tandem/storage/replica.h"

namespace tandem::net {
namespace {

constexpr uint64_t kDay = 24ull * 3600 * 1000;
constexpr uint64_t kT = 1'800'000'000'000;  // a day in 2027, in ms

engine::ReplicaId Id(char c) {
  engine::ReplicaId id;
  id.bytes.fill(static_cast<uint8_t>(c));
  return id;
}

// A founder's replica with one other member, x, known to sync as replica 'x'.
struct Group {
  Group() {
    InitCrypto();
    char t[] = "/tmp/tandem_horizon_XXXXXX";
    dir = mkdtemp(t);
    files = {dir + "/group.key",  dir + "/invites",          dir + "/join.code",
             dir + "/group.root", dir + "/replica.bindings", dir + "/reports.heard"};
    r = std::make_unique<engine::Replica>(
        std::make_unique<engine::MemoryStore>(Id('a')), [this] { return clock++; },
        storage::Blake2b256Parts);
    EXPECT_TRUE(SaveRoot(files, me.public_key).ok());
    EXPECT_TRUE(SaveGroupKey(files, NewGroupKey()).ok());
    EXPECT_TRUE(AddMember(*r, me.public_key, DeviceId(me.public_key), kT).ok());
    EXPECT_TRUE(Grant(*r, files, me, x.public_key, Role::kMember, kT).ok());
    EXPECT_TRUE(NoteReplica(*r, DeviceId(x.public_key), Id('x')).ok());
  }
  ~Group() { std::filesystem::remove_all(dir); }

  // x's report, as replica `as`, that it holds `seq` of its events, written at `ms` on
  // its clock.
  void XReports(uint64_t seq, uint64_t ms, char as = 'x') {
    engine::VersionVector vv;
    vv.Raise(Id(as), seq);
    std::string bytes;
    engine::Writer w(&bytes);
    engine::EncodeVersionVector(vv, w);
    ASSERT_TRUE(r->Put(kReportsCollection, Id(as).Hex(),
                       {{"vv", engine::Value(engine::Bytes{bytes})},
                        {"ms", engine::Value(static_cast<int64_t>(ms))}})
                    .ok());
  }
  // x's standing as judged here at `now` (`note`: as a collection or a node would).
  MemberHolding X(uint64_t now, bool note = true) {
    auto held = HeldByMembers(*r, files, DeviceId(me.public_key), now, kDefaultHorizonMs, note);
    EXPECT_TRUE(held.ok()) << held.status().ToString();
    for (auto& m : held->members)
      if (m.device == DeviceId(x.public_key)) return m;
    ADD_FAILURE() << "x is not listed";
    return {};
  }

  std::string dir;
  GroupPaths files;
  uint64_t clock = 1;
  Identity me = GenerateIdentity(), x = GenerateIdentity();
  std::unique_ptr<engine::Replica> r;
};

TEST(Horizon, AReportFromAClockFortyDaysBehindIsNotSilentAtOnce) {
  Group g;
  g.XReports(5, kT - 40 * kDay);
  MemberHolding x = g.X(kT);
  EXPECT_FALSE(x.stale);
  EXPECT_EQ(x.reported_ms, kT - 40 * kDay) << "shown as the reporter said";
  EXPECT_EQ(x.heard_ms, kT);
  EXPECT_FALSE(g.X(kT + 29 * kDay).stale);
  EXPECT_TRUE(g.X(kT + 31 * kDay).stale) << "silent here for longer than the horizon";
  // A new report is heard anew, whatever its clock says.
  g.XReports(6, kT - 39 * kDay);
  x = g.X(kT + 32 * kDay);
  EXPECT_FALSE(x.stale);
  EXPECT_EQ(x.heard_ms, kT + 32 * kDay);
}

TEST(Horizon, AReportFromAClockYearsAheadStillAges) {
  Group g;
  g.XReports(5, kT + 3650 * kDay);
  EXPECT_FALSE(g.X(kT).stale);
  EXPECT_TRUE(g.X(kT + 31 * kDay).stale);
}

// A device that reported as one replica from a clock years ahead and now syncs as
// another (a copy, a restore) is judged by the report heard last, not by the clock.
TEST(Horizon, TheReportHeardLastStandsForAMemberThatChangedReplicas) {
  Group g;
  ASSERT_TRUE(NoteReplica(*g.r, DeviceId(g.x.public_key), Id('y')).ok());
  g.XReports(5, kT + 3650 * kDay, 'x');
  EXPECT_EQ(g.X(kT).replica, Id('x'));
  g.XReports(9, kT + 20 * kDay, 'y');
  MemberHolding x = g.X(kT + 20 * kDay);
  EXPECT_EQ(x.replica, Id('y'));
  EXPECT_EQ(x.vv.Get(Id('y')), 9u);
  x = g.X(kT + 45 * kDay);
  EXPECT_FALSE(x.stale) << "y was heard 25 days ago";
  EXPECT_EQ(x.replica, Id('y'));
  EXPECT_TRUE(g.X(kT + 51 * kDay).stale);
}

TEST(Horizon, WithoutAFileOfItsOwnTheReportersClockIsTaken) {
  Group g;
  g.files.heard.clear();
  g.XReports(5, kT - 40 * kDay);
  EXPECT_TRUE(g.X(kT).stale);
  g.XReports(6, kT + 3650 * kDay);
  EXPECT_FALSE(g.X(kT + 31 * kDay).stale);
}

// Read without noting (a command that only reads), a report is heard now every time,
// and nothing is written.
TEST(Horizon, OnlyANoteRemembersWhenAReportWasHeard) {
  Group g;
  g.XReports(5, kT);
  EXPECT_FALSE(g.X(kT, false).stale);
  EXPECT_FALSE(std::filesystem::exists(g.files.heard));
  EXPECT_FALSE(g.X(kT + 31 * kDay, false).stale);
  EXPECT_FALSE(g.X(kT + 31 * kDay).stale) << "first noted now";
  EXPECT_TRUE(std::filesystem::exists(g.files.heard));
  EXPECT_TRUE(g.X(kT + 62 * kDay, false).stale);
}

// A member with no report yet ages from when this replica first knew of it.
TEST(Horizon, AMemberWithoutAReportAgesFromWhenItWasFirstKnownHere) {
  Group g;
  MemberHolding x = g.X(kT + 40 * kDay);
  EXPECT_EQ(x.reported_ms, 0u);
  EXPECT_FALSE(x.stale) << "admitted 40 days ago by the admitter's clock, known here now";
  EXPECT_TRUE(g.X(kT + 71 * kDay).stale);
}

// A time noted when this replica's clock ran far ahead is not kept once the clock is set
// back, and a damaged or foreign file only makes reports heard now.
TEST(Horizon, ATimeNotedFromAClockSetBackOrADamagedFileIsHeardAgain) {
  Group g;
  g.XReports(5, kT);
  EXPECT_FALSE(g.X(kT + 3650 * kDay).stale);
  MemberHolding x = g.X(kT);
  EXPECT_EQ(x.heard_ms, kT);
  EXPECT_TRUE(g.X(kT + 31 * kDay).stale);
  for (const char* junk : {"", "garbage\n", "0000 1 2\n", "\xff\xfe 1 2 3 4\n"}) {
    {
      FILE* f = std::fopen(g.files.heard.c_str(), "w");
      ASSERT_NE(f, nullptr);
      std::fputs(junk, f);
      std::fclose(f);
    }
    x = g.X(kT + 40 * kDay);
    EXPECT_FALSE(x.stale) << junk;
    EXPECT_EQ(x.heard_ms, kT + 40 * kDay);
  }
}

}  // namespace
}  // namespace tandem::net
