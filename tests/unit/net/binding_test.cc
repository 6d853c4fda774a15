// Replica bindings: derived ids, signatures, admission, and the trust set's use of them.
#include "tandem/net/binding.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <stdlib.h>

#include <filesystem>

#include "tandem/engine/memory_store.h"
#include "tandem/net/group.h"
#include "tandem/storage/replica.h"

namespace tandem::net {
namespace {

engine::ReplicaId Id(char c) {
  engine::ReplicaId id;
  id.bytes.fill(static_cast<uint8_t>(c));
  return id;
}

engine::FieldDelta BindingDelta(const std::string& record, const std::string& bytes,
                                const char* field = kBindingField) {
  engine::FieldState f;
  engine::ApplyPut(f, engine::Dot{Id('w'), 1}, engine::MakeHlc(1, 0),
                   engine::Value{engine::Bytes{bytes}});
  return engine::FieldDelta{{kBindingsCollection, record, field}, f};
}

TEST(Binding, BindsOnlyTheReplicaItsDeviceDerivedAndSigned) {
  InitCrypto();
  const Identity d = GenerateIdentity(), m = GenerateIdentity();
  engine::ReplicaId id, other;
  const Binding b = NewBinding(d, &id);
  NewBinding(d, &other);
  EXPECT_NE(id, other);  // a fresh salt each time
  EXPECT_EQ(id, DerivedReplicaId(d.public_key, b.salt));
  EXPECT_TRUE(VerifyBinding(b, id));
  EXPECT_FALSE(VerifyBinding(b, other));
  EXPECT_EQ(DecodeBinding(EncodeBinding(b)).value(), b);
  EXPECT_EQ(EncodeBinding(b).size(), kBindingBytes);

  // m cannot bind a replica to d: an id derived from d's key, signed by m.
  Binding forged = b;
  randombytes_buf(forged.salt.data(), forged.salt.size());
  const engine::ReplicaId made_up = DerivedReplicaId(d.public_key, forged.salt);
  EXPECT_FALSE(VerifyBinding(forged, made_up));
  engine::ReplicaId m_id;
  Binding m_b = NewBinding(m, &m_id);
  m_b.device = d.public_key;
  EXPECT_FALSE(VerifyBinding(m_b, m_id));
  // Nor take d's replica as its own: the id is not derived from m's key.
  Binding stolen = b;
  stolen.device = m.public_key;
  EXPECT_FALSE(VerifyBinding(stolen, id));
  // A flipped bit anywhere breaks it.
  for (size_t i = 1; i < kBindingBytes; i += 7) {
    std::string e = EncodeBinding(b);
    e[i] = static_cast<char>(e[i] ^ 1);
    auto back = DecodeBinding(e);
    ASSERT_TRUE(back.ok());
    EXPECT_FALSE(VerifyBinding(*back, id)) << "byte " << i;
  }
  EXPECT_FALSE(DecodeBinding(EncodeBinding(b).substr(1)).ok());
  std::string v2 = EncodeBinding(b);
  v2[0] = 2;
  EXPECT_FALSE(DecodeBinding(v2).ok());
}

TEST(Binding, AdmissionTakesOnlyBindingsOfTheReplicaTheRecordNames) {
  InitCrypto();
  const Identity d = GenerateIdentity();
  engine::ReplicaId id, other;
  const std::string e = EncodeBinding(NewBinding(d, &id));
  NewBinding(d, &other);
  using engine::Admission;
  EXPECT_EQ(AdmitBinding(BindingDelta(id.Hex(), e)), Admission::kAccept);
  EXPECT_EQ(AdmitBinding(BindingDelta(other.Hex(), e)), Admission::kRefuse);
  EXPECT_EQ(AdmitBinding(BindingDelta("not hex", e)), Admission::kRefuse);
  EXPECT_EQ(AdmitBinding(BindingDelta(id.Hex(), e, "x")), Admission::kRefuse);
  EXPECT_EQ(AdmitBinding(BindingDelta(id.Hex(), e.substr(2))), Admission::kRefuse);
  // A deletion (the register's values removed) is refused: bindings only grow.
  engine::FieldDelta gone = BindingDelta(id.Hex(), e);
  engine::ApplyDelete(gone.state, engine::Dot{Id('w'), 2});
  ASSERT_TRUE(gone.state.markers.empty());
  EXPECT_EQ(AdmitBinding(gone), Admission::kRefuse);
  // A string instead of bytes, or a set, is refused.
  engine::FieldState s;
  engine::ApplyPut(s, engine::Dot{Id('w'), 1}, engine::MakeHlc(1, 0), engine::Value{e});
  EXPECT_EQ(AdmitBinding({{kBindingsCollection, id.Hex(), kBindingField}, s}), Admission::kRefuse);
  engine::FieldState set;
  engine::ApplyAdd(set, engine::Dot{Id('w'), 1}, engine::MakeHlc(1, 0),
                   engine::Value{engine::Bytes{e}});
  EXPECT_EQ(AdmitBinding({{kBindingsCollection, id.Hex(), kBindingField}, set}),
            Admission::kRefuse);
  // Other collections are not its business.
  EXPECT_EQ(AdmitBinding({{"c", "r", "f"}, s}), Admission::kAccept);
}

struct TrustFixture {
  TrustFixture() {
    InitCrypto();
    char t[] = "/tmp/tandem_binding_XXXXXX";
    dir = mkdtemp(t);
    files = {dir + "/group.key",  dir + "/invites",          dir + "/join.code",
             dir + "/group.root", dir + "/replica.bindings", ""};
  }
  ~TrustFixture() { std::filesystem::remove_all(dir); }
  std::string dir;
  GroupPaths files;
  uint64_t now = 1;
  engine::Replica r{std::make_unique<engine::MemoryStore>(Id('a')), [this] { return now++; },
                    storage::Blake2b256Parts};
};

// A revoked device's bound replica stays its own whatever the unsigned hints say: listing
// it under a member in good standing (any device may edit the hints) no longer exempts it
// from the cutoff, and a Hello naming it from another device is refused.
TEST(Binding, HintsCannotMoveABoundReplicaToAnotherDevice) {
  TrustFixture t;
  const Identity me = GenerateIdentity(), x = GenerateIdentity(), y = GenerateIdentity();
  ASSERT_TRUE(SaveRoot(t.files, me.public_key).ok());
  ASSERT_TRUE(SaveGroupKey(t.files, NewGroupKey()).ok());
  ASSERT_TRUE(AddMember(t.r, me.public_key, DeviceId(me.public_key), 1).ok());
  ASSERT_TRUE(Grant(t.r, t.files, me, x.public_key, Role::kMember, 1).ok());
  ASSERT_TRUE(Grant(t.r, t.files, me, y.public_key, Role::kMember, 1).ok());
  engine::ReplicaId xr;
  const Binding xb = NewBinding(x, &xr);
  ASSERT_TRUE(StoreBinding(t.r, xr, xb).ok());
  // y's Hello naming x's replica: refused, though no hint lists it anywhere yet.
  EXPECT_EQ(NoteReplica(t.r, DeviceId(y.public_key), xr).code(), Code::kUnauthorized);
  ASSERT_TRUE(NoteReplica(t.r, DeviceId(x.public_key), xr).ok());
  // A hint edited by hand lists x's replica under y as well.
  ASSERT_TRUE(
      t.r.Add(kDevicesCollection, DeviceId(y.public_key), "replicas", engine::Value(xr.Hex()))
          .ok());
  ASSERT_TRUE(Revoke(t.r, t.files, me, DeviceId(x.public_key), 5).ok());
  auto cut = RevocationCutoffs(t.r, ReadAuthority(t.r, t.files).value());
  ASSERT_TRUE(cut.ok()) << cut.status().ToString();
  ASSERT_EQ(cut->count(xr), 1u);
  EXPECT_EQ(cut->at(xr), 0u);
  // Storing a binding for a replica it does not bind is refused.
  engine::ReplicaId yr;
  NewBinding(y, &yr);
  EXPECT_EQ(StoreBinding(t.r, yr, xb).code(), Code::kInvalidArgument);
}

// A device's own bindings file: every id BoundIds hands out is published from it, an
// id it did not make (from before bindings) is reported as unbound, and ids taken but
// never used leave the file.
TEST(Binding, BoundIdsAreSavedBeforeUseAndPublished) {
  TrustFixture t;
  const Identity me = GenerateIdentity();
  auto ids = BoundIds(me, t.files.bindings);
  const engine::ReplicaId first = ids(), second = ids();
  EXPECT_NE(first, second);
  auto own = LoadOwnBindings(t.files.bindings);
  ASSERT_TRUE(own.ok());
  ASSERT_EQ(own->size(), 2u);
  EXPECT_TRUE(VerifyBinding((*own)[0], first));
  EXPECT_TRUE(VerifyBinding((*own)[1], second));
  // A replica whose id BoundIds made publishes its binding once; the id taken before,
  // never used (a store transaction that was retried, say), leaves the file.
  TrustFixture u;
  engine::Replica r(
      std::make_unique<engine::MemoryStore>(second), [&] { return u.now++; },
      storage::Blake2b256Parts);
  EXPECT_TRUE(PublishOwnBinding(r, t.files.bindings).value());
  auto found = FindBinding(r, second);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, (*own)[1]);
  EXPECT_EQ(LoadOwnBindings(t.files.bindings).value(), std::vector<Binding>{(*own)[1]});
  EXPECT_EQ(ReadBindings(r).value(),
            (std::map<engine::ReplicaId, std::string>{{second, DeviceId(me.public_key)}}));
  const uint64_t events = r.Meta()->vv.Get(second);
  EXPECT_TRUE(PublishOwnBinding(r, t.files.bindings).value());
  EXPECT_EQ(r.Meta()->vv.Get(second), events);  // not written again
  // A damaged line is skipped, not fatal.
  {
    FILE* f = std::fopen(t.files.bindings.c_str(), "a");
    ASSERT_NE(f, nullptr);
    std::fputs("zz-not-hex\n", f);
    std::fclose(f);
  }
  EXPECT_EQ(LoadOwnBindings(t.files.bindings).value().size(), 1u);
  const engine::ReplicaId third = ids();
  EXPECT_EQ(LoadOwnBindings(t.files.bindings).value().size(), 2u);
  EXPECT_TRUE(VerifyBinding(LoadOwnBindings(t.files.bindings).value()[1], third));
  // t.r's id ('a'...) was not made by BoundIds: nothing to publish, and the file keeps
  // no binding of an id t.r does not use.
  EXPECT_FALSE(PublishOwnBinding(t.r, t.files.bindings).value());
  EXPECT_FALSE(FindBinding(t.r, Id('a')).value().has_value());
  EXPECT_TRUE(LoadOwnBindings(t.files.bindings).value().empty());

  // Two new ids before a publication, the first of which wrote: both are published.
  TrustFixture v;
  const engine::ReplicaId fourth = ids(), fifth = ids();
  engine::Replica s(
      std::make_unique<engine::MemoryStore>(fourth), [&] { return v.now++; },
      storage::Blake2b256Parts);
  ASSERT_TRUE(s.Put("c", "r", {{"v", engine::Value{int64_t{1}}}}).ok());
  {
    auto txn = s.store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    engine::ReplicaMeta meta;
    ASSERT_TRUE((*txn)->GetMeta(&meta).ok());
    meta.id = fifth;  // as TakeNewReplicaId does: fourth's events stay in the vector
    ASSERT_TRUE((*txn)->PutMeta(meta).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  EXPECT_TRUE(PublishOwnBinding(s, t.files.bindings).value());
  EXPECT_TRUE(FindBinding(s, fifth).value().has_value());
  EXPECT_TRUE(FindBinding(s, fourth).value().has_value());
  // Ids handed out but never used (third here) are not published.
  EXPECT_FALSE(FindBinding(s, third).value().has_value());
}

}  // namespace
}  // namespace tandem::net
