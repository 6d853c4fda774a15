#include "tandem/net/authority.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "tandem/net/binding.h"
#include "tandem/net/collect.h"
#include "tandem/net/group.h"

namespace tandem::net {
namespace {

// A group under construction: statements with explicit parents, so that tests choose
// what is concurrent with what.
struct Group {
  Identity root = GenerateIdentity();
  std::vector<std::string> all;

  Group() { InitCrypto(); }

  // Signs `s` as `by`, after the statements `after`, and keeps it.
  std::string Keep(Statement s, const Identity& by, const std::vector<std::string>& after,
                   const Key32* group_root = nullptr) {
    s.time_ms = all.size();
    for (const auto& p : after) s.parents.push_back(IdOf(p));
    std::sort(s.parents.begin(), s.parents.end());
    SignStatement(&s, by, group_root ? *group_root : root.public_key);
    std::string e = EncodeStatement(s);
    all.push_back(e);
    return e;
  }
  std::string Make(const Identity& by, StatementKind kind, const Identity& subject, Role role,
                   std::vector<std::string> after, const Key32* group_root = nullptr) {
    Statement s;
    s.kind = kind;
    s.subject = subject.public_key;
    s.role = role;
    return Keep(std::move(s), by, after, group_root);
  }
  std::string Add(const Identity& by, const Identity& who, Role role,
                  std::vector<std::string> after = {}) {
    return Make(by, StatementKind::kAdd, who, role, std::move(after));
  }
  std::string SetRole(const Identity& by, const Identity& who, Role role,
                      std::vector<std::string> after) {
    return Make(by, StatementKind::kRole, who, role, std::move(after));
  }
  std::string Revoke(const Identity& by, const Identity& who, std::vector<std::string> after) {
    return Make(by, StatementKind::kRevoke, who, Role::kMember, std::move(after));
  }
  // A permit for a device (`who`) or, with who == nullptr, for `role`.
  std::string Permit(const Identity& by, const std::string& collection, const Identity* who,
                     Role role, Level level, std::vector<std::string> after,
                     std::map<engine::ReplicaId, uint64_t> cutoff = {}) {
    Statement s;
    s.kind = StatementKind::kPermit;
    if (who) s.subject = who->public_key;
    s.role = role;
    s.collection = collection;
    s.level = level;
    s.cutoff = std::move(cutoff);
    return Keep(std::move(s), by, after);
  }
  Authority Judge() const { return Evaluate(root.public_key, all); }
};

std::string Id(const Identity& i) { return DeviceId(i.public_key); }

// Every single-byte change of the encoding `e`, a byte more and a byte less are refused by
// the decoder or by the signature.
void ExpectEveryChangeRefused(const std::string& e, const Key32& root) {
  for (size_t i = 0; i < e.size(); ++i) {
    std::string m = e;
    m[i] = static_cast<char>(m[i] ^ 0x40);
    auto d = DecodeStatement(m);
    EXPECT_TRUE(!d.ok() || !VerifyStatement(*d, root)) << "byte " << i;
  }
  EXPECT_FALSE(DecodeStatement(e + "x").ok());
  EXPECT_FALSE(DecodeStatement(e.substr(0, e.size() - 1)).ok());
}

TEST(Statement, EncodingIsCanonicalAndSigned) {
  Group g;
  Identity a = GenerateIdentity();
  Statement s;
  s.kind = StatementKind::kRevoke;
  s.subject = a.public_key;
  s.parents = {IdOf("x"), IdOf("y")};
  std::sort(s.parents.begin(), s.parents.end());
  s.cutoff[engine::ReplicaId{}] = 7;
  SignStatement(&s, g.root, g.root.public_key);
  const std::string e = EncodeStatement(s);
  auto back = DecodeStatement(e);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeStatement(*back), e);
  EXPECT_TRUE(VerifyStatement(*back, g.root.public_key));
  // Signed for one group only.
  EXPECT_FALSE(VerifyStatement(*back, a.public_key));
  // Every single-byte change is refused by the decoder or by the signature.
  ExpectEveryChangeRefused(e, g.root.public_key);
  EXPECT_FALSE(DecodeStatement("").ok());
  // Parents out of order are not the canonical encoding.
  Statement u = s;
  std::swap(u.parents[0], u.parents[1]);
  EXPECT_FALSE(DecodeStatement(EncodeStatement(u)).ok());
}

TEST(Authority, RolesBoundWhoMayAddAndRevoke) {
  Group g;
  Identity admin = GenerateIdentity(), member = GenerateIdentity(), reader = GenerateIdentity(),
           other = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, member, Role::kMember, {s1});
  auto s3 = g.Add(admin, reader, Role::kReader, {s2});
  // Refused: a member adds, a reader adds, an admin makes an admin, an admin revokes
  // the founder, a member revokes an admin.
  g.Add(member, other, Role::kReader, {s3});
  g.Add(reader, other, Role::kReader, {s3});
  g.Add(admin, other, Role::kAdmin, {s3});
  g.Revoke(admin, g.root, {s3});
  g.Revoke(member, admin, {s3});
  Authority a = g.Judge();
  EXPECT_EQ(a.counted, 3u);
  ASSERT_EQ(a.refused.size(), 5u);
  EXPECT_EQ(a.Rank(Id(g.root)), kFounderRank);
  EXPECT_EQ(a.Rank(Id(admin)), static_cast<int>(Role::kAdmin));
  EXPECT_EQ(a.Rank(Id(member)), static_cast<int>(Role::kMember));
  EXPECT_EQ(a.Rank(Id(reader)), static_cast<int>(Role::kReader));
  EXPECT_EQ(a.Find(Id(other)), nullptr);
  EXPECT_EQ(a.Find(Id(member))->granted_by, Id(admin));
  for (const auto& r : a.refused) EXPECT_FALSE(r.why.empty());
}

TEST(Authority, OnlyTheFounderMakesOwnersAndOwnersCannotActOnEachOther) {
  Group g;
  Identity o1 = GenerateIdentity(), o2 = GenerateIdentity(), x = GenerateIdentity();
  auto s1 = g.Add(g.root, o1, Role::kOwner);
  auto s2 = g.Add(g.root, o2, Role::kOwner, {s1});
  g.Revoke(o1, o2, {s2});                      // equal role: refused
  g.SetRole(o1, o2, Role::kAdmin, {s2});       // likewise
  g.Add(o1, x, Role::kOwner, {s2});            // only the founder makes owners
  auto ok = g.Add(o1, x, Role::kAdmin, {s2});  // an owner makes admins
  g.SetRole(x, x, Role::kOwner, {ok});         // nobody raises itself
  Authority a = g.Judge();
  EXPECT_EQ(a.refused.size(), 4u);
  EXPECT_EQ(a.Rank(Id(o2)), static_cast<int>(Role::kOwner));
  EXPECT_EQ(a.Rank(Id(x)), static_cast<int>(Role::kAdmin));
}

TEST(Authority, StatementsForAnotherGroupOrForgedAreRefused) {
  Group g;
  Identity m = GenerateIdentity(), x = GenerateIdentity(), stranger = GenerateIdentity();
  auto s1 = g.Add(g.root, m, Role::kMember);
  // Signed by a member for a group of its own making.
  g.Make(m, StatementKind::kAdd, x, Role::kAdmin, {s1}, &m.public_key);
  // Claims the founder as signer, signed by someone else.
  Statement s;
  s.kind = StatementKind::kAdd;
  s.subject = x.public_key;
  s.role = Role::kAdmin;
  SignStatement(&s, stranger, g.root.public_key);
  s.signer = g.root.public_key;
  g.all.push_back(EncodeStatement(s));
  g.all.push_back("garbage");
  Authority a = g.Judge();
  EXPECT_EQ(a.counted, 1u);
  EXPECT_EQ(a.refused.size(), 3u);
  EXPECT_EQ(a.Find(Id(x)), nullptr);
}

TEST(Authority, ARevokedDevicesStatementsConcurrentWithItsRevocationAreVoid) {
  Group g;
  Identity admin = GenerateIdentity(), early = GenerateIdentity(), late = GenerateIdentity(),
           b = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(g.root, b, Role::kMember, {s1});
  auto s3 = g.Add(admin, early, Role::kMember, {s2});  // seen by the revoker: stands
  auto rev = g.Revoke(g.root, admin, {s3});
  // Not yet aware of its revocation: adds a device, revokes a member.
  auto s4 = g.Add(admin, late, Role::kMember, {s3});
  g.Revoke(admin, b, {s4});
  // Aware of it (the revocation is an ancestor): refused too.
  g.Revoke(admin, early, {rev, s4});
  Authority a = g.Judge();
  EXPECT_TRUE(a.Find(Id(admin))->revoked);
  EXPECT_EQ(a.Rank(Id(early)), static_cast<int>(Role::kMember));
  EXPECT_EQ(a.Find(Id(late)), nullptr);
  EXPECT_EQ(a.Rank(Id(b)), static_cast<int>(Role::kMember));
  EXPECT_EQ(a.refused.size(), 3u);
}

TEST(Authority, ARevokedAdminCannotRevokeItsRevokerEvenConcurrently) {
  Group g;
  Identity owner = GenerateIdentity(), admin = GenerateIdentity();
  auto s1 = g.Add(g.root, owner, Role::kOwner);
  auto s2 = g.Add(owner, admin, Role::kAdmin, {s1});
  g.Revoke(owner, admin, {s2});
  g.Revoke(admin, owner, {s2});  // concurrent, and not allowed anyway
  Authority a = g.Judge();
  EXPECT_TRUE(a.Find(Id(admin))->revoked);
  EXPECT_FALSE(a.Find(Id(owner))->revoked);
}

TEST(Authority, ARevocationBeatsAConcurrentPromotion) {
  Group g;
  Identity admin = GenerateIdentity(), x = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(g.root, x, Role::kMember, {s1});
  g.SetRole(g.root, x, Role::kAdmin, {s2});
  g.Revoke(admin, x, {s2});
  Authority a = g.Judge();
  EXPECT_TRUE(a.Find(Id(x))->revoked);
  EXPECT_EQ(a.Find(Id(x))->revoked_by, Id(admin));
}

TEST(Authority, OfConcurrentRoleChangesTheLowerHolds) {
  Group g;
  Identity owner = GenerateIdentity(), x = GenerateIdentity();
  auto s1 = g.Add(g.root, owner, Role::kOwner);
  auto s2 = g.Add(g.root, x, Role::kMember, {s1});
  g.SetRole(g.root, x, Role::kAdmin, {s2});
  g.SetRole(owner, x, Role::kReader, {s2});
  EXPECT_EQ(g.Judge().Rank(Id(x)), static_cast<int>(Role::kReader));
  // A later change, made knowing both, decides.
  g.SetRole(g.root, x, Role::kAdmin, {g.all[2], g.all[3]});
  EXPECT_EQ(g.Judge().Rank(Id(x)), static_cast<int>(Role::kAdmin));
}

// An extension: a kind a later version may define, here only signer, parents and an
// opaque payload.
std::string Extension(Group& g, const Identity& by, uint8_t kind, std::string payload,
                      std::vector<std::string> after) {
  Statement s;
  s.kind = static_cast<StatementKind>(kind);
  s.payload = std::move(payload);
  return g.Keep(std::move(s), by, after);
}

TEST(Statement, AnExtensionDecodesWithItsPayloadAndIsSigned) {
  Group g;
  const std::string e = Extension(g, g.root, 200, std::string("bind\0x", 6), {});
  auto back = DecodeStatement(e);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(IsExtension(back->kind));
  EXPECT_EQ(back->payload, std::string("bind\0x", 6));
  EXPECT_EQ(EncodeStatement(*back), e);
  EXPECT_TRUE(VerifyStatement(*back, g.root.public_key));
  ExpectEveryChangeRefused(e, g.root.public_key);
  // An empty payload is one too; kinds between the known ones and the extensions are not.
  EXPECT_TRUE(DecodeStatement(Extension(g, g.root, kFirstExtension, "", {})).ok());
  std::string reserved = Extension(g, g.root, kFirstExtension, "", {});
  reserved[1] = static_cast<char>(kFirstExtension - 1);
  EXPECT_FALSE(DecodeStatement(reserved).ok());
  // A payload length past the end.
  std::string longer = Extension(g, g.root, 77, "abc", {});
  longer[2 + 32 + 8 + 1 + 3] = 0x7f;
  EXPECT_FALSE(DecodeStatement(longer).ok());
}

// A statement of a kind this version does not know never counts, but what was signed
// after it does: a later version's new kind must not stop older devices from applying
// revocations and role changes.
TEST(Authority, AnUnknownKindHasNoEffectAndDoesNotHoldBackWhatFollows) {
  Group g;
  Identity admin = GenerateIdentity(), m = GenerateIdentity();
  auto add_admin = g.Add(g.root, admin, Role::kAdmin);
  auto add_m = g.Add(admin, m, Role::kMember, {add_admin});
  auto ext = Extension(g, admin, 201, "whatever a later version means", {add_m});
  auto revoke = g.Revoke(g.root, m, {ext});
  Authority a = g.Judge();
  EXPECT_EQ(a.waiting, 0u);
  EXPECT_EQ(a.counted, 3u);
  ASSERT_NE(a.Find(Id(m)), nullptr);
  EXPECT_TRUE(a.Find(Id(m))->revoked);
  ASSERT_EQ(a.refused.size(), 1u);
  EXPECT_EQ(a.refused[0].id, HexId(IdOf(ext)));
  EXPECT_NE(a.refused[0].why.find("does not know its kind"), std::string::npos);
  EXPECT_EQ(a.refused[0].what, "a statement of kind 201");
  ASSERT_EQ(a.heads.size(), 1u);
  EXPECT_EQ(a.heads[0], IdOf(revoke));
  // Any device can sign one (it counts nowhere); what is signed next does not follow it,
  // or versions that cannot read it would wait on it for good.
  Extension(g, m, 202, "", {revoke});
  g.Revoke(m, admin, {g.all.back()});  // a refused one too: m was revoked
  Authority c = g.Judge();
  EXPECT_EQ(c.counted, 3u);
  EXPECT_EQ(c.heads, std::vector<StatementId>{IdOf(revoke)});
  // One not signed by its signer is refused as any forgery is, and orders nothing.
  Identity stranger = GenerateIdentity();
  Group other;
  auto forged = Extension(other, stranger, 201, "x", {});
  Authority b = Evaluate(g.root.public_key, {add_admin, forged});
  EXPECT_EQ(b.counted, 1u);
  ASSERT_EQ(b.refused.size(), 1u);
  EXPECT_NE(b.refused[0].why.find("not signed"), std::string::npos);
}

TEST(Authority, AStatementWaitsForItsParents) {
  Group g;
  Identity admin = GenerateIdentity(), m = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, m, Role::kMember, {s1});
  Authority without = Evaluate(g.root.public_key, {s2});
  EXPECT_EQ(without.counted, 0u);
  EXPECT_EQ(without.waiting, 1u);
  EXPECT_TRUE(without.refused.empty());
  EXPECT_EQ(without.Find(Id(m)), nullptr);
  Authority with = Evaluate(g.root.public_key, {s2, s1, s2});
  EXPECT_EQ(with.counted, 2u);
  EXPECT_EQ(with.Rank(Id(m)), static_cast<int>(Role::kMember));
  ASSERT_EQ(with.heads.size(), 1u);
  EXPECT_EQ(with.heads[0], IdOf(s2));
}

// The same statements in any order give the same authority.
TEST(Authority, TheResultDoesNotDependOnArrivalOrder) {
  Group g;
  std::vector<Identity> d;
  for (int i = 0; i < 6; ++i) d.push_back(GenerateIdentity());
  auto s1 = g.Add(g.root, d[0], Role::kAdmin);
  auto s2 = g.Add(g.root, d[1], Role::kAdmin, {s1});
  auto s3 = g.Add(d[0], d[2], Role::kMember, {s2});
  auto s4 = g.Add(d[1], d[3], Role::kMember, {s2});
  auto s5 = g.Revoke(g.root, d[0], {s3});
  g.Add(d[0], d[4], Role::kReader, {s3});
  g.SetRole(d[1], d[2], Role::kReader, {s4});
  g.Revoke(d[1], d[2], {s4, s5});
  g.SetRole(g.root, d[3], Role::kAdmin, {s4});
  const Authority want = g.Judge();
  auto key = [](const Authority& a) {
    std::string k;
    for (const auto& [id, s] : a.devices)
      k += id + RoleName(s.role) + (s.revoked ? "R" : "") + s.granted_by + ";";
    for (const auto& r : a.refused) k += r.id + ",";
    return k;
  };
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    auto shuffled = g.all;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    Authority got = Evaluate(g.root.public_key, shuffled);
    std::sort(got.refused.begin(), got.refused.end(),
              [](const Refused& a, const Refused& b) { return a.id < b.id; });
    Authority w = want;
    std::sort(w.refused.begin(), w.refused.end(),
              [](const Refused& a, const Refused& b) { return a.id < b.id; });
    EXPECT_EQ(key(got), key(w));
  }
}

TEST(Authority, PermitsDecideEachCollectionMostSpecificFirst) {
  Group g;
  Identity admin = GenerateIdentity(), till = GenerateIdentity(), m = GenerateIdentity(),
           reader = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, till, Role::kMember, {s1});
  auto s3 = g.Add(admin, m, Role::kMember, {s2});
  auto s4 = g.Add(admin, reader, Role::kReader, {s3});
  {
    // Before any permit, a member writes everywhere (the schemas are the admins').
    Authority before = g.Judge();
    EXPECT_TRUE(before.WritesEverywhere(Id(m)));
    EXPECT_TRUE(before.WritesEverywhere(Id(till)));
    EXPECT_FALSE(before.WritesEverywhere(Id(reader)));
  }
  const engine::ReplicaId tr =
      engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>("tttttttttttttttt"));
  auto p1 = g.Permit(admin, "*", &till, Role::kMember, Level::kRead, {s4}, {{tr, 41}});
  auto p2 = g.Permit(admin, "orders", &till, Role::kMember, Level::kWrite, {p1});
  auto p3 = g.Permit(admin, "prices", nullptr, Role::kMember, Level::kRead, {p2});
  auto p4 = g.Permit(admin, "notes", nullptr, Role::kReader, Level::kWrite, {p3});
  auto p5 = g.Permit(admin, "hr", nullptr, Role::kMember, Level::kNone, {p4});
  // Refused: a member permits; an admin sets an admin's or its own role's permissions.
  g.Permit(m, "orders", nullptr, Role::kReader, Level::kNone, {p5});
  g.Permit(admin, "orders", nullptr, Role::kAdmin, Level::kRead, {p5});
  g.Permit(admin, "orders", &admin, Role::kMember, Level::kRead, {p5});
  Authority a = g.Judge();
  EXPECT_EQ(a.refused.size(), 3u);
  EXPECT_EQ(a.LevelOf(Id(till), "orders"), Level::kWrite);  // device and collection
  EXPECT_EQ(a.LevelOf(Id(till), "prices"), Level::kRead);   // role and collection
  EXPECT_EQ(a.LevelOf(Id(till), "hr"), Level::kNone);       // role's beats device's "*"
  EXPECT_EQ(a.LevelOf(Id(till), "items"), Level::kRead);    // device and "*"
  EXPECT_EQ(a.LevelOf(Id(m), "items"), Level::kWrite);      // the default
  EXPECT_EQ(a.LevelOf(Id(m), "prices"), Level::kRead);
  EXPECT_EQ(a.LevelOf(Id(reader), "items"), Level::kRead);
  EXPECT_EQ(a.LevelOf(Id(reader), "notes"), Level::kWrite);
  EXPECT_EQ(a.LevelOf(Id(g.root), "hr"), Level::kWrite);  // the founder
  EXPECT_EQ(a.LevelOf(Id(GenerateIdentity()), "items"), Level::kNone);
  // Whose removals everyone takes: no permit below write applies to the founder or the
  // admin; one does to each member (prices, for the role), and a reader writes nothing.
  EXPECT_TRUE(a.WritesEverywhere(Id(g.root)));
  EXPECT_TRUE(a.WritesEverywhere(Id(admin)));
  EXPECT_FALSE(a.WritesEverywhere(Id(till)));
  EXPECT_FALSE(a.WritesEverywhere(Id(m)));
  EXPECT_FALSE(a.WritesEverywhere(Id(reader)));
  EXPECT_FALSE(a.WritesEverywhere(Id(GenerateIdentity())));
  {
    // A device permit that gives a member write where its role's permit says read.
    auto p6 = g.Permit(admin, "prices", &m, Role::kMember, Level::kWrite, {p5});
    Authority after = g.Judge();
    EXPECT_EQ(after.LevelOf(Id(m), "prices"), Level::kWrite);
    EXPECT_FALSE(after.WritesEverywhere(Id(m)));  // hr: none for members
    g.Permit(admin, "hr", &m, Role::kMember, Level::kWrite, {p6});
    after = g.Judge();
    EXPECT_TRUE(after.WritesEverywhere(Id(m)));
    EXPECT_FALSE(after.WritesEverywhere(Id(reader)));
  }
  // Where the till's events stop counting: from p1, which took its write permission
  // away, in every collection but orders; p2 gave orders back.
  EXPECT_EQ(a.Find(Id(till))->WriteCutoff("items").at(tr), 41u);
  EXPECT_EQ(a.Find(Id(till))->WriteCutoff("prices").at(tr), 41u);
  EXPECT_FALSE(a.Find(Id(till))->write_cutoffs.count("orders"));
  // A reader never wrote anything that counts.
  EXPECT_TRUE(a.Find(Id(reader))->WriteCutoff("items").empty());
  EXPECT_EQ(a.permits.size(), 5u);
}

// A later statement about a device whose write permission stays away does not move the
// cutoff: its refused writes stay refused, whatever the later signer held of them.
TEST(Authority, AWriteCutoffHoldsWhileThePermissionStaysAway) {
  Group g;
  Identity admin = GenerateIdentity(), till = GenerateIdentity();
  const engine::ReplicaId tr =
      engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>("tttttttttttttttt"));
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, till, Role::kMember, {s1});
  auto p1 = g.Permit(admin, "products", &till, Role::kMember, Level::kRead, {s2}, {{tr, 10}});
  auto p2 = g.Permit(admin, "orders", &till, Role::kMember, Level::kRead, {p1}, {{tr, 50}});
  auto p3 = g.Permit(admin, "products", &till, Role::kMember, Level::kNone, {p2}, {{tr, 60}});
  Authority a = g.Judge();
  EXPECT_EQ(a.Find(Id(till))->WriteCutoff("products").at(tr), 10u);
  EXPECT_EQ(a.Find(Id(till))->WriteCutoff("orders").at(tr), 50u);
  EXPECT_TRUE(a.Find(Id(till))->WriteCutoff("items").empty());  // may write: no cutoff
  // Demoted to reader: every collection it could still write starts now; products keeps
  // its start.
  g.SetRole(admin, till, Role::kReader, {p3});
  Authority b = g.Judge();
  EXPECT_EQ(b.Find(Id(till))->WriteCutoff("products").at(tr), 10u);
  EXPECT_EQ(b.Find(Id(till))->WriteCutoff("orders").at(tr), 50u);
  EXPECT_EQ(b.LevelOf(Id(till), "items"), Level::kRead);
  EXPECT_TRUE(b.Find(Id(till))->WriteCutoff("items").empty());  // the demotion named none
}

// A write permission taken away and given back: what the device wrote meanwhile (from
// the cutoff of the statement that took it to what the one that gave it back recorded)
// stays refused, in the collections concerned alone; and what its own writes removed is
// no longer taken as removed (its collected vector, a rebase on it).
TEST(Authority, WhatADeviceWroteWhileItCouldNotStaysRefusedOnceItMayAgain) {
  Group g;
  Identity admin = GenerateIdentity(), till = GenerateIdentity(), m = GenerateIdentity();
  const engine::ReplicaId tr =
      engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>("tttttttttttttttt"));
  const engine::ReplicaId mr =
      engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>("mmmmmmmmmmmmmmmm"));
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, till, Role::kMember, {s1});
  auto s3 = g.Add(admin, m, Role::kMember, {s2});
  auto n1 = g.Permit(admin, "notes", &m, Role::kMember, Level::kWrite, {s3});
  auto p1 = g.Permit(admin, "prices", &till, Role::kMember, Level::kRead, {n1}, {{tr, 10}});
  auto p2 = g.Permit(admin, "prices", &till, Role::kMember, Level::kWrite, {p1}, {{tr, 25}});
  Authority a = g.Judge();
  const Standing* t = a.Find(Id(till));
  EXPECT_EQ(a.LevelOf(Id(till), "prices"), Level::kWrite);
  EXPECT_TRUE(t->WriteCutoff("prices").empty());
  EXPECT_EQ(t->WriteWindows("prices").at(tr), (std::vector<EventWindow>{{10, 25, true}}));
  EXPECT_TRUE(t->WriteWindows("items").empty());
  EXPECT_FALSE(a.CountsEveryWrite(Id(till), "prices"));
  EXPECT_TRUE(a.CountsEveryWrite(Id(till), "items"));
  EXPECT_FALSE(a.WritesEverywhere(Id(till)));
  EXPECT_TRUE(a.WritesEverywhere(Id(admin)));
  // Away and back again: a second window beside the first.
  auto p3 = g.Permit(admin, "prices", &till, Role::kMember, Level::kNone, {p2}, {{tr, 30}});
  auto p4 = g.Permit(admin, "prices", &till, Role::kMember, Level::kWrite, {p3}, {{tr, 40}});
  EXPECT_EQ(g.Judge().Find(Id(till))->WriteWindows("prices").at(tr),
            (std::vector<EventWindow>{{10, 25, true}, {30, 40, true}}));
  // Through "*": every collection no permit names, and prices, which follows it for m;
  // not notes, which m could write all along.
  auto q1 = g.Permit(admin, "*", &m, Role::kMember, Level::kRead, {p4}, {{mr, 5}});
  auto q2 = g.Permit(admin, "*", &m, Role::kMember, Level::kWrite, {q1}, {{mr, 9}});
  Authority b = g.Judge();
  const std::vector<EventWindow> w{{5, 9, true}};
  EXPECT_EQ(b.Find(Id(m))->WriteWindows("items").at(mr), w);
  EXPECT_EQ(b.Find(Id(m))->WriteWindows("prices").at(mr), w);
  EXPECT_TRUE(b.Find(Id(m))->WriteWindows("notes").empty());
  EXPECT_TRUE(b.CountsEveryWrite(Id(m), "notes"));
  // A collection a later permit names first had the history of those none named.
  auto o1 = g.Permit(admin, "orders", &till, Role::kMember, Level::kWrite, {q2});
  EXPECT_EQ(g.Judge().Find(Id(m))->WriteWindows("orders").at(mr), w);
  // Given back by a statement that knew nothing past the cutoff: no window.
  auto r1 = g.Permit(admin, "orders", &m, Role::kMember, Level::kRead, {o1}, {{mr, 12}});
  auto r2 = g.Permit(admin, "orders", &m, Role::kMember, Level::kWrite, {r1}, {{mr, 12}});
  EXPECT_EQ(g.Judge().Find(Id(m))->WriteWindows("orders").at(mr), w);
  // Write on a collection given by the permit that first names it, to a device that
  // could only read every collection no permit names: what it wrote meanwhile there
  // stays refused too.
  auto u1 = g.Permit(admin, "*", &till, Role::kMember, Level::kRead, {r2}, {{tr, 50}});
  g.Permit(admin, "invoices", &till, Role::kMember, Level::kWrite, {u1}, {{tr, 60}});
  Authority c = g.Judge();
  EXPECT_EQ(c.LevelOf(Id(till), "invoices"), Level::kWrite);
  EXPECT_EQ(c.Find(Id(till))->WriteWindows("invoices").at(tr),
            (std::vector<EventWindow>{{50, 60, true}}));
}

// Windows join where they overlap or meet, and only there: a window a concurrent
// statement recorded early on (1 to 3) never swallows the writes between it and a later
// one (10 to 25), which counted.
TEST(Authority, WindowsJoinOnlyWhereTheyOverlap) {
  std::vector<EventWindow> w;
  AddEventWindow(&w, {10, 25, true});
  AddEventWindow(&w, {1, 3, false});
  EXPECT_EQ(w, (std::vector<EventWindow>{{1, 3, false}, {10, 25, true}}));
  AddEventWindow(&w, {3, 5, false});  // meets (1, 3]
  EXPECT_EQ(w, (std::vector<EventWindow>{{1, 5, false}, {10, 25, true}}));
  AddEventWindow(&w, {4, 12, false});  // overlaps both
  EXPECT_EQ(w, (std::vector<EventWindow>{{1, 25, true}}));
  AddEventWindow(&w, {30, 40, false});
  AddEventWindow(&w, {20, 26, false});
  EXPECT_EQ(w, (std::vector<EventWindow>{{1, 26, true}, {30, 40, false}}));
}

// A reader given write: what its replicas issued while it could not write (its own
// records in tandem's collections, say) is a window too, but one opened without taking
// anything from it: it wrote nothing then that it thought counted, so what its writes
// remove is still taken as removed (a rebase on it, its collected vector).
TEST(Authority, AReaderPromotedRemainsARebaseSource) {
  Group g;
  Identity admin = GenerateIdentity(), r = GenerateIdentity();
  const engine::ReplicaId rr =
      engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>("rrrrrrrrrrrrrrrr"));
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(admin, r, Role::kReader, {s1});
  Statement up;
  up.kind = StatementKind::kRole;
  up.subject = r.public_key;
  up.role = Role::kMember;
  up.cutoff = {{rr, 7}};
  g.Keep(up, admin, {s2});
  Authority a = g.Judge();
  EXPECT_EQ(a.LevelOf(Id(r), "items"), Level::kWrite);
  EXPECT_EQ(a.Find(Id(r))->WriteWindows("items").at(rr), (std::vector<EventWindow>{{0, 7, false}}));
  EXPECT_TRUE(a.CountsEveryWrite(Id(r), "items"));
  EXPECT_TRUE(a.WritesEverywhere(Id(r)));
}

TEST(Authority, OfConcurrentPermitsTheLowerLevelHolds) {
  Group g;
  Identity owner = GenerateIdentity(), admin = GenerateIdentity(), m = GenerateIdentity();
  auto s1 = g.Add(g.root, owner, Role::kOwner);
  auto s2 = g.Add(owner, admin, Role::kAdmin, {s1});
  auto s3 = g.Add(admin, m, Role::kMember, {s2});
  g.Permit(owner, "orders", &m, Role::kMember, Level::kWrite, {s3});
  g.Permit(admin, "orders", &m, Role::kMember, Level::kNone, {s3});
  EXPECT_EQ(g.Judge().LevelOf(Id(m), "orders"), Level::kNone);
}

// A group whose founder added an admin, which added a member `m`: `added` is the last.
struct AdminAndMember {
  Group g;
  Identity admin = GenerateIdentity(), m = GenerateIdentity();
  std::string added = g.Add(admin, m, Role::kMember, {g.Add(g.root, admin, Role::kAdmin)});
};

// The lower of concurrent permits holds under its own signer's name and reach, whichever
// the order the statements are applied in (ties by id: new identities each round): the
// founder's "read" still binds a device the founder then makes an admin, although an
// admin's concurrent "write" binds it no more.
TEST(Authority, OfConcurrentPermitsTheLowerHoldsAsItsSignerSignedIt) {
  for (int round = 0; round < 8; ++round) {
    AdminAndMember x;
    auto& [g, admin, m, s2] = x;
    auto w = g.Permit(admin, "orders", &m, Role::kMember, Level::kWrite, {s2});
    auto r = g.Permit(g.root, "orders", &m, Role::kMember, Level::kRead, {s2});
    Authority a = g.Judge();
    EXPECT_EQ(a.LevelOf(Id(m), "orders"), Level::kRead);
    ASSERT_EQ(a.permits.size(), 1u);
    EXPECT_EQ(a.permits[0].granted_by, Id(g.root)) << "round " << round;
    g.SetRole(g.root, m, Role::kAdmin, {w, r});
    a = g.Judge();
    EXPECT_EQ(a.LevelOf(Id(m), "orders"), Level::kRead) << "round " << round;
    ASSERT_EQ(a.permits.size(), 1u);
    EXPECT_EQ(a.permits[0].granted_by, Id(g.root));
  }
}

// A permit replaces only those it descends from: one made after a second, concurrent with
// a third, is weighed against the third.
TEST(Authority, APermitIsWeighedAgainstEveryConcurrentOne) {
  for (int round = 0; round < 8; ++round) {
    AdminAndMember x;
    auto& [g, admin, m, s2] = x;
    auto none = g.Permit(admin, "orders", &m, Role::kMember, Level::kNone, {s2});
    auto read = g.Permit(g.root, "orders", &m, Role::kMember, Level::kRead, {s2});
    // After `read`, not after `none`.
    auto write = g.Permit(g.root, "orders", &m, Role::kMember, Level::kWrite, {read});
    EXPECT_EQ(g.Judge().LevelOf(Id(m), "orders"), Level::kNone) << "round " << round;
    // Once a permit descends from both, it alone holds.
    g.Permit(g.root, "orders", &m, Role::kMember, Level::kWrite, {none, write});
    EXPECT_EQ(g.Judge().LevelOf(Id(m), "orders"), Level::kWrite) << "round " << round;
  }
}

TEST(Authority, APermitOnADeviceLapsesOnceItRanksAsHighAsItsSigner) {
  Group g;
  Identity admin = GenerateIdentity(), c = GenerateIdentity(), other = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  auto s2 = g.Add(g.root, other, Role::kOwner, {s1});
  auto s3 = g.Add(admin, c, Role::kMember, {s2});
  auto p1 = g.Permit(admin, "notes", &c, Role::kMember, Level::kNone, {s3});
  EXPECT_EQ(g.Judge().LevelOf(Id(c), "notes"), Level::kNone);
  EXPECT_EQ(g.Judge().permits.size(), 1u);
  // Promoted to owner by the founder: out of the admin's reach, its permit binds it no
  // more (an owner could not lift it: owners do not act on each other).
  auto r1 = g.SetRole(g.root, c, Role::kOwner, {p1});
  Authority a = g.Judge();
  EXPECT_EQ(a.LevelOf(Id(c), "notes"), Level::kWrite);
  EXPECT_TRUE(a.permits.empty());
  EXPECT_TRUE(a.Find(Id(c))->WriteCutoff("notes").empty());
  // Back below the admin: it binds again.
  g.SetRole(g.root, c, Role::kMember, {r1});
  EXPECT_EQ(g.Judge().LevelOf(Id(c), "notes"), Level::kNone);
}

TEST(Authority, InvitesOnlyForRolesBelowTheInviters) {
  Group g;
  Identity admin = GenerateIdentity(), member = GenerateIdentity();
  auto s1 = g.Add(g.root, admin, Role::kAdmin);
  g.Add(admin, member, Role::kMember, {s1});
  Authority a = g.Judge();
  EXPECT_TRUE(MayInvite(a, g.root.public_key, Role::kAdmin).ok());
  EXPECT_TRUE(MayInvite(a, admin.public_key, Role::kMember).ok());
  EXPECT_EQ(MayInvite(a, admin.public_key, Role::kAdmin).code(), Code::kUnauthorized);
  EXPECT_EQ(MayInvite(a, member.public_key, Role::kReader).code(), Code::kUnauthorized);
  EXPECT_EQ(MayInvite(a, GenerateIdentity().public_key, Role::kReader).code(), Code::kUnauthorized);
}

// A device without write permission is refused in every collection but the few tandem
// itself writes for every device (each checked where it is read): a made-up name with
// tandem's prefix is no way around its permissions.
TEST(Admission, OnlyTandemsOwnCollectionsAreTakenFromADeviceThatMayNotWrite) {
  engine::ReplicaId reader;
  reader.bytes[0] = 7;
  WriteLimits limits;
  limits.others[reader] = 0;  // nothing of it may be written anywhere a permit does not name
  engine::FieldState s;
  engine::ApplyPut(s, engine::Dot{reader, 1}, 1, engine::Value{int64_t{1}});
  auto verdict = [&](const std::string& collection) {
    return AdmitWrite(engine::FieldDelta{{collection, "r", "f"}, s}, nullptr, limits);
  };
  for (const char* c :
       {kDevicesCollection, kBindingsCollection, kReportsCollection, kStatementsCollection})
    EXPECT_EQ(verdict(c), engine::Admission::kAccept) << c;
  for (const char* c : {"items", kSchemasCollection, "_tandem_fill", "_tandemx"})
    EXPECT_EQ(verdict(c), engine::Admission::kRefuse) << c;
}

// What a device wrote while a write permission it has back was away is refused: a value
// it made then, or a removal only those events explain; what it made before or since
// counts, and so does a removal its later events may explain.
TEST(Admission, WhatADeviceWroteWhileItCouldNotIsRefusedOnceItMayAgain) {
  engine::ReplicaId till, m;
  till.bytes[0] = 9;
  m.bytes[0] = 3;
  WriteLimits limits;
  limits.named["prices"];  // it may write them now: no cutoff
  limits.named_windows["prices"][till] = {{10, 25}};
  auto put = [&](uint64_t seq) {
    engine::FieldState s;
    engine::ApplyPut(s, engine::Dot{till, seq}, seq, engine::Value{static_cast<int64_t>(seq)});
    return s;
  };
  auto verdict = [&](const engine::FieldState& s, const engine::FieldState* ours = nullptr,
                     const std::string& collection = "prices") {
    return AdmitWrite(engine::FieldDelta{{collection, "r", "f"}, s}, ours, limits);
  };
  EXPECT_EQ(verdict(put(10)), engine::Admission::kAccept);  // while it could
  EXPECT_EQ(verdict(put(11)), engine::Admission::kRefuse);
  EXPECT_EQ(verdict(put(25)), engine::Admission::kRefuse);
  EXPECT_EQ(verdict(put(26)), engine::Admission::kAccept);  // once it could again
  EXPECT_EQ(verdict(put(11), nullptr, "items"), engine::Admission::kAccept);
  // A later write over one made meanwhile carries only the later one.
  engine::FieldState over = put(12);
  engine::ApplyPut(over, engine::Dot{till, 27}, 27, engine::Value{int64_t{27}});
  EXPECT_EQ(verdict(over), engine::Admission::kAccept);
  // Beside a member's concurrent value, one made meanwhile still is refused.
  engine::FieldState both = put(12);
  engine::FieldState theirs;
  engine::ApplyPut(theirs, engine::Dot{m, 1}, 30, engine::Value{int64_t{1}});
  engine::Join(both, theirs);
  EXPECT_EQ(verdict(both), engine::Admission::kRefuse);
  // A record deletion leaves only context.
  engine::FieldState deleted;
  deleted.ctx = theirs.ctx;
  deleted.ctx.Raise(till, 20);
  EXPECT_EQ(verdict(deleted, &theirs), engine::Admission::kRefuse);
  deleted.ctx.Raise(till, 30);  // seen past the window: a later deletion may explain it
  EXPECT_EQ(verdict(deleted, &theirs), engine::Admission::kAccept);
  deleted.ctx = theirs.ctx;
  deleted.ctx.Raise(till, 10);  // before it
  EXPECT_EQ(verdict(deleted, &theirs), engine::Admission::kAccept);
}

}  // namespace
}  // namespace tandem::net
