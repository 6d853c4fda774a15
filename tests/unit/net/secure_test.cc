// The handshake, the encrypted framing, invite codes and the trust set.
#include <gtest/gtest.h>

#include <filesystem>

#include "tandem/engine/memory_store.h"
#include "tandem/net/group.h"
#include "tandem/net/handshake.h"
#include "tandem/net/secure_frame.h"
#include "tandem/storage/replica.h"

namespace tandem::net {
namespace {

Key32 RandomKey() { return NewGroupKey(); }

struct Pair {
  Handshake initiator, responder;
};

// Runs a full handshake; returns the failing status, if any.
Status RunHandshake(Handshake& i, Handshake& r, std::string* tamper_msg = nullptr,
                    int tamper_at = -1) {
  auto m1 = i.Write();
  if (!m1.ok()) return m1.status();
  if (tamper_at == 1) (*m1)[tamper_msg ? 0 : 5] ^= 1;
  TANDEM_RETURN_IF_ERROR(r.Read(*m1));
  auto m2 = r.Write();
  if (!m2.ok()) return m2.status();
  if (tamper_at == 2) (*m2)[40] ^= 1;
  TANDEM_RETURN_IF_ERROR(i.Read(*m2));
  auto m3 = i.Write();
  if (!m3.ok()) return m3.status();
  if (tamper_at == 3) (*m3)[3] ^= 0x80;
  return r.Read(*m3);
}

TEST(Handshake, MutualAuthenticationAndMatchingKeys) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  Key32 group = RandomKey();
  auto i = Handshake::Initiator(a, group, PskKind::kGroup);
  auto r = Handshake::Responder(b, group);
  ASSERT_TRUE(RunHandshake(i, r).ok());
  ASSERT_TRUE(i.done() && r.done());
  EXPECT_EQ(*i.peer_key(), b.public_key);
  EXPECT_EQ(*r.peer_key(), a.public_key);
  auto ki = i.Split(), kr = r.Split();
  EXPECT_EQ(ki.send, kr.recv);
  EXPECT_EQ(ki.recv, kr.send);
  EXPECT_NE(ki.send, ki.recv);
  EXPECT_EQ(ki.handshake_hash, kr.handshake_hash);
}

TEST(Handshake, FreshKeysEverySession) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  Key32 group = RandomKey();
  auto i1 = Handshake::Initiator(a, group, PskKind::kGroup);
  auto r1 = Handshake::Responder(b, group);
  auto i2 = Handshake::Initiator(a, group, PskKind::kGroup);
  auto r2 = Handshake::Responder(b, group);
  ASSERT_TRUE(RunHandshake(i1, r1).ok());
  ASSERT_TRUE(RunHandshake(i2, r2).ok());
  EXPECT_NE(i1.Split().send, i2.Split().send);  // forward secrecy: ephemeral keys
}

TEST(Handshake, WrongGroupKeyIsRefusedAtTheFirstMessage) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  auto i = Handshake::Initiator(a, RandomKey(), PskKind::kGroup);
  auto r = Handshake::Responder(b, RandomKey());
  auto m1 = i.Write();
  ASSERT_TRUE(m1.ok());
  Status st = r.Read(*m1);
  EXPECT_EQ(st.code(), Code::kUnauthorized);
  EXPECT_NE(st.message().find("pre-shared key"), std::string::npos) << st.message();
  EXPECT_FALSE(r.Write().ok());  // unusable after a failure
}

TEST(Handshake, AnyFlippedBitFails) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  Key32 group = RandomKey();
  for (int at = 1; at <= 3; ++at) {
    auto i = Handshake::Initiator(a, group, PskKind::kGroup);
    auto r = Handshake::Responder(b, group);
    EXPECT_EQ(RunHandshake(i, r, nullptr, at).code(), Code::kUnauthorized) << "message " << at;
  }
}

TEST(Handshake, MacCoversTheKindByte) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  Key32 group = RandomKey();
  auto i = Handshake::Initiator(a, group, PskKind::kGroup);
  auto r = Handshake::Responder(b, group);
  std::string dummy;
  EXPECT_FALSE(RunHandshake(i, r, &dummy, 1).ok());
}

TEST(Handshake, GarbageFirstMessages) {
  InitCrypto();
  Identity b = GenerateIdentity();
  Key32 group = RandomKey();
  for (std::string m : {std::string(), std::string(1, '\1'), std::string(65, '\1'),
                        std::string(300, '\1'), std::string(65, '\7')}) {
    auto r = Handshake::Responder(b, group);
    EXPECT_EQ(r.Read(m).code(), Code::kUnauthorized);
  }
}

TEST(Handshake, InviteHandshakeUsesTheInvitePsk) {
  InitCrypto();
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  Key32 secret = RandomKey();
  auto i = Handshake::Initiator(a, InvitePsk(secret), PskKind::kInvite, InviteIdOf(secret));
  auto m1 = i.Write();
  ASSERT_TRUE(m1.ok());
  auto hdr = PeekFirstMessage(*m1);
  ASSERT_TRUE(hdr.ok());
  EXPECT_EQ(hdr->kind, PskKind::kInvite);
  EXPECT_EQ(hdr->invite, InviteIdOf(secret));
  // The invite id and the PSK do not reveal the secret and differ from each other.
  EXPECT_NE(Hex(InvitePsk(secret)).substr(0, 32), Hex(InviteIdOf(secret)));
  auto r = Handshake::Responder(b, InvitePsk(secret));
  ASSERT_TRUE(r.Read(*m1).ok());
  auto m2 = r.Write();
  ASSERT_TRUE(m2.ok());
  ASSERT_TRUE(i.Read(*m2).ok());
  auto m3 = i.Write();
  ASSERT_TRUE(m3.ok());
  ASSERT_TRUE(r.Read(*m3).ok());
  EXPECT_EQ(i.Split().send, r.Split().recv);
  // The same message against the group PSK fails.
  auto r2 = Handshake::Responder(b, RandomKey());
  EXPECT_FALSE(r2.Read(*m1).ok());
}

// --- Frames ------------------------------------------------------------------------

struct Stream {
  Key32 key = NewGroupKey();
  FrameSealer sealer{key};
  std::string wire;
  std::vector<std::pair<size_t, size_t>> frames;  // offset, size of each frame
  void Send(std::string_view pt, bool final = false) {
    size_t at = wire.size();
    ASSERT_TRUE(sealer.Seal(pt, final, &wire).ok());
    frames.emplace_back(at, wire.size() - at);
  }
};

// Reads frames from `wire`; returns plaintexts until an error (appended as "ERR:...").
std::vector<std::string> Receive(const Key32& key, std::string_view header, std::string_view wire,
                                 bool* saw_final = nullptr) {
  FrameOpener op(key, header);
  std::vector<std::string> out;
  size_t at = 0;
  while (at < wire.size()) {
    if (wire.size() - at < 4) {
      out.push_back("ERR:short");
      break;
    }
    auto n = op.BodyLength(wire.substr(at, 4));
    if (!n.ok()) {
      out.push_back("ERR:" + n.status().message());
      break;
    }
    if (wire.size() - at - 4 < *n) {
      out.push_back("ERR:truncated");
      break;
    }
    std::string pt;
    bool final = false;
    Status st = op.Open(wire.substr(at, 4), wire.substr(at + 4, *n), &pt, &final);
    if (!st.ok()) {
      out.push_back("ERR:" + st.message());
      break;
    }
    out.push_back(pt);
    at += 4 + *n;
    if (final && saw_final) *saw_final = true;
  }
  return out;
}

TEST(Frames, RoundTripWithFinal) {
  InitCrypto();
  Stream s;
  s.Send("hello");
  s.Send("");
  s.Send(std::string(kMaxFramePlaintext, 'x'));
  s.Send("bye", true);
  bool final = false;
  auto got = Receive(s.key, s.sealer.header(), s.wire, &final);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], "hello");
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2].size(), kMaxFramePlaintext);
  EXPECT_TRUE(final);
  std::string extra;
  EXPECT_FALSE(s.sealer.Seal("more", false, &extra).ok());
}

TEST(Frames, OversizedFramesAreRefused) {
  InitCrypto();
  Stream s;
  std::string out;
  EXPECT_FALSE(s.sealer.Seal(std::string(kMaxFramePlaintext + 1, 'x'), false, &out).ok());
  FrameOpener op(s.key, s.sealer.header());
  EXPECT_FALSE(op.BodyLength(std::string("\x01\x00\x00\x12", 4)).ok());
  EXPECT_FALSE(op.BodyLength(std::string("\x00\x00\x00\x01", 4)).ok());
}

TEST(Frames, EveryBitFlipIsDetected) {
  InitCrypto();
  Stream s;
  s.Send("first");
  s.Send("second", true);
  for (size_t byte = 0; byte < s.wire.size(); ++byte) {
    std::string w = s.wire;
    w[byte] ^= 0x04;
    auto got = Receive(s.key, s.sealer.header(), w);
    ASSERT_FALSE(got.empty());
    ASSERT_EQ(got.back().substr(0, 4), "ERR:") << "byte " << byte;
    // Frames before the damaged one decode; the damaged one never does.
    size_t damaged = byte < s.frames[1].first ? 0 : 1;
    EXPECT_EQ(got.size(), damaged + 1) << "byte " << byte;
  }
}

TEST(Frames, ReplayReorderAndTruncation) {
  InitCrypto();
  Stream s;
  s.Send("a");
  s.Send("b");
  s.Send("c", true);
  auto frame = [&](int i) { return s.wire.substr(s.frames[i].first, s.frames[i].second); };
  // Replay of frame 0.
  auto got = Receive(s.key, s.sealer.header(), frame(0) + frame(0));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].substr(0, 4), "ERR:");
  // Reorder.
  got = Receive(s.key, s.sealer.header(), frame(1) + frame(0));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].substr(0, 4), "ERR:");
  // Dropped frame.
  got = Receive(s.key, s.sealer.header(), frame(0) + frame(2));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].substr(0, 4), "ERR:");
  // Truncation: without the final frame, no final is seen.
  bool final = false;
  got = Receive(s.key, s.sealer.header(), frame(0) + frame(1), &final);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_FALSE(final);
  // Anything after the final frame is refused.
  got = Receive(s.key, s.sealer.header(), s.wire + frame(0));
  EXPECT_EQ(got.back().substr(0, 4), "ERR:");
  // A different key fails at once.
  got = Receive(NewGroupKey(), s.sealer.header(), s.wire);
  EXPECT_EQ(got[0].substr(0, 4), "ERR:");
}

// --- Invites and the trust set -----------------------------------------------------

TEST(Invite, CodeRoundTripAndDamage) {
  InitCrypto();
  Invite inv{GenerateIdentity().public_key,
             NewGroupKey(),
             1234567890123ull,
             {"127.0.0.1:7000", "shop.local:7000"}};
  std::string code = EncodeInvite(inv);
  EXPECT_EQ(code.rfind("tandem-invite-", 0), 0u);
  auto back = DecodeInvite(code + "\n");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->inviter, inv.inviter);
  EXPECT_EQ(back->secret, inv.secret);
  EXPECT_EQ(back->expires_ms, inv.expires_ms);
  EXPECT_EQ(back->addresses, inv.addresses);
  std::string typo = code;
  typo[30] = typo[30] == 'A' ? 'B' : 'A';
  EXPECT_EQ(DecodeInvite(typo).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(DecodeInvite(code.substr(0, code.size() - 3)).ok());
  EXPECT_FALSE(DecodeInvite("hello").ok());
  EXPECT_FALSE(DecodeInvite("tandem-invite-!!!").ok());
  EXPECT_FALSE(DecodeInvite("").ok());
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/tandem_secure_XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  GroupPaths files() const {
    return {path + "/group.key",  path + "/invites",          path + "/join.code",
            path + "/group.root", path + "/replica.bindings", ""};
  }
};

TEST(Invite, UsedOnceAndExpires) {
  InitCrypto();
  TempDir d;
  Invite inv{GenerateIdentity().public_key, NewGroupKey(), 1000, {}, Role::kAdmin};
  ASSERT_TRUE(StoreInvite(d.files(), inv).ok());
  auto id = InviteIdOf(inv.secret);
  auto found = FindInvite(d.files(), id, 999);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->secret, inv.secret);
  EXPECT_EQ(found->role, Role::kAdmin);
  EXPECT_TRUE(BurnInvite(d.files(), id).ok());
  EXPECT_EQ(BurnInvite(d.files(), id).code(), Code::kUnauthorized);
  EXPECT_EQ(FindInvite(d.files(), id, 999).status().code(), Code::kNotFound);
  ASSERT_TRUE(StoreInvite(d.files(), inv).ok());
  EXPECT_EQ(FindInvite(d.files(), id, 1001).status().code(), Code::kUnauthorized);  // expired
  EXPECT_EQ(FindInvite(d.files(), id, 999).status().code(), Code::kNotFound);       // and gone
}

TEST(GroupKey, SaveLoadAndDamage) {
  InitCrypto();
  TempDir d;
  EXPECT_EQ(LoadGroupKey(d.files()).status().code(), Code::kNotFound);
  Key32 k = NewGroupKey();
  ASSERT_TRUE(SaveGroupKey(d.files(), k).ok());
  EXPECT_EQ(LoadGroupKey(d.files()).value(), k);
  EXPECT_EQ(std::filesystem::status(d.path + "/group.key").permissions() &
                std::filesystem::perms::group_read,
            std::filesystem::perms::none);
  FILE* f = fopen((d.path + "/group.key").c_str(), "w");
  fputs("short", f);
  fclose(f);
  EXPECT_EQ(LoadGroupKey(d.files()).status().code(), Code::kCorrupt);
}

engine::ReplicaId Rid(char c) {
  std::string b(16, c);
  return engine::ReplicaId::FromBytes(reinterpret_cast<const uint8_t*>(b.data()));
}

Trust TrustIn(engine::Replica& r, const GroupPaths& files, const Key32& key) {
  auto a = ReadAuthority(r, files);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return a.ok() ? TrustOf(*a, key) : Trust::kUnknown;
}

TEST(Trust, AddRevokeAndUnknown) {
  InitCrypto();
  TempDir d;
  uint64_t now = 1;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(Rid('0')), [&] { return now++; },
      storage::Blake2b256Parts);
  Identity a = GenerateIdentity(), b = GenerateIdentity(), c = GenerateIdentity();
  ASSERT_TRUE(SaveRoot(d.files(), a.public_key).ok());
  const Key32 old_key = NewGroupKey();
  ASSERT_TRUE(SaveGroupKey(d.files(), old_key).ok());
  ASSERT_TRUE(Grant(r, d.files(), a, b.public_key, Role::kMember, 6).ok());
  EXPECT_EQ(TrustIn(r, d.files(), a.public_key), Trust::kMember);
  EXPECT_EQ(TrustIn(r, d.files(), b.public_key), Trust::kMember);
  EXPECT_EQ(TrustIn(r, d.files(), c.public_key), Trust::kUnknown);
  EXPECT_EQ(Revoke(r, d.files(), a, DeviceId(c.public_key), 7).code(), Code::kNotFound);
  // A member can neither add nor revoke.
  EXPECT_EQ(Grant(r, d.files(), b, c.public_key, Role::kReader, 7).code(), Code::kUnauthorized);
  EXPECT_EQ(Revoke(r, d.files(), b, DeviceId(a.public_key), 7).code(), Code::kUnauthorized);
  // The role it has already: nothing signed (statements are kept for good).
  const size_t statements = ReadStatements(r)->size();
  EXPECT_EQ(SetRole(r, d.files(), a, DeviceId(b.public_key), Role::kMember, 7).code(),
            Code::kNotFound);
  EXPECT_EQ(ReadStatements(r)->size(), statements);
  ASSERT_TRUE(Revoke(r, d.files(), a, DeviceId(b.public_key), 7).ok());
  EXPECT_EQ(TrustIn(r, d.files(), b.public_key), Trust::kRevoked);
  // The revocation rotated the group key: the old one is retired, a sealed to itself
  // only (b is out).
  auto keys = LoadGroupKeys(d.files());
  ASSERT_TRUE(keys.ok());
  EXPECT_NE(keys->current, old_key);
  ASSERT_EQ(keys->previous.size(), 1u);
  EXPECT_EQ(keys->previous[0].key, old_key);
  EXPECT_EQ(keys->Accepted(keys->previous[0].retired_ms, 1000).size(), 2u);
  EXPECT_EQ(keys->Accepted(keys->previous[0].retired_ms + 1000, 1000).size(), 1u);
  auto after = ReadAuthority(r, d.files());
  ASSERT_TRUE(after->rekey.has_value());
  ASSERT_EQ(after->rekey_copies.size(), 1u);
  EXPECT_EQ(OpenGroupKey(after->rekey_copies[0], a), keys->current);
  EXPECT_EQ(OpenGroupKey(after->rekey_copies[0], b), std::nullopt);
  // A revoked device is never added back.
  EXPECT_EQ(Grant(r, d.files(), a, b.public_key, Role::kMember, 8).code(), Code::kUnauthorized);
  EXPECT_EQ(TrustIn(r, d.files(), b.public_key), Trust::kRevoked);
  // Nor revoked again (a retried script): nothing signed, the key does not rotate again.
  Status again = Revoke(r, d.files(), a, DeviceId(b.public_key), 8);
  EXPECT_EQ(again.code(), Code::kNotFound);
  EXPECT_NE(again.message().find("already revoked"), std::string::npos) << again.ToString();
  EXPECT_EQ(LoadGroupKeys(d.files())->current, keys->current);
  auto members = Members(r, d.files());
  ASSERT_TRUE(members.ok());
  ASSERT_EQ(members->size(), 2u);
  // An unsigned record makes no member in a signed group, nor does a record whose key
  // does not match its id.
  ASSERT_TRUE(AddMember(r, c.public_key, DeviceId(c.public_key), 0).ok());
  EXPECT_EQ(TrustIn(r, d.files(), c.public_key), Trust::kUnknown);
  ASSERT_TRUE(
      r.Put(kDevicesCollection, DeviceId(c.public_key), {{"key", engine::Value(Hex(a.public_key))}})
          .ok());
  EXPECT_EQ(TrustIn(r, d.files(), c.public_key), Trust::kUnknown);
}

TEST(Trust, ManyRotationsKeepTheFirstKeyForAnOfflineMember) {
  InitCrypto();
  TempDir d;
  uint64_t now = 1;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(Rid('0')), [&] { return now++; },
      storage::Blake2b256Parts);
  Identity a = GenerateIdentity(), c = GenerateIdentity();
  ASSERT_TRUE(SaveRoot(d.files(), a.public_key).ok());
  const Key32 first = NewGroupKey();
  ASSERT_TRUE(SaveGroupKey(d.files(), first).ok());
  ASSERT_TRUE(Grant(r, d.files(), a, c.public_key, Role::kMember, 2).ok());
  // Ten devices revoked in a day while c is away: ten rotations.
  for (int i = 0; i < 10; ++i) {
    Identity x = GenerateIdentity();
    ASSERT_TRUE(Grant(r, d.files(), a, x.public_key, Role::kMember, 3).ok());
    ASSERT_TRUE(Revoke(r, d.files(), a, DeviceId(x.public_key), 4).ok());
  }
  auto keys = LoadGroupKeys(d.files());
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  EXPECT_EQ(keys->previous.size(), 10u);
  // Within the grace period c still connects with the key it left with.
  const auto accepted = keys->Accepted(keys->previous[0].retired_ms, 7ull * 24 * 3600 * 1000);
  EXPECT_NE(std::find(accepted.begin(), accepted.end(), first), accepted.end());
}

TEST(Trust, AGroupFromBeforeStatementsIsSignedByItsFounder) {
  InitCrypto();
  TempDir d;
  uint64_t now = 1;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(Rid('0')), [&] { return now++; },
      storage::Blake2b256Parts);
  Identity a = GenerateIdentity(), b = GenerateIdentity(), c = GenerateIdentity();
  // As the previous version made them: unsigned records, the founder added itself.
  ASSERT_TRUE(AddMember(r, a.public_key, DeviceId(a.public_key), 5).ok());
  ASSERT_TRUE(AddMember(r, b.public_key, DeviceId(a.public_key), 6).ok());
  ASSERT_TRUE(AddMember(r, c.public_key, DeviceId(b.public_key), 7).ok());
  auto legacy = ReadAuthority(r, d.files());
  ASSERT_TRUE(legacy.ok());
  EXPECT_TRUE(legacy->legacy);
  EXPECT_EQ(legacy->root, a.public_key);
  EXPECT_EQ(TrustOf(*legacy, c.public_key), Trust::kMember);
  // Any member revokes, as then; only the founder signs.
  ASSERT_TRUE(Revoke(r, d.files(), b, DeviceId(c.public_key), 8).ok());
  ASSERT_TRUE(SignLegacyTrust(r, d.files(), b, 9).ok());
  EXPECT_TRUE(ReadAuthority(r, d.files())->legacy);
  ASSERT_TRUE(SignLegacyTrust(r, d.files(), a, 9).ok());
  EXPECT_EQ(LoadRoot(d.files()).value(), a.public_key);
  auto signed_ = ReadAuthority(r, d.files());
  ASSERT_TRUE(signed_.ok());
  EXPECT_FALSE(signed_->legacy);
  EXPECT_TRUE(signed_->refused.empty());
  EXPECT_EQ(signed_->Rank(DeviceId(a.public_key)), kFounderRank);
  EXPECT_EQ(signed_->Rank(DeviceId(b.public_key)), static_cast<int>(Role::kMember));
  EXPECT_EQ(TrustOf(*signed_, c.public_key), Trust::kRevoked);
  // A replica that has the founder's statements but no root file finds the root.
  std::filesystem::remove(d.files().root);
  auto found = ReadAuthority(r, d.files());
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->legacy);
  EXPECT_EQ(LoadRoot(d.files()).value(), a.public_key);
  // From now on b, a member, revokes nobody.
  EXPECT_EQ(Revoke(r, d.files(), b, DeviceId(a.public_key), 10).code(), Code::kUnauthorized);
}

TEST(Trust, ASignedGroupThatLostItsRootFileIsNotJudgedByTheUnsignedRules) {
  InitCrypto();
  TempDir d;
  uint64_t now = 1;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(Rid('0')), [&] { return now++; },
      storage::Blake2b256Parts);
  Identity a = GenerateIdentity(), b = GenerateIdentity();
  ASSERT_TRUE(SaveRoot(d.files(), a.public_key).ok());
  ASSERT_TRUE(Grant(r, d.files(), a, b.public_key, Role::kMember, 5).ok());
  ASSERT_TRUE(AddMember(r, b.public_key, DeviceId(a.public_key), 5).ok());
  auto signed_ = ReadAuthority(r, d.files());
  ASSERT_TRUE(signed_.ok()) << signed_.status().ToString();
  EXPECT_FALSE(signed_->legacy);
  // Deleted by hand: the unsigned rules would make b the founder's equal (any member
  // revokes any other), so nothing is judged until the file is back.
  std::filesystem::remove(d.files().root);
  auto lost = ReadAuthority(r, d.files());
  EXPECT_EQ(lost.status().code(), Code::kUnauthorized);
  EXPECT_NE(lost.status().message().find("group.root is missing"), std::string::npos)
      << lost.status().ToString();
  EXPECT_FALSE(Revoke(r, d.files(), b, DeviceId(a.public_key), 6).ok());
  // Copied back from another member: judged as before.
  ASSERT_TRUE(SaveRoot(d.files(), a.public_key).ok());
  auto back = ReadAuthority(r, d.files());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->Rank(DeviceId(a.public_key)), kFounderRank);
  // A group joined from before statements says so in the file, and is judged as then.
  ASSERT_TRUE(SaveRoot(d.files(), std::nullopt).ok());
  EXPECT_EQ(LoadRoot(d.files()).value(), std::nullopt);
  bool missing = true;
  ASSERT_TRUE(LoadRoot(d.files(), &missing).ok());
  EXPECT_FALSE(missing);
}

TEST(Trust, RevocationCutoffsComeFromTheDataAndNeverRise) {
  InitCrypto();
  TempDir d;
  uint64_t now = 1;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(Rid('a')), [&] { return now++; },
      storage::Blake2b256Parts);
  Identity me = GenerateIdentity(), x = GenerateIdentity(), y = GenerateIdentity();
  ASSERT_TRUE(SaveRoot(d.files(), me.public_key).ok());
  ASSERT_TRUE(SaveGroupKey(d.files(), NewGroupKey()).ok());
  ASSERT_TRUE(AddMember(r, me.public_key, DeviceId(me.public_key), 1).ok());
  ASSERT_TRUE(Grant(r, d.files(), me, x.public_key, Role::kMember, 1).ok());
  ASSERT_TRUE(Grant(r, d.files(), me, y.public_key, Role::kMember, 1).ok());
  auto cutoffs = [&] { return RevocationCutoffs(r, ReadAuthority(r, d.files()).value()); };
  ASSERT_TRUE(NoteReplica(r, DeviceId(me.public_key), Rid('a')).ok());
  ASSERT_TRUE(NoteReplica(r, DeviceId(x.public_key), Rid('x')).ok());
  ASSERT_TRUE(NoteReplica(r, DeviceId(y.public_key), Rid('y')).ok());
  // A Hello from y naming x's (or our) replica is not recorded.
  EXPECT_EQ(NoteReplica(r, DeviceId(y.public_key), Rid('x')).code(), Code::kUnauthorized);
  EXPECT_EQ(NoteReplica(r, DeviceId(y.public_key), Rid('a')).code(), Code::kUnauthorized);
  // x's events 1..3 are applied without the version vector moving (as after an
  // interrupted or filtered sync).
  auto delta = [&](const char* rec, uint64_t seq) {
    engine::FieldState f;
    engine::ApplyPut(f, engine::Dot{Rid('x'), seq}, engine::MakeHlc(seq, 0),
                     engine::Value{int64_t(seq)});
    return engine::FieldDelta{{"c", rec, "v"}, f};
  };
  ASSERT_TRUE(r.ApplyDeltas({delta("r1", 1), delta("r2", 3)}).ok());
  EXPECT_EQ(r.Meta()->vv.Get(Rid('x')), 0u);
  ASSERT_TRUE(Revoke(r, d.files(), me, DeviceId(x.public_key), 5).ok());
  auto cut = cutoffs();
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(*cut, (std::map<engine::ReplicaId, uint64_t>{{Rid('x'), 3}}));
  // More of x's events arrive; revoking again is refused and does not raise the cutoff.
  ASSERT_TRUE(r.ApplyDeltas({delta("r3", 9)}).ok());
  EXPECT_EQ(Revoke(r, d.files(), me, DeviceId(x.public_key), 6).code(), Code::kNotFound);
  EXPECT_EQ(cutoffs()->at(Rid('x')), 3u);
  // A replica of x's noted after the revocation is cut off entirely.
  ASSERT_TRUE(NoteReplica(r, DeviceId(x.public_key), Rid('z')).ok());
  EXPECT_EQ(cutoffs()->at(Rid('z')), 0u);
  // Never ours, never a member's in good standing.
  EXPECT_EQ(cutoffs()->count(Rid('a')), 0u);
  EXPECT_EQ(cutoffs()->count(Rid('y')), 0u);
}

}  // namespace
}  // namespace tandem::net
