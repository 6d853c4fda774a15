// Groups that require bound replicas: the founder's statement, and the changes of a
// replica no binding names, held until its binding arrives and then judged again.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

#include "tandem/engine/memory_store.h"
#include "tandem/net/authority.h"
#include "tandem/net/binding.h"
#include "tandem/net/group.h"
#include "tandem/storage/replica.h"

namespace tandem::net {
namespace {

using engine::Admission;

engine::ReplicaId Id(char c) {
  engine::ReplicaId id;
  id.bytes.fill(static_cast<uint8_t>(c));
  return id;
}

// A put of `v` to c/record.f by `writer`, its event `seq`.
engine::FieldDelta PutBy(const engine::ReplicaId& writer, uint64_t seq, const std::string& record,
                         int64_t v) {
  engine::FieldState f;
  engine::ApplyPut(f, engine::Dot{writer, seq}, engine::MakeHlc(seq, 0), engine::Value{v});
  return engine::FieldDelta{{"c", record, "f"}, f};
}

// `writer`'s put of `v` (event `seq`) beside a concurrent one by `other` (its event
// `oseq`): two siblings, both values kept.
engine::FieldDelta WithSibling(const engine::ReplicaId& writer, uint64_t seq,
                               const std::string& record, int64_t v, const engine::ReplicaId& other,
                               uint64_t oseq) {
  engine::FieldDelta d = PutBy(writer, seq, record, v);
  engine::ApplyPut(d.state, engine::Dot{other, oseq}, engine::MakeHlc(seq + oseq, 0),
                   engine::Value{v + 100});
  d.state.markers.emplace(engine::Dot{writer, seq},
                          PutBy(writer, seq, record, v).state.markers.begin()->second);
  return d;
}

// The founder's replica (a bound id), in a group it founded.
struct Group {
  Group() {
    InitCrypto();
    char t[] = "/tmp/tandem_held_XXXXXX";
    dir = mkdtemp(t);
    files = {dir + "/group.key",  dir + "/invites",          dir + "/join.code",
             dir + "/group.root", dir + "/replica.bindings", ""};
    const engine::ReplicaId id = BoundIds(me, files.bindings)();
    r = std::make_unique<engine::Replica>(
        std::make_unique<engine::MemoryStore>(id), [this] { return now++; },
        storage::Blake2b256Parts);
    EXPECT_TRUE(SaveRoot(files, me.public_key).ok());
    EXPECT_TRUE(SaveGroupKey(files, NewGroupKey()).ok());
    EXPECT_TRUE(AddMember(*r, me.public_key, DeviceId(me.public_key), 1).ok());
    EXPECT_TRUE(PublishOwnBinding(*r, files.bindings).value());
  }
  ~Group() { std::filesystem::remove_all(dir); }

  Authority Now() { return ReadAuthority(*r, files).value(); }
  WriteLimits Limits() { return WriteLimitsOf(*r, Now()).value(); }
  engine::AdmitFn Admit() {
    return [limits = Limits()](const engine::FieldDelta& d, const engine::FieldState* ours) {
      return AdmitWrite(d, ours, limits);
    };
  }
  // Applies `d` as a batch from `peer`; the number of states quarantined.
  size_t Receive(const engine::ReplicaId& peer, const engine::FieldDelta& d) {
    size_t q = 0;
    EXPECT_TRUE(
        r->ApplyBatch(peer, {d}, ++cursor, Admit(), nullptr, nullptr, nullptr, nullptr, nullptr, &q)
            .ok());
    return q;
  }
  // A device added with `role` (signed at time 2) and its bound replica.
  engine::ReplicaId Bound(const Identity& x, Role role) {
    EXPECT_TRUE(Grant(*r, files, me, x.public_key, role, 2).ok());
    engine::ReplicaId xr;
    EXPECT_TRUE(StoreBinding(*r, xr, NewBinding(x, &xr)).ok());
    return xr;
  }
  // A new member's bound replica, the group then requiring bound replicas.
  engine::ReplicaId BoundMember() {
    const Identity x = GenerateIdentity();
    EXPECT_TRUE(Grant(*r, files, me, x.public_key, Role::kMember, 2).ok());
    engine::ReplicaId xr;
    EXPECT_TRUE(StoreBinding(*r, xr, NewBinding(x, &xr)).ok());
    EXPECT_TRUE(RequireBindings(*r, files, me, 2).value());
    return xr;
  }
  size_t Held() {
    size_t n = 0;
    const auto entries = r->Quarantined().value();
    for (const auto& e : entries) n += e.held;
    return n;
  }

  std::string dir;
  GroupPaths files;
  uint64_t now = 1, cursor = 0;
  Identity me = GenerateIdentity();
  std::unique_ptr<engine::Replica> r;
};

// The founder signs the requirement once it is not alone and every writer it knows is
// bound; nobody else can; and it never becomes a parent of what is signed next.
TEST(Held, TheFounderRequiresBoundReplicasOnceEveryWriterIsBound) {
  Group g;
  EXPECT_FALSE(RequireBindings(*g.r, g.files, g.me, 2).value()) << "alone: nothing to sign";
  EXPECT_FALSE(g.Now().bindings_required);
  const Identity x = GenerateIdentity();
  ASSERT_TRUE(Grant(*g.r, g.files, g.me, x.public_key, Role::kAdmin, 3).ok());
  EXPECT_FALSE(g.Now().bindings_required) << "x has no bound replica yet";
  engine::ReplicaId xr;
  const Binding xb = NewBinding(x, &xr);
  ASSERT_TRUE(NoteReplica(*g.r, DeviceId(x.public_key), Id('u')).ok());  // an unbound one
  ASSERT_TRUE(StoreBinding(*g.r, xr, xb).ok());
  EXPECT_FALSE(RequireBindings(*g.r, g.files, g.me, 3).value()) << "x syncs as an unbound id";
  ASSERT_TRUE(g.r->Remove(kDevicesCollection, DeviceId(x.public_key), "replicas",
                          engine::Value(Id('u').Hex()))
                  .ok());
  EXPECT_TRUE(RequireBindings(*g.r, g.files, g.me, 3).value());
  Authority a = g.Now();
  EXPECT_TRUE(a.bindings_required);
  EXPECT_EQ(a.counted, 2u);
  EXPECT_TRUE(a.refused.empty());
  // The head is the add, not the requirement: versions that cannot read an extension
  // must never wait for it.
  ASSERT_EQ(a.heads.size(), 1u);
  const auto signed_so_far = ReadStatements(*g.r).value();
  for (const auto& e : signed_so_far) {
    if (DecodeStatement(e)->kind == StatementKind::kAdd) {
      EXPECT_EQ(a.heads[0], IdOf(e));
    }
  }
  EXPECT_FALSE(RequireBindings(*g.r, g.files, g.me, 4).value()) << "signed once";
  // A statement signed after it counts, on the add.
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", DeviceId(x.public_key), Level::kRead, 5).ok());
  a = g.Now();
  EXPECT_EQ(a.counted, 3u);

  // An admin's requirement does not count.
  auto statements = ReadStatements(*g.r).value();
  Statement s;
  s.kind = StatementKind::kRequireBindings;
  s.parents = a.heads;
  SignStatement(&s, x, g.me.public_key);
  statements.push_back(EncodeStatement(s));
  Authority b = Evaluate(g.me.public_key, statements);
  ASSERT_EQ(b.refused.size(), 1u);
  EXPECT_EQ(b.refused[0].what, "require bound replicas");
  EXPECT_EQ(b.refused[0].why, "only the group's founder requires bound replicas");
  // Nor one with a payload, which a later version may give a meaning.
  statements.pop_back();
  s.payload = "x";
  SignStatement(&s, g.me, g.me.public_key);
  statements.push_back(EncodeStatement(s));
  b = Evaluate(g.me.public_key, statements);
  ASSERT_EQ(b.refused.size(), 1u);
  EXPECT_NE(b.refused[0].why.find("does not know its kind"), std::string::npos);

  // A founder that holds an unbound writer's events does not sign it (a peer's vector
  // names them: ours may lag).
  Group h;
  ASSERT_TRUE(h.r->ApplyDeltas({PutBy(Id('u'), 1, "r", 1)}).ok());
  engine::VersionVector peer_vv;
  peer_vv.Raise(Id('u'), 1);
  ASSERT_TRUE(h.r->CompletePeerSync(Id('p'), peer_vv, false).ok());
  ASSERT_TRUE(Grant(*h.r, h.files, h.me, x.public_key, Role::kMember, 3).ok());
  ASSERT_TRUE(StoreBinding(*h.r, xr, xb).ok());
  EXPECT_FALSE(RequireBindings(*h.r, h.files, h.me, 4).value());
  EXPECT_FALSE(h.Now().bindings_required);

  // Nor one that holds events of a replica bound to a key that is not a member's (what a
  // `join --merge` brings from the joiner's old group).
  Group k;
  ASSERT_TRUE(Grant(*k.r, k.files, k.me, x.public_key, Role::kMember, 3).ok());
  ASSERT_TRUE(StoreBinding(*k.r, xr, xb).ok());
  engine::ReplicaId sr;
  ASSERT_TRUE(StoreBinding(*k.r, sr, NewBinding(GenerateIdentity(), &sr)).ok());
  engine::VersionVector merged;
  merged.Raise(sr, 1);
  ASSERT_TRUE(k.r->CompletePeerSync(Id('p'), merged, false).ok());
  EXPECT_FALSE(RequireBindings(*k.r, k.files, k.me, 4).value());
}

// In a group that requires bound replicas, a state carrying events of a replica no
// binding names (an id made up by a build of its own, listed in the hints or not) is
// held: not applied, not claimed by the version vector, listed in the quarantine once.
// When its binding arrives it is judged again: applied if its device may write, refused
// for good if it may not; an id nobody binds stays held.
TEST(Held, AnUnboundWritersChangesAreHeldUntilItsBindingArrives) {
  Group g;
  const Identity x = GenerateIdentity(), y = GenerateIdentity(), stranger = GenerateIdentity();
  ASSERT_TRUE(Grant(*g.r, g.files, g.me, x.public_key, Role::kMember, 2).ok());
  ASSERT_TRUE(Grant(*g.r, g.files, g.me, y.public_key, Role::kReader, 2).ok());
  // Each has a bound replica here; each then takes a new one (a copy, say), whose
  // binding has not arrived yet.
  for (const Identity* who : {&x, &y}) {
    engine::ReplicaId first;
    const Binding b = NewBinding(*who, &first);
    ASSERT_TRUE(StoreBinding(*g.r, first, b).ok());
  }
  ASSERT_TRUE(RequireBindings(*g.r, g.files, g.me, 2).value());
  ASSERT_TRUE(g.Now().bindings_required);
  engine::ReplicaId xr, yr, sr;
  const Binding xb = NewBinding(x, &xr), yb = NewBinding(y, &yr);
  // A key nobody added binds a replica to itself: as good as unbound.
  ASSERT_TRUE(StoreBinding(*g.r, sr, NewBinding(stranger, &sr)).ok());
  const engine::ReplicaId made_up = Id('m');
  // Listing the made-up id under a member in good standing changes nothing.
  ASSERT_TRUE(
      g.r->Add(kDevicesCollection, DeviceId(x.public_key), "replicas", engine::Value(made_up.Hex()))
          .ok());

  EXPECT_EQ(g.Receive(xr, PutBy(xr, 1, "r1", 1)), 1u);
  EXPECT_EQ(g.Receive(yr, PutBy(yr, 1, "r2", 2)), 1u);
  EXPECT_EQ(g.Receive(xr, PutBy(made_up, 1, "r3", 3)), 1u);
  EXPECT_EQ(g.Receive(xr, PutBy(sr, 1, "r4", 4)), 1u);
  // Deleting r0 by the made-up id (its event seen, no marker): held too.
  ASSERT_TRUE(g.r->ApplyDeltas({PutBy(xr, 2, "r0", 0)}).ok());  // as if released by hand
  engine::FieldDelta del{{"c", "r0", "f"}, {}};
  del.state.ctx.Raise(xr, 2);
  del.state.ctx.Raise(made_up, 2);
  EXPECT_EQ(g.Receive(xr, del), 1u);
  EXPECT_EQ(g.Receive(xr, PutBy(xr, 1, "r1", 1)), 1u) << "held again: not a new entry";
  EXPECT_EQ(g.Held(), 5u);
  const auto entries = g.r->Quarantined().value();
  for (const auto& e : entries) EXPECT_EQ(e.reason, engine::kHeldReason);
  EXPECT_EQ(g.r->Get("c", "r1").status().code(), Code::kNotFound);
  EXPECT_TRUE(g.r->Get("c", "r0").ok());
  // The peer's CaughtUp does not make the vector claim what is held.
  engine::VersionVector peer_vv;
  peer_vv.Raise(xr, 2);
  peer_vv.Raise(made_up, 2);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, peer_vv, true).ok());
  EXPECT_EQ(g.r->Meta()->vv.Get(xr), 0u);
  EXPECT_EQ(g.r->Meta()->vv.Get(made_up), 0u);

  // Nothing new is known: all stay held.
  auto j = g.r->JudgeHeld(g.Admit());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->applied + j->refused, 0u);
  EXPECT_EQ(j->held, 5u);
  // x's and y's bindings arrive: x's put is applied, the reader's refused for good.
  ASSERT_TRUE(StoreBinding(*g.r, xr, xb).ok());
  ASSERT_TRUE(StoreBinding(*g.r, yr, yb).ok());
  j = g.r->JudgeHeld(g.Admit());
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->applied, 1u);
  EXPECT_EQ(j->refused, 1u);
  EXPECT_EQ(j->held, 3u);
  EXPECT_EQ(g.r->Get("c", "r1")->fields.at("f").scalar, engine::Value{int64_t{1}});
  EXPECT_EQ(g.r->Get("c", "r2").status().code(), Code::kNotFound);
  EXPECT_EQ(g.r->Get("c", "r3").status().code(), Code::kNotFound);
  EXPECT_TRUE(g.r->Get("c", "r0").ok()) << "the made-up id's deletion stays held";
  EXPECT_EQ(g.r->Get("c", "r4").status().code(), Code::kNotFound);
  EXPECT_EQ(g.Held(), 3u);
  // x's binding arriving again changes nothing for the made-up id.
  EXPECT_EQ(g.r->JudgeHeld(g.Admit())->held, 3u);
}

// Judged again as a session would judge them now: a revoked device's changes are
// refused, and a change in a collection the receiver no longer takes stays held until it
// takes it again (its peer will not send it again).
TEST(Held, HeldChangesAreJudgedWithTheRevocationsAndTheReceiveFilter) {
  Group g;
  const Identity x = GenerateIdentity(), z = GenerateIdentity();
  ASSERT_TRUE(Grant(*g.r, g.files, g.me, x.public_key, Role::kMember, 2).ok());
  ASSERT_TRUE(Grant(*g.r, g.files, g.me, z.public_key, Role::kMember, 2).ok());
  for (const Identity* who : {&x, &z}) {
    engine::ReplicaId first;
    ASSERT_TRUE(StoreBinding(*g.r, first, NewBinding(*who, &first)).ok());
  }
  ASSERT_TRUE(RequireBindings(*g.r, g.files, g.me, 2).value());
  engine::ReplicaId xr, zr;
  const Binding xb = NewBinding(x, &xr), zb = NewBinding(z, &zr);
  engine::FieldDelta in_c = PutBy(xr, 1, "r1", 1), in_d = PutBy(xr, 2, "r2", 2),
                     by_z = PutBy(zr, 1, "r3", 3);
  in_d.key.collection = by_z.key.collection = "d";
  EXPECT_EQ(g.Receive(xr, in_c), 1u);
  EXPECT_EQ(g.Receive(xr, in_d), 1u);
  EXPECT_EQ(g.Receive(zr, by_z), 1u);
  ASSERT_TRUE(Revoke(*g.r, g.files, g.me, DeviceId(z.public_key), 3).ok());
  ASSERT_TRUE(StoreBinding(*g.r, xr, xb).ok());
  ASSERT_TRUE(StoreBinding(*g.r, zr, zb).ok());

  auto j = JudgeHeldChanges(*g.r, g.Now(), engine::CollectionFilter::Only({"d"}));
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(j->applied, 1u);
  EXPECT_EQ(j->refused, 1u) << "the revoked device's put";
  EXPECT_EQ(j->held, 1u) << "the put in a collection not received";
  EXPECT_EQ(g.r->Get("d", "r2")->fields.at("f").scalar, engine::Value{int64_t{2}});
  EXPECT_EQ(g.r->Get("c", "r1").status().code(), Code::kNotFound);
  EXPECT_EQ(g.r->Get("d", "r3").status().code(), Code::kNotFound);
  EXPECT_EQ(g.Held(), 1u);
  // Taken once the filter takes its collection again.
  j = JudgeHeldChanges(*g.r, g.Now(), engine::CollectionFilter{});
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->applied, 1u);
  EXPECT_EQ(j->refused, 0u);
  EXPECT_EQ(g.r->Get("c", "r1")->fields.at("f").scalar, engine::Value{int64_t{1}});
  EXPECT_EQ(g.Held(), 0u);
}

// A held state holds back the watermark only for the events it brings: one that repeats
// a member's event the field here has seen (crafted from its data, say) leaves that
// member's entry free.
TEST(Held, AHeldStateCapsTheWatermarkOnlyForEventsNotSeenHere) {
  Group g;
  const engine::ReplicaId xr = g.BoundMember();
  EXPECT_EQ(g.Receive(xr, PutBy(xr, 1, "r1", 1)), 0u);
  EXPECT_EQ(g.Receive(xr, PutBy(xr, 2, "r2", 2)), 0u);
  const engine::ReplicaId made_up = Id('m');
  // x's put to r1 with a concurrent one by a made-up id; the same with a put of x's to r3
  // never seen here.
  EXPECT_EQ(g.Receive(xr, WithSibling(xr, 1, "r1", 1, made_up, 1)), 1u);
  EXPECT_EQ(g.Receive(xr, WithSibling(xr, 3, "r3", 4, made_up, 1)), 1u);
  EXPECT_EQ(g.Held(), 2u);
  engine::VersionVector peer_vv;
  peer_vv.Raise(xr, 3);
  peer_vv.Raise(made_up, 1);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, peer_vv, true).ok());
  EXPECT_EQ(g.r->Meta()->vv.Get(xr), 2u) << "x:1 is seen here, x:3 only in a held state";
  EXPECT_EQ(g.r->Meta()->vv.Get(made_up), 0u);
}

// A held state that repeats an event seen here but whose context has seen a later event
// of the same writer (an overwrite or a removal) the field here has not: the writer is
// held at what the field has seen.
TEST(Held, AHeldStateStillCapsAWritersEventsItShowsOnlyInItsContext) {
  Group g;
  const engine::ReplicaId xr = g.BoundMember();
  EXPECT_EQ(g.Receive(xr, PutBy(xr, 1, "r", 1)), 0u);
  engine::FieldDelta held = WithSibling(xr, 1, "r", 1, Id('m'), 1);
  held.state.ctx.Raise(xr, 6);
  EXPECT_EQ(g.Receive(xr, held), 1u);
  engine::VersionVector peer_vv;
  peer_vv.Raise(xr, 7);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, peer_vv, true).ok());
  EXPECT_EQ(g.r->Meta()->vv.Get(xr), 1u) << "what it has seen here of x, and no further";
}

// A group that does not require bound replicas (one of a version before the
// requirement, say) takes an unbound writer's changes as before.
TEST(Held, WithoutTheRequirementUnboundWritersAreTaken) {
  Group g;
  const Identity x = GenerateIdentity();
  g.Bound(x, Role::kMember);
  ASSERT_TRUE(RequireBindings(*g.r, g.files, g.me, 3).value());
  // Statements made before the requirement existed: only the add.
  auto statements = ReadStatements(*g.r).value();
  std::vector<std::string> kept;
  for (const auto& s : statements)
    if (DecodeStatement(s)->kind == StatementKind::kAdd) kept.push_back(s);
  const Authority a = Evaluate(g.me.public_key, kept);
  ASSERT_FALSE(a.bindings_required);
  const WriteLimits limits = WriteLimitsOf(*g.r, a).value();
  EXPECT_FALSE(limits.hold_unbound);
  EXPECT_EQ(AdmitWrite(PutBy(Id('m'), 1, "r", 1), nullptr, limits), Admission::kAccept);
  EXPECT_EQ(AdmitWrite(PutBy(Id('m'), 1, "r", 1), nullptr, g.Limits()), Admission::kHold);
}

// A device that may write again: what it wrote while it could not, which this replica
// refused and holds nothing of, stays refused as far as the device said it had issued
// when it last told this replica, by whatever path it comes again; what it writes later
// counts.
TEST(Held, WhatADeviceWroteWhileItCouldNotStaysRefusedOnceItMayWriteAgain) {
  Group g;
  const Identity x = GenerateIdentity();
  const std::string device = DeviceId(x.public_key);
  const engine::ReplicaId xr = g.Bound(x, Role::kMember);
  auto has = [&](const std::string& record) { return g.r->Get("c", record).ok(); };
  g.Receive(Id('p'), PutBy(xr, 1, "a", 1));
  ASSERT_TRUE(has("a"));
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", device, Level::kRead, 3).ok());
  g.Receive(Id('p'), PutBy(xr, 2, "b", 2));
  EXPECT_FALSE(has("b"));
  // x's own session said it had issued 3 events (its CaughtUp, merged nowhere).
  engine::VersionVector claim;
  claim.Raise(xr, 3);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, claim, false).ok());
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", device, Level::kWrite, 4).ok());
  const Authority a = g.Now();
  EXPECT_EQ(a.LevelOf(device, "c"), Level::kWrite);
  EXPECT_EQ(a.Find(device)->WriteWindows("c").at(xr), (std::vector<EventWindow>{{1, 3, true}}));
  g.Receive(Id('q'), PutBy(xr, 2, "b", 2));
  g.Receive(Id('q'), PutBy(xr, 3, "c3", 3));
  g.Receive(Id('q'), PutBy(xr, 4, "d", 4));
  EXPECT_FALSE(has("b"));
  EXPECT_FALSE(has("c3"));
  EXPECT_TRUE(has("d"));
  // Its own rebase source no more where it wrote without permission.
  EXPECT_FALSE(a.CountsEveryWrite(device, "c"));
  EXPECT_TRUE(a.CountsEveryWrite(device, "other"));
}

// On a live session no CaughtUp may come between the device's writes that were refused
// and the statement that gives write back: what its own states showed it had issued
// bounds the window all the same, so every member refuses those writes.
TEST(Held, AWindowCoversWhatTheDeviceSentBetweenItsCaughtUps) {
  Group g;
  const Identity x = GenerateIdentity();
  const std::string device = DeviceId(x.public_key);
  const engine::ReplicaId xr = g.Bound(x, Role::kMember);
  g.Receive(xr, PutBy(xr, 1, "a", 1));
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", device, Level::kRead, 3).ok());
  for (uint64_t seq = 2; seq <= 6; ++seq)
    g.Receive(xr, PutBy(xr, seq, "w" + std::to_string(seq), static_cast<int64_t>(seq)));
  EXPECT_FALSE(g.r->Get("c", "w6").ok());
  EXPECT_EQ(g.r->Peer(xr).value().vv.Get(xr), 6u);
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", device, Level::kWrite, 4).ok());
  EXPECT_EQ(g.Now().Find(device)->WriteWindows("c").at(xr).back().upto, 6u);
  // A later CaughtUp that says less (one read before those batches) keeps what they
  // showed.
  engine::VersionVector claim;
  claim.Raise(xr, 4);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, claim, false).ok());
  EXPECT_EQ(g.r->Peer(xr).value().vv.Get(xr), 6u);
}

// Revoked after its write permission in a collection was taken: what it wrote there
// between the two cutoffs stays refused, as it was before the revocation (the
// revocation's own cutoff, later, would let it through).
TEST(Held, ARevokedDeviceKeepsTheWriteCutoffsItHadWhenRevoked) {
  Group g;
  const Identity x = GenerateIdentity();
  const std::string device = DeviceId(x.public_key);
  const engine::ReplicaId xr = g.Bound(x, Role::kMember);
  auto has = [&](const std::string& c, const std::string& record) {
    return g.r->Get(c, record).ok();
  };
  g.Receive(Id('p'), PutBy(xr, 1, "a", 1));
  ASSERT_TRUE(has("c", "a"));
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", device, Level::kRead, 3).ok());
  g.Receive(Id('p'), PutBy(xr, 2, "b", 2));
  EXPECT_FALSE(has("c", "b"));
  engine::VersionVector claim;
  claim.Raise(xr, 3);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, claim, true).ok());
  ASSERT_TRUE(Revoke(*g.r, g.files, g.me, device, 4).ok());
  ASSERT_GE(g.Now().Find(device)->cutoff.at(xr), 2u);
  g.Receive(Id('q'), PutBy(xr, 2, "b", 2));
  EXPECT_FALSE(has("c", "b"));
  // Elsewhere, what it wrote before the revocation's cutoff counts.
  engine::FieldDelta other = PutBy(xr, 3, "e", 3);
  other.key.collection = "d";
  g.Receive(Id('q'), other);
  EXPECT_TRUE(has("d", "e"));
}

// A role that gives write back in one collection and takes it in another: its cutoff
// both ends a window and starts a limit, so it is not raised to what the device says it
// issued (which would make a claimed future count where it may no longer write).
TEST(Held, ARoleThatTakesWriteAwayIsNotRaisedToTheDevicesClaim) {
  Group g;
  const Identity x = GenerateIdentity();
  const std::string device = DeviceId(x.public_key);
  const engine::ReplicaId xr = g.Bound(x, Role::kAdmin);
  g.Receive(Id('p'), PutBy(xr, 1, "a", 1));
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", "admin", Level::kRead, 3).ok());
  engine::VersionVector claim;
  claim.Raise(xr, 10);
  ASSERT_TRUE(g.r->CompletePeerSync(xr, claim, false).ok());
  // Admin to member: c given back, the schemas taken.
  ASSERT_TRUE(SetRole(*g.r, g.files, g.me, device, Role::kMember, 4).ok());
  const Authority a = g.Now();
  EXPECT_EQ(a.LevelOf(device, "c"), Level::kWrite);
  EXPECT_EQ(a.LevelOf(device, kSchemasCollection), Level::kRead);
  EXPECT_LT(a.Find(device)->WriteCutoff(kSchemasCollection).at(xr), 10u);
  // Given back alone (member to admin again, c a member's to write): raised.
  ASSERT_TRUE(SetPermit(*g.r, g.files, g.me, "c", "admin", Level::kWrite, 5).ok());
  ASSERT_TRUE(SetRole(*g.r, g.files, g.me, device, Role::kAdmin, 6).ok());
  EXPECT_EQ(g.Now().Find(device)->WriteWindows(kSchemasCollection).at(xr).back().upto, 10u);
}

}  // namespace
}  // namespace tandem::net
