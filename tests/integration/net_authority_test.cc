// Authority with real daemons on loopback: roles, leaked invites, permissions, key
// rotation, joining another group, and collection held back by members.
#include "../unit/storage/sync_once.h"
#include "net_fixture.h"

namespace tandem::testing {
namespace {

std::string DeviceOf(const std::string& dir) {
  return json::parse(T({"info", dir}).out)["device_id"].get<std::string>();
}

// The devices of `dir` by id, from `tandem devices --json`.
std::map<std::string, json> DevicesOf(const std::string& dir) {
  std::map<std::string, json> out;
  std::istringstream lines(T({"devices", dir, "--json"}).out);
  for (std::string line; std::getline(lines, line);) {
    json j = json::parse(line);
    out[j["device_id"].get<std::string>()] = j;
  }
  return out;
}

// A holder of a leaked member invite, with real daemons: every command that would change
// the trust set is refused to it, and a revocation it forges (signed by itself, written
// into its replica behind the CLI's back) reaches the others by sync, counts nowhere and
// is listed by `status` on every device. An admin's revocation of it holds everywhere.
TEST_F(Net, AMemberWithALeakedInviteCannotRevokeAnyone) {
  std::string o = Init("o"), a = Init("a"), m = Init("m");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "a", addr, "admin");
  Pair("o", "m", addr);  // the leaked invite: a member
  const std::string od = DeviceOf(o), ad = DeviceOf(a), md = DeviceOf(m);
  ASSERT_EQ(T({"sync", a, "--peer", addr}).exit_code, 0);
  auto devs = DevicesOf(a);
  ASSERT_EQ(devs.size(), 3u);
  EXPECT_EQ(devs[od]["role"], "owner");
  EXPECT_EQ(devs[od]["founder"], true);
  EXPECT_EQ(devs[ad]["role"], "admin");
  EXPECT_EQ(devs[ad]["granted_by"], od);
  EXPECT_EQ(devs[md]["role"], "member");
  EXPECT_EQ(devs[md]["status"], "member");

  // Refused by the CLI, with the reason, nothing written.
  for (const auto& args : std::vector<std::vector<std::string>>{{"revoke", m, od},
                                                                {"revoke", m, ad},
                                                                {"role", m, ad, "reader"},
                                                                {"invite", m},
                                                                {"invite", a, "--role", "admin"},
                                                                {"role", a, od, "member"}}) {
    auto r = T(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("unauthorized"), std::string::npos) << r.err;
  }
  EXPECT_NE(T({"revoke", m, od}).err.find("only admins and owners can revoke"), std::string::npos);
  // The founder ranks above an admin, and nobody acts on it.
  auto above = T({"revoke", a, od}).err;
  EXPECT_NE(above.find("is the founder, above this device (an admin): nobody can revoke it"),
            std::string::npos)
      << above;

  // Forged: m signs a revocation of the owner and of the admin anyway.
  {
    auto rep = storage::OpenReplica(m);
    auto self = net::LoadIdentity(m + "/identity.key");
    ASSERT_TRUE(rep.ok() && self.ok());
    const auto files = device::Layout(m).group();
    auto au = net::ReadAuthority(**rep, files);
    ASSERT_TRUE(au.ok());
    for (const auto& victim : {od, ad}) {
      net::Statement st;
      st.kind = net::StatementKind::kRevoke;
      st.subject = au->devices.at(victim).key;
      st.parents = au->heads;
      net::SignStatement(&st, *self, au->root);
      const std::string e = net::EncodeStatement(st);
      ASSERT_TRUE((*rep)
                      ->Put(net::kStatementsCollection, net::HexId(net::IdOf(e)),
                            {{net::kStatementField, engine::Value(engine::Bytes{e})}})
                      .ok());
    }
  }
  ASSERT_EQ(T({"sync", m, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"sync", a, "--peer", addr}).exit_code, 0);
  for (const auto& dir : {o, a, m}) {
    auto st = json::parse(T({"status", dir, "--json"}).out);
    ASSERT_EQ(st["statements_refused"].size(), 2u) << dir << ": " << st.dump();
    for (const auto& r : st["statements_refused"]) {
      EXPECT_EQ(r["signer"], md);
      EXPECT_NE(r["why"].get<std::string>().find("only admins and owners revoke"),
                std::string::npos);
    }
    EXPECT_NE(T({"status", dir}).out.find("refused: " + md + ": revoke"), std::string::npos);
    auto d = DevicesOf(dir);
    EXPECT_EQ(d[od]["status"], "member") << dir;
    EXPECT_EQ(d[ad]["status"], "member") << dir;
  }
  // The admin and the owner still sync with each other.
  ASSERT_EQ(T({"put", o, "items", "after", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"sync", a, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", a, "items", "after"}).exit_code, 0);

  // The admin revokes the member (its id typed without dashes): the owner refuses it
  // once it has the revocation.
  std::string typed = md;
  std::erase(typed, '-');
  auto rv = T({"revoke", a, typed});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_NE(rv.err.find("revoked " + md), std::string::npos) << rv.err;
  // Again: refused, nothing signed, the key not rotated once more.
  auto again = T({"revoke", a, md});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already revoked"), std::string::npos) << again.err;
  ASSERT_EQ(T({"sync", a, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(DevicesOf(o)[md]["status"], "revoked");
  EXPECT_EQ(DevicesOf(o)[md]["revoked_by"], ad);
  auto r = T({"sync", m, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(WaitFor([&] { return so->log().find("has been revoked") != std::string::npos; }))
      << so->log();
}

// Writes behind the CLI's back (no permission check), as a modified client would.
void ForgeWrite(const std::string& dir, const std::string& coll, const std::string& id,
                const std::string& field, engine::Value v) {
  auto rep = storage::OpenReplica(dir);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_TRUE((*rep)->Put(coll, id, {{field, std::move(v)}}).ok());
}

// A build of its own: writes under a replica id it made up, which no binding names,
// listed in the hints under `owner` (a device in good standing) to escape its limits,
// then goes back to its own id (the one its handshakes name).
void ForgeUnbound(const std::string& dir, const std::string& owner, const std::string& coll,
                  const std::string& id, const std::string& field, engine::Value v) {
  auto rep = storage::OpenReplica(dir);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto set_id = [&](const engine::ReplicaId& to) {
    auto txn = (*rep)->store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    engine::ReplicaMeta meta;
    ASSERT_TRUE((*txn)->GetMeta(&meta).ok());
    meta.id = to;
    ASSERT_TRUE((*txn)->PutMeta(meta).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  };
  const engine::ReplicaId own = (*rep)->Meta()->id, made_up = storage::RandomReplicaId();
  set_id(made_up);
  ASSERT_TRUE(
      (*rep)->Add(net::kDevicesCollection, owner, "replicas", engine::Value(made_up.Hex())).ok());
  ASSERT_TRUE((*rep)->Put(coll, id, {{field, std::move(v)}}).ok());
  set_id(own);
}

// A revoked device that holds its revocation (here brought by a session in this process:
// members refuse it, but a relay from before the rotation could bring it) is told so at
// its own writes, rather than of a missing permission.
TEST_F(Net, ARevokedDeviceIsToldSoAtItsOwnWrites) {
  std::string o = Init("o"), x = Init("x");
  {
    std::string addr;
    auto so = Listen("o", {}, &addr);
    Pair("o", "x", addr);
    ASSERT_EQ(T({"sync", x, "--peer", addr}).exit_code, 0);
  }
  ASSERT_EQ(T({"put", x, "notes", "n1", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"revoke", o, DeviceOf(x)}).exit_code, 0);
  {
    auto ro = storage::OpenReplica(o);
    auto rx = storage::OpenReplica(x);
    ASSERT_TRUE(ro.ok() && rx.ok());
    ASSERT_TRUE(storage::SyncOnce(**ro, **rx).ok());
  }
  auto put = T({"put", x, "notes", "n2", "v=2"});
  EXPECT_EQ(put.exit_code, 1);
  EXPECT_NE(put.err.find("was revoked from its group (by " + DeviceOf(o) + ")"), std::string::npos)
      << put.err;
  EXPECT_EQ(put.err.find("permission"), std::string::npos) << put.err;
}

// Per-collection permissions with real daemons: a till that may write only orders, a
// reader, and a collection one device may not read.
TEST_F(Net, PermissionsBoundWhatEachDeviceWritesAndReads) {
  std::string o = Init("o"), t = Init("t"), r = Init("r");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "t", addr);
  Pair("o", "r", addr, "reader");
  const std::string td = DeviceOf(t), rd = DeviceOf(r);
  ASSERT_EQ(T({"put", o, "products", "p1", "price=10"}).exit_code, 0);
  ASSERT_EQ(T({"put", o, "secrets", "s1", "v=1"}).exit_code, 0);
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"permit", o, "*", td, "read"},
                                             {"permit", o, "orders", td, "write"},
                                             {"permit", o, "secrets", td, "none"}}) {
    auto p = T(args);
    ASSERT_EQ(p.exit_code, 0) << p.err;
  }
  // Only admins and above set permissions; no permits on tandem's own collections.
  EXPECT_EQ(T({"permit", t, "orders", "member", "write"}).exit_code, 1);
  EXPECT_EQ(T({"permit", o, "_tandem_devices", "member", "none"}).exit_code, 2);
  EXPECT_EQ(T({"permit", o, "orders", "boss", "write"}).exit_code, 2);
  auto listed = T({"permissions", o});
  EXPECT_NE(listed.out.find("orders  " + td + "  write"), std::string::npos) << listed.out;
  for (const auto& dir : {t, r}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);

  // The till: orders yes, products no (locally refused, with the reason).
  EXPECT_EQ(T({"get", t, "products", "p1"}).exit_code, 0);
  EXPECT_NE(T({"get", t, "secrets", "s1"}).exit_code, 0);  // never sent
  auto denied = T({"put", t, "products", "p1", "price=1"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_NE(denied.err.find("may not write products"), std::string::npos) << denied.err;
  EXPECT_EQ(T({"del", t, "products", "p1"}).exit_code, 1);
  ASSERT_EQ(T({"put", t, "orders", "o1", "total=5"}).exit_code, 0);
  // ... and forged, the price change and a new product reach nobody.
  ForgeWrite(t, "products", "p1", "price", engine::Value(int64_t{1}));
  ForgeWrite(t, "products", "p2", "price", engine::Value(int64_t{2}));
  // Schemas are for admins and above: refused here, and forged, refused by o.
  {
    std::ofstream(Dir("schema.json")) << R"({"fields": {"price": {"type": "int"}}})";
    auto sc = T({"schema", t, "products", Dir("schema.json")});
    EXPECT_EQ(sc.exit_code, 1);
    EXPECT_NE(sc.err.find("only admins and owners"), std::string::npos) << sc.err;
    ForgeWrite(t, "_tandem_schemas", "products", "v9", engine::Value(std::string("{}")));
  }
  // The reader: nothing at all.
  EXPECT_EQ(T({"put", r, "notes", "n1", "v=1"}).exit_code, 1);
  ForgeWrite(r, "notes", "n1", "v", engine::Value(int64_t{1}));
  ForgeWrite(r, "products", "p1", "price", engine::Value(int64_t{3}));
  for (const auto& dir : {t, r}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);

  EXPECT_EQ(T({"get", o, "orders", "o1"}).exit_code, 0);
  EXPECT_NE(T({"get", o, "products", "p1"}).out.find("\"price\":10"), std::string::npos);
  EXPECT_NE(T({"get", o, "products", "p2"}).exit_code, 0);
  EXPECT_NE(T({"get", o, "notes", "n1"}).exit_code, 0);
  EXPECT_EQ(T({"dump", o, "--system"}).out.find("\"v9\""), std::string::npos);
  EXPECT_EQ(T({"schema", o, "orders", Dir("schema.json")}).exit_code, 0);  // the founder may
  auto st = json::parse(T({"status", o, "--json"}).out);
  uint64_t refused = 0;
  for (const auto& rep : st["replicas"]) refused += rep["fields_refused"].get<uint64_t>();
  EXPECT_GE(refused, 4u) << st.dump();

  // The reader as a build of its own, under an id no binding names (the group requires
  // bound replicas since its first member joined): held by o, never applied, listed.
  EXPECT_NE(T({"devices", o}).err.find("bound replicas required"), std::string::npos);
  ForgeUnbound(r, DeviceOf(o), "products", "p4", "price", engine::Value(int64_t{4}));
  ASSERT_EQ(T({"sync", r, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"get", o, "products", "p4"}).exit_code, 0);
  auto held = T({"quarantine", o});
  EXPECT_NE(held.out.find("\"record\":\"p4\""), std::string::npos) << held.out;
  EXPECT_NE(held.out.find("\"awaiting_binding\":true"), std::string::npos) << held.out;
  EXPECT_NE(held.out.find("\"unbound_writers\":[\""), std::string::npos) << held.out;
  auto bad_id = T({"quarantine", o, "--release", "abc"});
  EXPECT_EQ(bad_id.exit_code, 2);
  EXPECT_NE(bad_id.err.find("not a quarantine id: abc"), std::string::npos) << bad_id.err;
  auto after = json::parse(T({"status", o, "--json"}).out);
  EXPECT_EQ(after["quarantined_awaiting_binding"], 1) << held.out;
  EXPECT_EQ(after["bound_replicas_required"], true);

  // Taken away while the till is offline with a pending write: the write, made after
  // what the owner held of the till when it signed, is refused.
  ASSERT_EQ(T({"permit", o, "orders", td, "read"}).exit_code, 0);
  ASSERT_EQ(T({"put", t, "orders", "o2", "total=6"}).exit_code, 0);  // t has not heard yet
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o2"}).exit_code, 0);
  EXPECT_EQ(T({"get", o, "orders", "o1"}).exit_code, 0);             // made while it could: kept
  EXPECT_EQ(T({"put", t, "orders", "o3", "total=7"}).exit_code, 1);  // now it knows

  // Write permission given back: the till's next price change flows (the forged one
  // stays refused for good).
  ASSERT_EQ(T({"permit", o, "products", td, "write"}).exit_code, 0);
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"put", t, "products", "p3", "price=7"}).exit_code, 0);
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", o, "products", "p3"}).exit_code, 0);
  EXPECT_NE(T({"get", o, "products", "p2"}).exit_code, 0);

  // Orders given back too: what the till wrote while it could not (o2) stays refused,
  // also at a device that judges it only now (the reader never had it), and the till's
  // later writes count.
  ASSERT_EQ(T({"permit", o, "orders", td, "write"}).exit_code, 0);
  ASSERT_EQ(T({"sync", r, "--peer", addr}).exit_code, 0);
  {
    std::string raddr;
    auto sr = Listen("r", {}, &raddr);
    ASSERT_EQ(T({"sync", t, "--peer", raddr}).exit_code, 0);
    EXPECT_EQ(T({"get", r, "orders", "o1"}).exit_code, 0);
    EXPECT_NE(T({"get", r, "orders", "o2"}).exit_code, 0);
  }
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"put", t, "orders", "o4", "total=8"}).exit_code, 0);
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", o, "orders", "o4"}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o2"}).exit_code, 0);
}

// A write made once a permission came back travels with the statement that gave it back,
// in one session, to a device that still held the permission away: it is taken there, not
// judged by what that device knew before the session, and flows on from it.
TEST_F(Net, AWriteMadeOnceAPermissionCameBackFlowsWithTheStatement) {
  std::string addr;
  auto so = Founded({"o", "t", "m"}, &addr);
  const std::string o = Dir("o"), t = Dir("t"), m = Dir("m"), td = DeviceOf(t);
  ASSERT_EQ(T({"permit", o, "orders", td, "read"}).exit_code, 0);
  ASSERT_EQ(T({"sync", m, "--peer", addr}).exit_code, 0);            // m holds the write away
  ASSERT_EQ(T({"put", t, "orders", "o1", "total=5"}).exit_code, 0);  // t has not heard yet
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o1"}).exit_code, 0);

  ASSERT_EQ(T({"permit", o, "orders", td, "write"}).exit_code, 0);
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"put", t, "orders", "o2", "total=6"}).exit_code, 0);
  SyncWith(t, "m");
  EXPECT_EQ(T({"get", m, "orders", "o2"}).exit_code, 0);
  EXPECT_NE(T({"get", m, "orders", "o1"}).exit_code, 0);  // written while it could not
  EXPECT_EQ(T({"quarantine", m}).out, "");                // nothing left held
  ASSERT_EQ(T({"sync", m, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", o, "orders", "o2"}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o1"}).exit_code, 0);
}

// A write the device made before it heard that its permission was taken reaches a
// member that has not heard either in the batch that brings the statement, ahead of it
// (it is earlier in the device's log): judged after the statement all the same, it is
// refused there as by the signer, and the two agree; what it wrote before counts.
TEST_F(Net, AWriteMadeBeforeThePermitIsJudgedWithItInOneBatch) {
  std::string addr;
  auto so = Founded({"o", "t", "m"}, &addr);
  const std::string o = Dir("o"), t = Dir("t"), m = Dir("m"), td = DeviceOf(t);
  ASSERT_EQ(T({"put", t, "orders", "o1", "total=5"}).exit_code, 0);
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"permit", o, "orders", td, "read"}).exit_code, 0);
  ASSERT_EQ(T({"put", t, "orders", "o2", "total=6"}).exit_code, 0);  // t has not heard yet
  ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o2"}).exit_code, 0);
  SyncWith(t, "m");
  EXPECT_EQ(T({"get", m, "orders", "o1"}).exit_code, 0);
  EXPECT_NE(T({"get", m, "orders", "o2"}).exit_code, 0);
  ASSERT_EQ(T({"sync", m, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"get", o, "orders", "o2"}).exit_code, 0);
  EXPECT_EQ(T({"dump", o}).out, T({"dump", m}).out);
}

// A collection a device could not read, then may: its records from before come too, while
// another it still may not read stays away (its sessions still leave something out).
TEST_F(Net, AReadPermissionGivenBackBringsTheEarlierRecords) {
  std::string o = Init("o"), t = Init("t");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "t", addr);
  const std::string td = DeviceOf(t);
  for (const auto& c : {"secrets", "vault"})
    ASSERT_EQ(T({"permit", o, c, td, "none"}).exit_code, 0);
  for (const auto& c : {"secrets", "vault", "products"})
    ASSERT_EQ(T({"put", o, c, "r1", "v=1"}).exit_code, 0);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", t, "products", "r1"}).exit_code, 0);
  EXPECT_NE(T({"get", t, "secrets", "r1"}).exit_code, 0);

  ASSERT_EQ(T({"permit", o, "secrets", td, "read"}).exit_code, 0);
  ASSERT_EQ(T({"put", o, "secrets", "r2", "v=2"}).exit_code, 0);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"get", t, "secrets", "r2"}).exit_code, 0);
  EXPECT_EQ(T({"get", t, "secrets", "r1"}).exit_code, 0) << "written before t could read it";
  EXPECT_NE(T({"get", t, "vault", "r1"}).exit_code, 0);
}

// A member whose group.root is gone cannot tell who may do what (its group is signed):
// `check` says so and fails, and passes again once the file is back; nothing is written
// in its place meanwhile.
TEST_F(Net, CheckNamesAMissingGroupRoot) {
  std::string o = Init("o"), m = Init("m");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "m", addr);
  auto r = T({"check", m});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"group_root\":true"), std::string::npos) << r.out;
  const fs::path root = fs::path(m) / "group.root", aside = fs::path(m + ".root");
  fs::rename(root, aside);
  r = T({"check", m});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("\"group_root\":false"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("group.root is missing, and this replica's group is signed"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(root));
  fs::rename(aside, root);
  EXPECT_EQ(T({"check", m}).exit_code, 0);
  // The founder too, once the group is signed.
  fs::rename(fs::path(o) / "group.root", fs::path(o + ".root"));
  r = T({"check", o});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("group.root is missing"), std::string::npos) << r.err;
  fs::rename(fs::path(o + ".root"), fs::path(o) / "group.root");
  EXPECT_EQ(T({"check", o}).exit_code, 0);
}

// A member that hears of a revocation, or of a permit that takes a collection from a
// device, in the same sync as data written after it, sends none of that data over a live
// session it holds with that device: the session ends (or leaves the collection out)
// before it reads that far.
TEST_F(Net, ALiveSessionSendsNothingWrittenAfterARevocationOrPermitItCarries) {
  for (const std::string how : {"revoke", "permit"}) {
    std::string f = Init(how + "f"), m = Init(how + "m"), x = Init(how + "x");
    std::string af, am;
    auto sf = Listen(how + "f", {}, &af);
    Pair(how + "f", how + "m", af);
    Pair(how + "f", how + "x", af);
    for (const auto& d : {m, x}) ASSERT_EQ(T({"sync", d, "--peer", af}).exit_code, 0);
    auto sm = Listen(how + "m", {}, &am);
    Serve sx({x, "--peer", am}, Log(how + "x"));
    ASSERT_EQ(T({"put", x, "notes", "live", "v=1"}).exit_code, 0);
    ASSERT_TRUE(WaitFor([&] {
      return T({"get", m, "notes", "live"}).exit_code == 0;
    })) << ReadFile(Log(how + "x"));
    if (how == "revoke")
      ASSERT_EQ(T({"revoke", f, DeviceOf(x)}).exit_code, 0);
    else
      ASSERT_EQ(T({"permit", f, "notes", DeviceOf(x), "none"}).exit_code, 0);
    ASSERT_EQ(T({"put", f, "notes", "secret", "v=2"}).exit_code, 0);
    ASSERT_EQ(T({"sync", f, "--peer", am}).exit_code, 0);
    ASSERT_EQ(T({"get", m, "notes", "secret"}).exit_code, 0);
    // What x would have got by now, it would have had in a moment.
    ASSERT_TRUE(WaitFor([&] {
      return sm->log().find(how == "revoke" ? "revoked" : "changed: ending the session") !=
             std::string::npos;
    })) << sm->log();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_NE(T({"get", x, "notes", "secret"}).exit_code, 0) << how;
  }
}

// A one-shot sync that learns during its session that the peer's permissions changed
// ends that session and starts one under the new permissions at once: it catches up
// and exits 0.
TEST_F(Net, ASyncThatLearnsOfNewPermissionsSyncsAgainUnderThem) {
  std::string o = Init("o"), t = Init("t"), k = Init("k");
  std::string ao, at;
  {
    auto so = Listen("o", {}, &ao);
    Pair("o", "t", ao);
    Pair("o", "k", ao);
    ASSERT_EQ(T({"permit", o, "secrets", DeviceOf(t), "none"}).exit_code, 0);
    ASSERT_EQ(T({"sync", t, "--peer", ao}).exit_code, 0);
  }
  ASSERT_EQ(T({"put", k, "notes", "n1", "v=1"}).exit_code, 0);
  auto st = Listen("t", {}, &at);
  auto r = T({"sync", k, "--peer", at});  // k hears of the permit from t
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("changed: reconnecting"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("caught up"), std::string::npos) << r.err;
  EXPECT_EQ(T({"get", t, "notes", "n1"}).exit_code, 0);
}

// The same when the side that learns of them is the one dialed: it ends the session
// with a final frame after what it had queued (which the old permissions covered), and
// the dialer, ended before it caught up, syncs again at once.
TEST_F(Net, ASyncEndedByThePeerForNewPermissionsSyncsAgain) {
  std::string o = Init("o"), t = Init("t"), k = Init("k");
  std::string ao, ak;
  {
    auto so = Listen("o", {}, &ao);
    Pair("o", "t", ao);
    Pair("o", "k", ao);
    ASSERT_EQ(T({"sync", k, "--peer", ao}).exit_code, 0);
    ASSERT_EQ(T({"permit", o, "secrets", DeviceOf(t), "none"}).exit_code, 0);
    ASSERT_EQ(T({"sync", t, "--peer", ao}).exit_code, 0);
  }
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(T({"put", k, "notes", "n" + std::to_string(i), "v=1"}).exit_code, 0);
  auto sk = Listen("k", {}, &ak);
  auto r = T({"sync", t, "--peer", ak});  // k hears of t's permit from t itself
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("caught up"), std::string::npos) << r.err;
  EXPECT_EQ(T({"get", t, "notes", "n49"}).exit_code, 0);
}

// A peer that stops during a one-shot sync ends the session with FINAL: the sync says
// that the peer ended it before it caught up (and exits 1), not that the peer refused
// it (it does not dial again: only a FINAL that says so means new permissions).
TEST_F(Net, ASyncWhosePeerStopsSaysSo) {
  std::string o = Init("o"), x = Init("x");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "x", addr);
  {
    std::ofstream rows(Dir("rows.jsonl"));
    for (int i = 0; i < 100000; ++i)
      rows << R"({"id": "r)" << i << R"(", "a": "some text to carry", "b": )" << i << "}\n";
  }
  ASSERT_EQ(T({"import", o, "c", Dir("rows.jsonl")}).exit_code, 0);
  const size_t before = so->log().size();  // the pairing's connection is logged there
  RunResult r;
  std::thread sync([&] { r = T({"sync", x, "--peer", addr}); });
  // Stopped as soon as the session begins: 200,000 fields take it far longer to send.
  const bool began =
      WaitFor([&] { return so->log().find("(incoming)", before) != std::string::npos; });
  EXPECT_EQ(so->Kill(SIGTERM), 0);
  sync.join();
  ASSERT_TRUE(began) << so->log();
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("the peer ended the session before this side caught up"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("handshake"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("did not catch up"), std::string::npos) << r.err;
}

// A device that may not read a collection: what it reports it holds covers what it takes,
// so deletions are collected at once (not after the horizon), and its later sessions
// are not rebases. It collects them itself, too, in what it takes.
TEST_F(Net, ADeviceThatMayNotReadACollectionHoldsNoCollectionBack) {
  std::string o = Init("o"), t = Init("t");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "t", addr);
  ASSERT_EQ(T({"permit", o, "secrets", DeviceOf(t), "none"}).exit_code, 0);
  for (const auto& c : {"secrets", "products"})
    for (const auto& id : {"r1", "r2"}) ASSERT_EQ(T({"put", o, c, id, "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"del", o, "products", "r1"}).exit_code, 0);
  ASSERT_EQ(T({"del", o, "secrets", "r1"}).exit_code, 0);
  for (int i = 0; i < 2; ++i) ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);
  auto gc = T({"gc", o});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("collected 2 deleted field states"), std::string::npos) << gc.out;
  for (int i = 0; i < 2; ++i) {
    auto r = T({"sync", t, "--peer", addr});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err.find("rebased"), std::string::npos) << r.err;
  }
  gc = T({"gc", t});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("collected 1 deleted field states"), std::string::npos) << gc.out;
  auto r = T({"sync", t, "--peer", addr});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("rebased"), std::string::npos) << r.err;
  EXPECT_EQ(T({"get", t, "products", "r2"}).exit_code, 0);
  EXPECT_NE(T({"get", t, "products", "r1"}).exit_code, 0);
  EXPECT_NE(T({"get", t, "secrets", "r2"}).exit_code, 0);
}

// A till that may not read secrets syncs with the office and with a kitchen device that
// may not read orders either (so holds none). Each sends the till the same collections,
// named by the permits, not those it happens to hold ("every collection but secrets";
// or, where the till may read only collections permits name, those), so what the till
// bears out of one holds for the other: after the office collects, neither session is
// a rebase.
TEST_F(Net, PeersThatHoldDifferentCollectionsCauseNoRebase) {
  for (const bool named_only : {false, true}) {
    SCOPED_TRACE(named_only ? "reads only what permits name" : "reads all but secrets");
    const std::string n = named_only ? "2" : "1";
    std::string o = Init("o" + n), k = Init("k" + n), t = Init("t" + n);
    std::string addr, kaddr;
    auto so = Listen("o" + n, {}, &addr);
    Pair("o" + n, "k" + n, addr);
    Pair("o" + n, "t" + n, addr);
    if (named_only) {
      for (const auto& c : {"products", "orders"})
        ASSERT_EQ(T({"permit", o, c, DeviceOf(t), "write"}).exit_code, 0);
      ASSERT_EQ(T({"permit", o, "*", DeviceOf(t), "none"}).exit_code, 0);
    } else {
      ASSERT_EQ(T({"permit", o, "secrets", DeviceOf(t), "none"}).exit_code, 0);
    }
    for (const auto& c : {"secrets", "orders"})
      ASSERT_EQ(T({"permit", o, c, DeviceOf(k), "none"}).exit_code, 0);
    for (const auto& c : {"secrets", "products", "orders"})
      for (const auto& id : {"r1", "r2"}) ASSERT_EQ(T({"put", o, c, id, "v=1"}).exit_code, 0);
    ASSERT_EQ(T({"del", o, "products", "r1"}).exit_code, 0);
    ASSERT_EQ(T({"del", o, "orders", "r1"}).exit_code, 0);
    for (int i = 0; i < 2; ++i)
      for (const auto& dir : {k, t}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
    auto sk = Listen("k" + n, {}, &kaddr);
    ASSERT_EQ(T({"sync", t, "--peer", kaddr}).exit_code, 0);
    ASSERT_EQ(T({"sync", t, "--peer", addr}).exit_code, 0);  // its report reaches o
    EXPECT_NE(T({"get", k, "orders", "r2"}).exit_code, 0);
    auto gc = T({"gc", o});
    ASSERT_EQ(gc.exit_code, 0) << gc.err;
    EXPECT_NE(gc.out.find("collected 2 deleted field states"), std::string::npos) << gc.out;
    for (int i = 0; i < 2; ++i)
      for (const auto& peer : {kaddr, addr}) {
        auto r = T({"sync", t, "--peer", peer});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.err.find("rebased"), std::string::npos) << peer << ": " << r.err;
      }
    EXPECT_EQ(T({"get", t, "orders", "r2"}).exit_code, 0);
    EXPECT_NE(T({"get", t, "orders", "r1"}).exit_code, 0);
    EXPECT_NE(T({"get", t, "secrets", "r2"}).exit_code, 0);
  }
}

// A live session sends a device that may not read secrets every other collection, new
// ones too. Once it may read no collection a permit does not name, the session ends and
// the next one sends only what it may read: a collection made later never reaches it.
TEST_F(Net, ALiveSessionEndsWhenUnnamedCollectionsBecomeUnreadable) {
  std::string o = Init("o"), t = Init("t");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "t", addr);
  const std::string td = DeviceOf(t);
  ASSERT_EQ(T({"permit", o, "secrets", td, "none"}).exit_code, 0);
  ASSERT_EQ(T({"put", o, "products", "r1", "v=1"}).exit_code, 0);
  Serve st({t, "--peer", addr}, Log("t"));
  ASSERT_TRUE(WaitFor([&] {
    return T({"get", t, "products", "r1"}).exit_code == 0;
  })) << ReadFile(Log("t"));
  ASSERT_EQ(T({"put", o, "orders", "r1", "v=1"}).exit_code, 0);  // made during the session
  ASSERT_TRUE(WaitFor([&] {
    return T({"get", t, "orders", "r1"}).exit_code == 0;
  })) << ReadFile(Log("t"));

  // Every collection there is named by a permit: what it may not read stays the same set.
  for (const auto& c : {"products", "orders"})
    ASSERT_EQ(T({"permit", o, c, td, "read"}).exit_code, 0);
  ASSERT_EQ(T({"permit", o, "*", td, "none"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    return so->log().find("changed: ending the session (a new one applies them)") !=
           std::string::npos;
  })) << so->log();
  ASSERT_EQ(T({"put", o, "notes", "n1", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", o, "products", "r2", "v=2"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] {
    return T({"get", t, "products", "r2"}).exit_code == 0;
  })) << ReadFile(Log("t"));
  EXPECT_NE(T({"get", t, "notes", "n1"}).exit_code, 0);
  EXPECT_NE(T({"get", t, "secrets", "r1"}).exit_code, 0);
}

// A revocation rotates the group key. The revoked device, which keeps the old key, is
// refused at the first gate once the grace period is over; a member that was offline
// during the rotation gets the new key at its next session (within the grace period),
// and then passes the first gate with it alone.
TEST_F(Net, ARevocationRotatesTheGroupKey) {
  std::string o = Init("o"), a = Init("a"), b = Init("b"), x = Init("x");
  std::string addr;
  auto so = Listen("o", {}, &addr);
  Pair("o", "a", addr, "admin");
  Pair("o", "b", addr);
  Pair("o", "x", addr);
  for (const auto& dir : {a, b, x}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  // The current key: the whole file before any rotation, after "TNDMGK02" once rotated.
  auto current = [](const std::string& dir) {
    std::string f = ReadFile(dir + "/group.key");
    return f.size() == 32 ? f : f.substr(8, 32);
  };
  const std::string old_key = current(o);
  ASSERT_EQ(current(b), old_key);

  // a (an admin) revokes x: a new key, sealed to o, a and b; it reaches o by a's sync.
  auto rv = T({"revoke", a, DeviceOf(x)});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  EXPECT_NE(rv.err.find("new group key"), std::string::npos) << rv.err;
  const std::string new_key = current(a);
  EXPECT_NE(new_key, old_key);
  // a dials o with the new key, is refused at the first gate, and retries with the old.
  auto sync_a = T({"sync", a, "--peer", addr});
  ASSERT_EQ(sync_a.exit_code, 0) << sync_a.err;
  EXPECT_TRUE(WaitFor([&] { return current(o) == new_key; })) << so->log();
  EXPECT_NE(so->log().find("the group key was rotated"), std::string::npos) << so->log();

  // Within the grace period x still passes the first gate, and is refused by identity.
  auto r = T({"sync", x, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(WaitFor([&] { return so->log().find("has been revoked") != std::string::npos; }));

  // No grace: x fails at the first gate (no Diffie-Hellman spent on it); so would b,
  // which still has the old key.
  so.reset();
  const size_t logged = ReadFile(Log("o")).size();  // the daemons share o's log file
  auto strict = Listen("o", {"--key-grace", "0"}, &addr);
  r = T({"sync", x, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(WaitFor([&] {
    return strict->log().find("does not prove the pre-shared key", logged) != std::string::npos;
  })) << strict->log();
  EXPECT_EQ(strict->log().find("has been revoked", logged), std::string::npos) << strict->log();

  // With the grace period, b (offline during the rotation) syncs with the old key, gets
  // the new one, and from then on needs no grace.
  strict.reset();
  auto graceful = Listen("o", {}, &addr);
  auto sync_b = T({"sync", b, "--peer", addr});
  ASSERT_EQ(sync_b.exit_code, 0) << sync_b.err;
  EXPECT_EQ(current(b), new_key);
  graceful.reset();
  auto strict2 = Listen("o", {"--key-grace", "0"}, &addr);
  sync_b = T({"sync", b, "--peer", addr});
  EXPECT_EQ(sync_b.exit_code, 0) << sync_b.err;
  EXPECT_EQ(current(x), old_key);  // the revoked device never learns it
}

// The current group key of the device in `dir`: the whole file before any rotation,
// after "TNDMGK02" once rotated.
std::string CurrentKey(const std::string& dir) {
  std::string f = ReadFile(dir + "/group.key");
  return f.size() == 32 ? f : f.substr(8, 32);
}

// Two admins revoke two devices at once, each sealing its new key to the device the other
// revokes: whichever key counts, a revoked device holds it. The owner's daemon sees that
// and rotates the key again, sealed to the members in good standing alone.
TEST_F(Net, ConcurrentRevocationsLeaveNoRevokedDeviceWithTheKey) {
  std::string addr;
  auto so = Founded({"o", "a1", "a2", "m", "n"}, &addr);
  const std::string o = Dir("o"), a1 = Dir("a1"), a2 = Dir("a2"), m = Dir("m"), n = Dir("n");
  for (const auto& admin : {a1, a2})
    ASSERT_EQ(T({"role", o, DeviceOf(admin), "admin"}).exit_code, 0);
  for (const auto& dir : {a1, a2, m, n}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"revoke", a1, DeviceOf(m)}).exit_code, 0);
  ASSERT_EQ(T({"revoke", a2, DeviceOf(n)}).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(SyncWith(m, "a2"));  // m takes a2's key, sealed to it
  ASSERT_NO_FATAL_FAILURE(SyncWith(n, "a1"));
  ASSERT_NE(CurrentKey(m), CurrentKey(n));
  for (const auto& dir : {a1, a2}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    return so->log().find("revoked since: rotated it") != std::string::npos;
  })) << so->log();
  for (const auto& dir : {a1, a2}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  const std::string key = CurrentKey(o);
  EXPECT_EQ(CurrentKey(a1), key);
  EXPECT_EQ(CurrentKey(a2), key);
  EXPECT_NE(CurrentKey(m), key);
  EXPECT_NE(CurrentKey(n), key);
}

// An admin demoted while it revoked a member: its revocation and its new key do not count,
// and it had taken that key itself. The owner's daemon rotates the key, so that the admin
// and the member it meant to revoke end with the others' key.
TEST_F(Net, AKeyFromARotationThatDoesNotCountIsReplaced) {
  std::string addr;
  auto so = Founded({"o", "a", "m"}, &addr);
  const std::string o = Dir("o"), a = Dir("a"), m = Dir("m");
  ASSERT_EQ(T({"role", o, DeviceOf(a), "admin"}).exit_code, 0);
  for (const auto& dir : {a, m}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"role", o, DeviceOf(a), "member"}).exit_code, 0);
  ASSERT_EQ(T({"revoke", a, DeviceOf(m)}).exit_code, 0);
  const std::string voided = CurrentKey(a);
  ASSERT_NE(voided, CurrentKey(o));
  ASSERT_EQ(T({"sync", a, "--peer", addr}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] {
    return so->log().find("a statement that does not count: rotated it") != std::string::npos;
  })) << so->log();
  for (const auto& dir : {a, m}) ASSERT_EQ(T({"sync", dir, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(CurrentKey(a), CurrentKey(o));
  EXPECT_EQ(CurrentKey(m), CurrentKey(o));
  EXPECT_NE(CurrentKey(o), voided);
}

// Joining with --merge brings a replica's data, not its old group's members: b, a
// member of c's group, joins a's; a's group never lists c, and c cannot connect to a.
TEST_F(Net, JoiningAnotherGroupBringsDataNotMembers) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string caddr, aaddr;
  {
    auto sc = Listen("c", {}, &caddr);
    Pair("c", "b", caddr);
    ASSERT_EQ(T({"put", b, "notes", "from-b", "v=1"}).exit_code, 0);
    ASSERT_EQ(T({"sync", b, "--peer", caddr}).exit_code, 0);
  }
  ASSERT_EQ(DevicesOf(b).size(), 2u);  // b and c
  auto sa = Listen("a", {}, &aaddr);
  auto code = T({"invite", a, "--address", aaddr});
  ASSERT_EQ(code.exit_code, 0) << code.err;
  EXPECT_EQ(T({"join", b, code.out}).exit_code, 2);  // holds data and trusts c: asked first
  auto j = T({"join", b, code.out, "--merge"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  auto s = T({"sync", b});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(T({"get", a, "notes", "from-b"}).exit_code, 0);  // the data came
  auto devs = DevicesOf(a);
  EXPECT_EQ(devs.size(), 2u);  // a and b
  EXPECT_FALSE(devs.count(DeviceOf(c)));
  EXPECT_EQ(DevicesOf(b).count(DeviceOf(c)), 0u);  // b is in a's group now
  // c has only its old group's key: refused at the first gate.
  auto r = T({"sync", c, "--peer", aaddr});
  EXPECT_EQ(r.exit_code, 1);
}

// A device that joins a founder's group with --merge brings events of its old group's
// writers, which no binding will ever name. The founder, whose daemon learns the
// joiner's binding in the very session that brings those events, must not require
// bound replicas then: a later member would hold them aside for good, and the group
// would never converge.
TEST_F(Net, AMergedJoinersOldWritersKeepTheFounderFromRequiringBindings) {
  std::string x = Init("x"), xm = Init("xm"), y = Init("y"), z = Init("z");
  std::string xaddr, yaddr;
  auto sx = Listen("x", {}, &xaddr);
  Pair("x", "xm", xaddr);
  ASSERT_EQ(T({"put", x, "notes", "fromx", "t=\"x\""}).exit_code, 0);
  ASSERT_EQ(T({"sync", xm, "--peer", xaddr}).exit_code, 0);
  auto sy = Listen("y", {}, &yaddr);
  ASSERT_EQ(T({"put", y, "notes", "fromy", "t=\"y\""}).exit_code, 0);
  auto code = T({"invite", y, "--address", yaddr});
  ASSERT_EQ(code.exit_code, 0) << code.err;
  ASSERT_EQ(T({"join", xm, code.out, "--merge"}).exit_code, 0);
  ASSERT_EQ(T({"sync", xm, "--peer", yaddr}).exit_code, 0);
  Pair("y", "z", yaddr);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(T({"sync", z, "--peer", yaddr}).exit_code, 0);
    ASSERT_EQ(T({"sync", xm, "--peer", yaddr}).exit_code, 0);
  }
  EXPECT_EQ(T({"devices", y}).out.find("bound replicas required"), std::string::npos);
  EXPECT_EQ(T({"quarantine", z}).out, "");
  const std::string dump = T({"dump", y}).out;
  EXPECT_NE(dump.find("fromx"), std::string::npos);
  EXPECT_EQ(T({"dump", xm}).out, dump);
  EXPECT_EQ(T({"dump", z}).out, dump);
}

// A reader's writes reach nobody: joining as one with records to merge would leave them
// here alone for good, with every sync saying all is well.
TEST_F(Net, JoiningWithRecordsAsAReaderIsRefused) {
  std::string a = Init("a"), m = Init("m"), e = Init("e");
  ASSERT_EQ(T({"put", m, "items", "mine", "v=1"}).exit_code, 0);
  auto code = T({"invite", a, "--role", "reader"});
  ASSERT_EQ(code.exit_code, 0) << code.err;
  auto r = T({"join", m, code.out, "--merge"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("makes it a reader"), std::string::npos) << r.err;
  EXPECT_EQ(T({"join", e, code.out}).exit_code, 0);  // an empty replica may read
}

// The founder counts from when it founded the group: until it reports, it holds
// collection back as any new member does, instead of passing for silent since 1970.
TEST_F(Net, TheFounderHoldsCollectionBackUntilItReports) {
  std::string a = Init("a"), b = Init("b");
  WriteMany(a, "i", 3);
  std::string addr;
  auto sa = Listen("a", {"--collect-every", "0"}, &addr);
  Pair("a", "b", addr);
  sa.reset();  // a stops before it ever reports
  ASSERT_EQ(T({"del", b, "items", "i0"}).exit_code, 0);
  auto gc = T({"gc", b, "--json"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  const json j = json::parse(gc.out);
  EXPECT_EQ(j["collected"], 0) << gc.out;
  ASSERT_EQ(j["members"].size(), 2u) << gc.out;
  for (const auto& m : j["members"]) {
    if (m["self"]) continue;
    EXPECT_FALSE(m["stale"]) << gc.out;
    EXPECT_TRUE(m["holds_back"]) << gc.out;
  }
  EXPECT_NE(T({"devices", b}).out.find("founder  no report yet: holds collection back"),
            std::string::npos)
      << T({"devices", b}).out;
}

// Deleted records are collected once every member reports holding the deletions, and
// not before; a backup restored from before them does not bring them back, and is itself
// rebased on the first sync.
TEST_F(Net, DeletionsAreCollectedOnceEveryMemberHoldsThem) {
  std::string a = Init("a"), b = Init("b");
  WriteMany(a, "i", 30);
  std::string addr;
  auto sa = Listen("a", {"--collect-every", "0"}, &addr);
  Pair("a", "b", addr);
  ASSERT_EQ(T({"backup", b, Dir("b-before")}).exit_code, 0);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(T({"del", a, "items", "i" + std::to_string(i)}).exit_code, 0);

  // b has not reported holding the deletions: nothing goes.
  auto gc = T({"gc", a, "--json"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  auto j = json::parse(gc.out);
  EXPECT_EQ(j["collected"], 0);
  ASSERT_EQ(j["members"].size(), 2u);
  for (const auto& m : j["members"]) EXPECT_EQ(m["holds_back"], !m["self"]) << gc.out;

  // b receives the deletions (and reports so), then its report reaches a.
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  EXPECT_NE(T({"devices", a}).out.find("reported 20"), std::string::npos);
  gc = T({"gc", a, "--json"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  j = json::parse(gc.out);
  EXPECT_EQ(j["collected"], 40) << gc.out;  // two fields each
  EXPECT_GT(j["bytes"], 0);
  EXPECT_EQ(T({"check", a}).exit_code, 0);
  EXPECT_EQ(CountItems(a), 10u);
  EXPECT_FALSE(Has(a, "items", "i3"));
  EXPECT_TRUE(Has(a, "items", "i23"));
  gc = T({"gc", a});
  EXPECT_NE(gc.out.find("collected 0 deleted field states"), std::string::npos) << gc.out;

  // b collects too once a's report reaches it; both still read the same.
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  j = json::parse(T({"gc", b, "--json"}).out);
  EXPECT_EQ(j["collected"], 40) << j.dump();
  EXPECT_EQ(T({"ls", a, "items"}).out, T({"ls", b, "items"}).out);

  // b restored from before the deletions syncs with a: the deleted records stay deleted
  // on a, and a later write of the restored device arrives.
  ASSERT_EQ(T({"restore", Dir("b-before"), Dir("b2")}).exit_code, 0);
  ASSERT_EQ(T({"put", Dir("b2"), "items", "late", "n=1"}).exit_code, 0);
  ASSERT_EQ(T({"sync", Dir("b2"), "--peer", addr}).exit_code, 0);
  EXPECT_EQ(CountItems(a), 11u);
  EXPECT_FALSE(Has(a, "items", "i3"));
  EXPECT_TRUE(Has(a, "items", "late"));
  EXPECT_EQ(T({"check", a}).exit_code, 0);
  // ... and the restored device itself was rebased: it dropped what a had collected.
  EXPECT_EQ(CountItems(Dir("b2")), 11u);
  EXPECT_FALSE(Has(Dir("b2"), "items", "i3"));
  EXPECT_EQ(T({"ls", a, "items"}).out, T({"ls", Dir("b2"), "items"}).out);
  EXPECT_EQ(T({"check", Dir("b2")}).exit_code, 0);
  EXPECT_NE(sa->log().find("sent it the whole state"), std::string::npos) << sa->log();
  // Its status says so (the daemon publishes it within a second).
  EXPECT_TRUE(WaitFor([&] {
    uint64_t served = 0;
    const json status = StatusOf(a);
    for (const auto& p : status["peers"]) served += p.value("rebases_served", uint64_t{0});
    return served == 1;
  })) << StatusOf(a).dump();
  EXPECT_NE(T({"status", a}).out.find("rebased 0, served 1"), std::string::npos);
}

// A member whose permissions are narrowed collected deletions; a device restored from
// before them is rebased on it only where that member may write, without taking its
// collected vector in: the next session with it rebases again, until the founder (who
// may write everywhere) rebases the restored device.
TEST_F(Net, ARebaseOnAMemberWithNarrowedPermissionsIsDoneAgainUntilTheFounderDoesIt) {
  std::string o = Init("o"), b = Init("b"), c = Init("c");
  WriteMany(o, "i", 30);
  std::string oaddr, baddr;
  auto so = Listen("o", {"--collect-every", "0"}, &oaddr);
  Pair("o", "b", oaddr);
  Pair("o", "c", oaddr);
  ASSERT_EQ(T({"permit", o, "prices", "member", "read"}).exit_code, 0);
  ASSERT_EQ(T({"sync", c, "--peer", oaddr}).exit_code, 0);
  ASSERT_EQ(T({"backup", c, Dir("c-before")}).exit_code, 0);
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(T({"del", o, "items", "i" + std::to_string(i)}).exit_code, 0);
  // Every member holds the deletions: o collects them, and b once o's report reaches it.
  for (const auto& dir : {c, b, c, b}) ASSERT_EQ(T({"sync", dir, "--peer", oaddr}).exit_code, 0);
  for (const auto& dir : {o, b}) {
    if (dir == b) {
      ASSERT_EQ(T({"sync", b, "--peer", oaddr}).exit_code, 0);
    }
    auto gc = T({"gc", dir, "--json"});
    ASSERT_EQ(gc.exit_code, 0) << gc.err;
    ASSERT_EQ(json::parse(gc.out)["collected"], 40) << dir << ": " << gc.out;
  }

  auto sb = Listen("b", {"--collect-every", "0"}, &baddr);
  const std::string c2 = Dir("c2");
  ASSERT_EQ(T({"restore", Dir("c-before"), c2}).exit_code, 0);
  ASSERT_EQ(CountItems(c2), 30u);
  auto served = [&](Serve& s) {
    const std::string log = s.log();
    size_t n = 0;
    for (size_t at = 0; (at = log.find("sent it the whole state", at)) != std::string::npos; ++at)
      ++n;
    return n;
  };
  for (size_t round = 1; round <= 2; ++round) {
    ASSERT_EQ(T({"sync", c2, "--peer", baddr}).exit_code, 0);
    EXPECT_EQ(CountItems(c2), 10u) << "b may write items: what it removed goes";
    EXPECT_EQ(served(*sb), round) << sb->log();
  }
  ASSERT_EQ(T({"sync", c2, "--peer", oaddr}).exit_code, 0);
  EXPECT_EQ(served(*so), 1u) << so->log();
  ASSERT_EQ(T({"sync", c2, "--peer", baddr}).exit_code, 0);
  EXPECT_EQ(served(*sb), 2u) << "rebased for good by the founder";
  EXPECT_EQ(T({"ls", o, "items"}).out, T({"ls", c2, "items"}).out);
  EXPECT_EQ(T({"ls", b, "items"}).out, T({"ls", c2, "items"}).out);
}

}  // namespace
}  // namespace tandem::testing
