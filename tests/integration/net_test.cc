// Secure networking with real processes on loopback: pairing, the daemon's modes,
// refusals, a tampering man-in-the-middle, and a line of three daemons with a restart.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "process.h"
#include "tandem/device/device.h"
#include "tandem/net/group.h"
#include "tandem/storage/replica.h"

namespace tandem::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

RunResult T(std::vector<std::string> args) {
  args.insert(args.begin(), TANDEM_BIN);
  return Run(args);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WaitFor(const std::function<bool()>& pred, int timeout_ms = 20000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

// A `tandem serve` process whose output goes to a log file (never a full pipe).
class Serve {
 public:
  Serve(std::vector<std::string> args, std::string log) : args_(std::move(args)), log_(log) {
    Start();
  }
  ~Serve() { Kill(SIGKILL); }
  void Start() {
    std::vector<std::string> a{TANDEM_BIN, "serve"};
    a.insert(a.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) abort();
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) abort();
    if (pid_ == 0) {
      // The daemon dies with the test, even if the test crashes (no stray daemons).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      dup2(fd, 1);
      dup2(fd, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fd);
  }
  // Kills and waits; returns the exit status (128+signal if killed by it).
  int Kill(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int st = 0;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  pid_t pid() const { return pid_; }
  std::string log() const { return ReadFile(log_); }
  std::vector<std::string>& args() { return args_; }

 private:
  std::vector<std::string> args_;
  std::string log_;
  pid_t pid_ = -1;
};

// The daemon's status file once the given process has written it with a listen address.
json StatusOf(const std::string& dir) {
  json j = json::parse(ReadFile(dir + "/daemon.json"), nullptr, false);
  return j.is_discarded() ? json::object() : j;
}
std::string ListenAddress(const std::string& dir, const Serve& s) {
  std::string addr;
  WaitFor([&] {
    json j = StatusOf(dir);
    if (j.value("pid", 0) != s.pid()) return false;
    addr = j.value("listen", "");
    return !addr.empty();
  });
  EXPECT_FALSE(addr.empty()) << s.log();
  return addr;
}

std::string Dump(const std::string& dir) { return T({"dump", dir}).out; }

bool Has(const std::string& dir, const std::string& coll, const std::string& id) {
  return T({"get", dir, coll, id}).exit_code == 0;
}

// Writes n records of two fields each in one transaction, as an app would.
void WriteMany(const std::string& dir, const std::string& prefix, int n) {
  auto r = storage::OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int start = 0; start < n; start += 1000) {
    ASSERT_TRUE((*r)->Write([&](engine::Batch& b) -> Status {
                      for (int i = start; i < std::min(n, start + 1000); ++i) {
                        std::string id = prefix + std::to_string(i);
                        TANDEM_RETURN_IF_ERROR(b.Put("items", id, "n", engine::Value(int64_t{i})));
                        TANDEM_RETURN_IF_ERROR(
                            b.Put("items", id, "label", engine::Value(std::string(40, 'x'))));
                      }
                      return Status::Ok();
                    })
                    .ok());
  }
}

size_t CountItems(const std::string& dir) {
  auto r = storage::OpenReplica(dir);
  if (!r.ok()) return 0;
  size_t n = 0;
  (void)(*r)->Scan("items", "", [&](const engine::Record&) {
    ++n;
    return true;
  });
  return n;
}

// A TCP connection to 127.0.0.1:port, from the loopback address `from`; -1 on failure.
int ConnectLoopback(uint16_t port, const char* from = "127.0.0.1") {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  inet_pton(AF_INET, from, &src.sin_addr);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  dst.sin_port = htons(port);
  if (bind(s, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0 ||
      connect(s, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) {
    close(s);
    return -1;
  }
  return s;
}

class Net : public ::testing::Test {
 protected:
  std::string Dir(const std::string& name) { return tmp_ / name; }
  std::string Log(const std::string& name) { return tmp_ / (name + ".log"); }
  std::string Init(const std::string& name) {
    auto r = T({"init", Dir(name)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Dir(name);
  }
  // Starts `serve DIR --listen 127.0.0.1:0 extra...`; returns its address.
  std::unique_ptr<Serve> Listen(const std::string& name, std::vector<std::string> extra = {},
                                std::string* address = nullptr) {
    std::vector<std::string> args{Dir(name), "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto s = std::make_unique<Serve>(args, Log(name));
    std::string a = ListenAddress(Dir(name), *s);
    if (address) *address = a;
    return s;
  }
  // An invite of the device in `dir` expiring at `expires_ms`, with the address hint
  // `address`, stored there as `tandem invite` would.
  net::Invite StoredInvite(const std::string& dir, uint64_t expires_ms,
                           const std::string& address) {
    auto self = net::LoadIdentity(dir + "/identity.key");
    if (!self.ok()) {
      ADD_FAILURE() << self.status().ToString();
      return {};
    }
    net::Invite inv{self->public_key, net::NewGroupKey(), expires_ms, {address}};
    EXPECT_TRUE(net::StoreInvite(device::Layout(dir).group(), inv).ok());
    return inv;
  }
  // Pairs `joiner` with the daemon at `address` serving `inviter`, by a one-shot sync.
  void Pair(const std::string& inviter, const std::string& joiner, const std::string& address,
            const std::string& role = "member") {
    auto code = T({"invite", Dir(inviter), "--address", address, "--role", role});
    ASSERT_EQ(code.exit_code, 0) << code.err;
    auto j = T({"join", Dir(joiner), code.out});
    ASSERT_EQ(j.exit_code, 0) << j.err;
    auto s = T({"sync", Dir(joiner)});  // the invite's address hint
    ASSERT_EQ(s.exit_code, 0) << s.err;
  }
  TempDir tmp_;
};

TEST_F(Net, PairSyncAndTheSecondUseOfAnInviteIsRefused) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  ASSERT_EQ(T({"put", a, "items", "1", "name=\"apple\""}).exit_code, 0);
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  auto code = T({"invite", a});  // the hint comes from the running daemon
  ASSERT_EQ(code.exit_code, 0) << code.err;
  EXPECT_EQ(std::count(code.out.begin(), code.out.end(), '\n'), 1) << "code alone on stdout";
  auto inv = net::DecodeInvite(code.out);
  ASSERT_TRUE(inv.ok());
  ASSERT_EQ(inv->addresses, std::vector<std::string>{addr});

  ASSERT_EQ(T({"join", b, code.out}).exit_code, 0);
  auto s = T({"sync", b});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(Dump(b), Dump(a));
  EXPECT_NE(Dump(b).find("apple"), std::string::npos);
  // Both list both devices; the joiner now holds the group key.
  auto da = T({"devices", a, "--json"}).out, db = T({"devices", b, "--json"}).out;
  EXPECT_EQ(std::count(da.begin(), da.end(), '\n'), 2) << da;
  EXPECT_EQ(std::count(db.begin(), db.end(), '\n'), 2) << db;
  // Each device's replica is bound to it, at both.
  for (const auto& dir : {a, b}) {
    std::istringstream lines(T({"devices", dir, "--json"}).out);
    for (std::string line; std::getline(lines, line);) {
      const json j = json::parse(line);
      ASSERT_EQ(j["replicas"].size(), 1u) << j.dump();
      EXPECT_EQ(j["replicas"][0]["bound"], true) << dir << ": " << j.dump();
    }
  }
  EXPECT_EQ(ReadFile(a + "/group.key"), ReadFile(b + "/group.key"));
  EXPECT_FALSE(fs::exists(b + "/join.code"));

  // The same code again, from another device: refused, and c receives nothing.
  ASSERT_EQ(T({"join", c, code.out}).exit_code, 0);
  s = T({"sync", c});
  EXPECT_EQ(s.exit_code, 1) << s.err;
  EXPECT_NE(s.err.find("closed the connection during the handshake"), std::string::npos) << s.err;
  EXPECT_EQ(Dump(c), "");
  EXPECT_NE(sa->log().find("invite: no open invite"), std::string::npos) << sa->log();
  EXPECT_EQ(T({"devices", a, "--json"}).out, da);
}

// Ten 100 KB elements added to one set from the CLI make one field state larger than
// any message: it syncs in pieces, and the changes after it still flow.
TEST_F(Net, ASetLargerThanAMessageSyncsAndBlocksNothing) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  for (int i = 0; i < 10; ++i) {
    auto r = T({"add", a, "docs", "d1", "photos",
                "\"" + std::string(100'000, static_cast<char>('a' + i)) + "\""});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_EQ(T({"put", a, "docs", "d2", "title=\"after\""}).exit_code, 0);
  auto s = T({"sync", b, "--peer", addr});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(Dump(b), Dump(a));
  EXPECT_NE(Dump(b).find("after"), std::string::npos);
  // And back: b's own change after the large field reaches a.
  ASSERT_EQ(T({"put", b, "docs", "d3", "title=\"from b\""}).exit_code, 0);
  s = T({"sync", b, "--peer", addr});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(Dump(a).find("from b"), std::string::npos);
}

// A joiner whose clock runs a day ahead of the inviter's: the code says it expired an
// hour ago by the joiner's clock, but by the inviter's it has a day left, and it joins.
TEST_F(Net, AnInviteIsJudgedByTheInvitersClock) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  const uint64_t now = storage::SystemClockMs();
  const net::Invite stored = StoredInvite(a, now + 24 * 3600 * 1000, addr);
  net::Invite seen = stored;  // the same invite, its expiry as a clock a day ahead reads it
  seen.expires_ms = now - 3600 * 1000;
  auto j = T({"join", b, net::EncodeInvite(seen)});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  EXPECT_NE(j.err.find("expired"), std::string::npos) << j.err;
  ASSERT_EQ(T({"put", a, "products", "p1", "name=\"tea\""}).exit_code, 0);
  auto s = T({"sync", b});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(Dump(b).find("tea"), std::string::npos) << Dump(b);
  const std::string dev_b = json::parse(T({"info", b}).out)["device_id"];
  EXPECT_NE(T({"devices", a}).out.find(dev_b), std::string::npos);
}

TEST_F(Net, ExpiredAndMalformedInvitesAreRefused) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  const net::Invite inv = StoredInvite(a, storage::SystemClockMs() - 1, addr);
  std::string code = net::EncodeInvite(inv);
  // The joiner only notes what its own clock says: the inviter judges.
  auto j = T({"join", b, code});
  EXPECT_EQ(j.exit_code, 0) << j.err;
  EXPECT_NE(j.err.find("expired"), std::string::npos) << j.err;
  EXPECT_EQ(T({"sync", b}).exit_code, 1);
  EXPECT_NE(sa->log().find("expired"), std::string::npos) << sa->log();
  EXPECT_EQ(Dump(b), "");
  // A pending join can be given up.
  auto cancel = T({"join", b, "--cancel"});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_FALSE(fs::exists(b + "/join.code"));
  EXPECT_EQ(T({"join", b, "--cancel"}).exit_code, 1);  // nothing pending
  EXPECT_EQ(T({"join", b}).exit_code, 2);
  EXPECT_EQ(T({"join", b, code, "--cancel"}).exit_code, 2);
  for (std::string bad :
       std::vector<std::string>{"", "hello", "tandem-invite-", code.substr(0, code.size() - 4)}) {
    auto r = T({"join", b, bad});
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_EQ(r.err.rfind("tandem: ", 0), 0u) << r.err;
  }
}

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
  EXPECT_NE(T({"revoke", a, od}).err.find("as high as this device"), std::string::npos);

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

  // The admin revokes the member: the owner refuses it once it has the revocation.
  auto rv = T({"revoke", a, md});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
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

TEST_F(Net, AttachmentsSyncEagerlyOrWhenReadAndAreCollected) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string data(3'000'000, '\0');
  std::mt19937 rng(5);
  for (auto& ch : data) ch = static_cast<char>(rng());
  const std::string file = Dir("photo.png");
  std::ofstream(file, std::ios::binary) << data;
  std::string addr;
  auto sa = Listen("a", {"--collect-every", "0"}, &addr);
  Pair("a", "b", addr);
  Pair("a", "c", addr);
  auto att = T({"attach", a, "photos", "p1", "img", file});
  ASSERT_EQ(att.exit_code, 0) << att.err;
  const json ref = json::parse(att.out);
  EXPECT_EQ(ref["size"], 3'000'000);
  EXPECT_EQ(ref["type"], "image/png");
  const std::string hash = ref["$blob"];
  EXPECT_EQ(json::parse(T({"get", a, "photos", "p1"}).out)["img"], ref);

  // Eager (the default): one sync brings the blob, verified.
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  auto got = T({"blob", b, hash});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(got.out == data);
  EXPECT_NE(sa->log().find("sent 1 blob to"), std::string::npos) << sa->log();

  // Lazy: the field arrives, the blob waits for a reader.
  ASSERT_EQ(T({"sync", c, "--peer", addr, "--blobs", "lazy"}).exit_code, 0);
  EXPECT_EQ(json::parse(T({"get", c, "photos", "p1"}).out)["img"], ref);
  EXPECT_EQ(json::parse(T({"blobs", c, "--json"}).out)["state"], "wanted");
  auto early = T({"blob", c, hash, "--wait", "0"});
  EXPECT_EQ(early.exit_code, 1);
  EXPECT_NE(early.err.find("not here yet"), std::string::npos) << early.err;
  {
    Serve sc({c, "--peer", addr, "--blobs", "lazy"}, Log("c-serve"));
    got = T({"blob", c, hash, "--wait", "60"});
    ASSERT_EQ(got.exit_code, 0) << got.err << sc.log();
    EXPECT_TRUE(got.out == data);
  }
  EXPECT_EQ(json::parse(T({"blobs", c, "--json"}).out)["state"], "complete");

  // The other way: b attaches, a (serving) fetches it in b's session.
  ASSERT_EQ(T({"attach", b, "docs", "invoice", "pdf", file, "--type", "application/pdf"}).exit_code,
            0);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  EXPECT_EQ(T({"blobs", a}).out.find("wanted"), std::string::npos) << T({"blobs", a}).out;

  // Bad input: a malformed hash, an unknown one, a missing file.
  EXPECT_EQ(T({"blob", a, "xyz"}).exit_code, 2);
  EXPECT_EQ(T({"blob", a, std::string(64, '0')}).exit_code, 1);
  EXPECT_EQ(T({"attach", a, "photos", "p2", "img", Dir("no-such-file")}).exit_code, 2);

  // Collection: once no field references the blob and every member holds that, it goes.
  ASSERT_EQ(T({"put", a, "photos", "p1", "img=0"}).exit_code, 0);
  ASSERT_EQ(T({"put", a, "docs", "invoice", "pdf=0"}).exit_code, 0);
  auto gc = json::parse(T({"gc", a, "--json"}).out);
  EXPECT_EQ(gc["blobs_collected"], 0);
  EXPECT_EQ(gc["blobs_released"], 1) << gc.dump();  // both are one blob: the same bytes
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
    ASSERT_EQ(T({"sync", c, "--peer", addr}).exit_code, 0);
  }
  gc = json::parse(T({"gc", a, "--json"}).out);
  EXPECT_EQ(gc["blobs_collected"], 1) << gc.dump();
  EXPECT_EQ(gc["blob_bytes"], 3'000'000);
  EXPECT_EQ(gc["chunks_freed"], 6);
  EXPECT_EQ(T({"blob", a, hash}).exit_code, 1);
  EXPECT_EQ(T({"blobs", a}).out, "");
  EXPECT_EQ(T({"check", a}).exit_code, 0);
}

TEST_F(Net, StrangersWrongKeysAndRevokedDevicesGetNoData) {
  std::string a = Init("a"), b = Init("b"), c = Init("c"), d = Init("d"), e = Init("e");
  ASSERT_EQ(T({"put", a, "items", "1", "name=\"apple\""}).exit_code, 0);
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  Pair("a", "c", addr);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);  // b learns of c

  // A stranger (its own group key): dropped at the first message, however often it
  // tries (a refused handshake gives its slot back: members on the same address are
  // never locked out).
  RunResult r;
  for (int i = 0; i < 20; ++i) r = T({"sync", d, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  ASSERT_EQ(T({"sync", c, "--peer", addr}).exit_code, 0);
  EXPECT_NE(r.err.find("closed the connection during the handshake"), std::string::npos) << r.err;
  EXPECT_NE(sa->log().find("does not prove the pre-shared key"), std::string::npos) << sa->log();
  EXPECT_EQ(Dump(d), "");

  // The right group key (leaked), but not a member. (e trusts a, or e itself would
  // refuse a first: the check is mutual.)
  fs::copy_file(a + "/group.key", e + "/group.key", fs::copy_options::overwrite_existing);
  {
    auto re = storage::OpenReplica(e);
    auto ida = net::LoadIdentity(a + "/identity.key");
    auto ide = net::LoadIdentity(e + "/identity.key");
    ASSERT_TRUE(re.ok() && ida.ok() && ide.ok());
    ASSERT_TRUE(
        net::Grant(**re, device::Layout(e).group(), *ide, ida->public_key, net::Role::kMember, 1)
            .ok());
  }
  r = T({"sync", e, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(sa->log().find("is not a member of this group"), std::string::npos) << sa->log();
  EXPECT_EQ(Dump(e), "");

  // Revoked: refused by the revoker...
  std::string bdev = T({"info", b}).out;
  bdev = json::parse(bdev)["device_id"];
  auto rv = T({"revoke", a, bdev});
  ASSERT_EQ(rv.exit_code, 0) << rv.err;
  ASSERT_EQ(T({"put", a, "items", "2", "name=\"secret\""}).exit_code, 0);
  r = T({"sync", b, "--peer", addr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(sa->log().find("has been revoked"), std::string::npos) << sa->log();
  EXPECT_FALSE(Has(b, "items", "2"));
  EXPECT_NE(T({"devices", a}).out.find("revoked"), std::string::npos);

  // A member that has not heard of the revocation still syncs with b...
  ASSERT_EQ(T({"put", b, "items", "b-after", "v=1"}).exit_code, 0);
  std::string caddr;
  auto sc = Listen("c", {}, &caddr);
  r = T({"sync", b, "--peer", caddr});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(c, "items", "b-after"));
  // ...but b's changes after the revocation's cutoff go no further: a refuses them
  // from c, while c learns of the revocation.
  r = T({"sync", c, "--peer", addr});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(c, "items", "2"));
  EXPECT_FALSE(Has(a, "items", "b-after"));
  EXPECT_TRUE(Has(a, "items", "1"));
  json peers = json::parse(T({"status", a, "--json"}).out)["replicas"];
  uint64_t refused = 0;
  for (const auto& p : peers) refused += p["fields_refused"].get<uint64_t>();
  EXPECT_GE(refused, 1u) << peers.dump();
  // Once the revocation has synced, every member refuses b, in both directions.
  r = T({"sync", b, "--peer", caddr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(sc->log().find("has been revoked"), std::string::npos) << sc->log();
  EXPECT_FALSE(Has(b, "items", "2"));
  std::string baddr;
  auto sb = Listen("b", {}, &baddr);
  r = T({"sync", c, "--peer", baddr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("revoked"), std::string::npos) << r.err;
  EXPECT_FALSE(Has(b, "items", "2"));
}

// A man-in-the-middle that forwards the handshake and stream headers untouched, then
// damages the first encrypted frame in one direction.
// kHoldReply holds the responder's handshake reply (message 2) until Release().
enum class Attack { kNone, kFlip, kReplay, kTruncate, kStall, kSlow, kHoldReply };
class Proxy {
 public:
  Proxy(uint16_t target, Attack attack, bool client_to_server)
      : target_(target), attack_(attack), c2s_(client_to_server) {
    listen_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || listen(listen_, 4)) abort();
    socklen_t len = sizeof sa;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Proxy() {
    stop_ = true;
    shutdown(listen_, SHUT_RDWR);
    if (client_ >= 0) shutdown(client_, SHUT_RDWR);
    if (server_ >= 0) shutdown(server_, SHUT_RDWR);
    close(listen_);
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool attacked() const { return attacked_; }
  // kHoldReply: whether the reply is held (the responder has read message 1), and letting
  // it go.
  bool reply_held() const { return held_; }
  void Release() { release_ = true; }
  // The client's first handshake message, length prefix included (after Serve ran).
  std::string first_message() const {
    std::lock_guard lock(mu_);
    return first_message_;
  }

 private:
  static bool ReadN(int fd, std::string* buf, size_t n) {
    buf->resize(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(fd, buf->data() + got, n - got);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  bool WriteAll(int fd, std::string_view s) {
    if (attack_ == Attack::kSlow) {
      // About 100 KiB/s: 8 KiB every 80 ms.
      while (s.size() > 8192) {
        if (!WriteAll(fd, s.substr(0, 8192), true)) return false;
        s.remove_prefix(8192);
        std::this_thread::sleep_for(std::chrono::milliseconds(80));
      }
    }
    return WriteAll(fd, s, true);
  }
  static bool WriteAll(int fd, std::string_view s, bool) {
    while (!s.empty()) {
      ssize_t w = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (w <= 0) return false;
      s.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }
  // One direction: `handshakes` length-prefixed messages, a 24-byte header, frames.
  void Pump(int from, int to, int handshakes, bool attack_here, int other_from, int other_to) {
    std::string a, b;
    for (int i = 0; i < handshakes; ++i) {
      if (!ReadN(from, &a, 2)) goto done;
      if (!ReadN(from, &b, (size_t(uint8_t(a[0])) << 8) | uint8_t(a[1]))) goto done;
      if (handshakes == 2 && i == 0) {
        std::lock_guard lock(mu_);
        first_message_ = a + b;
      }
      if (handshakes == 1 && attack_ == Attack::kHoldReply) {
        held_ = true;
        while (!release_ && !stop_) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!WriteAll(to, a + b)) goto done;
    }
    if (!ReadN(from, &a, 24) || !WriteAll(to, a)) goto done;
    for (int frame = 1;; ++frame) {
      if (!ReadN(from, &a, 4)) goto done;
      size_t n = (size_t(uint8_t(a[0])) << 24) | (size_t(uint8_t(a[1])) << 16) |
                 (size_t(uint8_t(a[2])) << 8) | uint8_t(a[3]);
      if (!ReadN(from, &b, n)) goto done;
      if (attack_here && frame == 1) {
        attacked_ = true;
        if (attack_ == Attack::kFlip) b[b.size() / 2] ^= 0x10;
        if (attack_ == Attack::kTruncate) {
          WriteAll(to, a + b.substr(0, b.size() / 2));
          shutdown(to, SHUT_RDWR);
          shutdown(other_from, SHUT_RDWR);
          shutdown(other_to, SHUT_RDWR);
          goto done;
        }
        if (attack_ == Attack::kReplay && !WriteAll(to, a + b)) goto done;
        if (attack_ == Attack::kStall) {
          // Stop reading: the sender's socket buffers fill and its writes block.
          while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          goto done;
        }
      }
      if (!WriteAll(to, a + b)) goto done;
    }
  done:
    shutdown(to, SHUT_WR);
  }
  void Serve() {
    int client = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    int server = ConnectLoopback(target_);
    if (server < 0) abort();
    client_ = client;
    server_ = server;
    bool none =
        attack_ == Attack::kNone || attack_ == Attack::kSlow || attack_ == Attack::kHoldReply;
    std::thread up([&] { Pump(client, server, 2, !none && c2s_, server, client); });
    Pump(server, client, 1, !none && !c2s_, client, server);
    up.join();
    close(client);
    close(server);
  }
  uint16_t target_;
  Attack attack_;
  bool c2s_;
  int listen_;
  uint16_t port_ = 0;
  std::atomic<bool> attacked_{false}, stop_{false}, held_{false}, release_{false};
  mutable std::mutex mu_;  // the proxy's threads write it, the test reads it
  std::string first_message_;
  std::atomic<int> client_{-1}, server_{-1};
  std::thread thread_;
};

TEST_F(Net, TamperedStreamsEndTheSessionAndNothingTamperedIsApplied) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  ASSERT_EQ(T({"put", a, "items", "from-a", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", b, "items", "from-b", "v=1"}).exit_code, 0);
  const std::string dump_a = Dump(a), dump_b = Dump(b);
  uint16_t port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  struct Case {
    Attack attack;
    bool c2s;
    const char* name;
  };
  // A replayed first frame arrives once intact: what its sender asked in it (its request
  // travels in its Hello) may flow until the copy ends the connection. So replays go last,
  // and may leave both sides holding what an untampered sync would have.
  const std::string both = dump_a + dump_b;
  for (Case k :
       {Case{Attack::kFlip, true, "flip b->a"}, Case{Attack::kFlip, false, "flip a->b"},
        Case{Attack::kTruncate, true, "truncate b->a"},
        Case{Attack::kTruncate, false, "truncate a->b"}, Case{Attack::kReplay, true, "replay b->a"},
        Case{Attack::kReplay, false, "replay a->b"}}) {
    SCOPED_TRACE(k.name);
    Proxy proxy(port, k.attack, k.c2s);
    auto r = T({"sync", b, "--peer", proxy.address()});
    EXPECT_TRUE(proxy.attacked());
    EXPECT_EQ(r.exit_code, 1) << r.err;
    if (!k.c2s && k.attack != Attack::kTruncate) {
      EXPECT_NE(r.err.find("failed authentication"), std::string::npos) << r.err;
    }
    if (!k.c2s && k.attack == Attack::kTruncate) {
      EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
    }
    if (k.attack == Attack::kReplay) {
      EXPECT_TRUE(Dump(a) == dump_a || Dump(a) == both) << Dump(a);
      EXPECT_TRUE(Dump(b) == dump_b || Dump(b) == both) << Dump(b);
    } else {
      EXPECT_EQ(Dump(a), dump_a);
      EXPECT_EQ(Dump(b), dump_b);
    }
  }
  EXPECT_NE(sa->log().find("failed authentication"), std::string::npos) << sa->log();
  EXPECT_NE(sa->log().find("truncated"), std::string::npos) << sa->log();
  // The same path untouched carries the data: the checks above could have failed (and
  // new records, should a replay have synced the first ones).
  ASSERT_EQ(T({"put", a, "items", "later-a", "v=2"}).exit_code, 0);
  ASSERT_EQ(T({"put", b, "items", "later-b", "v=2"}).exit_code, 0);
  std::string recorded;
  {
    Proxy proxy(port, Attack::kNone, true);
    auto r = T({"sync", b, "--peer", proxy.address()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    recorded = proxy.first_message();
  }
  // A recorded first message, replayed: dropped before any reply.
  ASSERT_GT(recorded.size(), 2u);
  int s = ConnectLoopback(port);
  ASSERT_GE(s, 0);
  ASSERT_EQ(send(s, recorded.data(), recorded.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(recorded.size()));
  char reply[256];
  EXPECT_EQ(read(s, reply, sizeof reply), 0);  // closed, no message 2
  close(s);
  EXPECT_TRUE(WaitFor([&] { return sa->log().find("replayed") != std::string::npos; }))
      << sa->log();
  EXPECT_TRUE(Has(a, "items", "from-b"));
  EXPECT_TRUE(Has(b, "items", "from-a"));
  EXPECT_TRUE(Has(a, "items", "later-b"));
  EXPECT_TRUE(Has(b, "items", "later-a"));
}

TEST_F(Net, SilentAndStalledPeersTimeOutAndDoNotHoldUpOthers) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string addr;
  auto sa = Listen("a", {"--timeout", "2"}, &addr);
  Pair("a", "b", addr);
  Pair("a", "c", addr);
  uint16_t port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));

  // A client that connects and says nothing is dropped at the handshake deadline.
  int silent = ConnectLoopback(port);
  ASSERT_GE(silent, 0);
  EXPECT_TRUE(WaitFor([&] { return sa->log().find("timed out") != std::string::npos; }, 15000))
      << sa->log();
  char byte;
  EXPECT_EQ(read(silent, &byte, 1), 0);  // closed by a
  close(silent);

  // Twenty silent connections from one address hold at most 16 handshake slots: each
  // one past that ends the oldest from the same address, which is told why. A member
  // from another address gets in.
  std::vector<int> flood;
  for (int i = 0; i < 20; ++i) {
    int f = ConnectLoopback(port, "127.0.0.2");
    ASSERT_GE(f, 0);
    flood.push_back(f);
  }
  EXPECT_TRUE(WaitFor([&] {
    return sa->log().find("too many connections without a finished handshake") != std::string::npos;
  })) << sa->log();
  {
    char busy[13] = {};
    size_t got = 0;
    while (got < sizeof busy) {
      ssize_t n = read(flood[0], busy + got, sizeof busy - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    EXPECT_EQ(std::string(busy + 2, got > 2 ? got - 2 : 0), "tandem-busy") << "the oldest was told";
  }
  auto r = T({"sync", b, "--peer", addr});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Sixty-four from four addresses fill every pre-authentication slot: members still get
  // in, from any address, each new connection ending the oldest silent one.
  for (int i = 0; i < 64; ++i) {
    const std::string from = "127.0.0." + std::to_string(3 + i % 4);
    int f = ConnectLoopback(port, from.c_str());
    ASSERT_GE(f, 0);
    flood.push_back(f);
  }
  for (const auto& member : {b, c}) {
    r = T({"sync", member, "--peer", addr});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  for (int f : flood) close(f);

  // b's link stops reading after the first frame; c, on its own link, still gets
  // everything, and both ends of the stalled link give up.
  Proxy stall(port, Attack::kStall, false);
  Serve sb({b, "--peer", stall.address(), "--timeout", "2"}, Log("b"));
  Serve sc({c, "--peer", addr}, Log("c"));
  ASSERT_TRUE(WaitFor([&] { return stall.attacked(); }));
  WriteMany(a, "bulk-", 20000);
  EXPECT_TRUE(WaitFor([&] { return CountItems(c) == 20000; }, 60000)) << sc.log();
  EXPECT_TRUE(WaitFor([&] { return sb.log().find("timed out") != std::string::npos; }, 15000))
      << sb.log();
  EXPECT_LT(CountItems(b), 20000u);
}

// A member whose first message has arrived cannot be evicted by strangers, however
// many: here its reply is held while 100 silent connections from four addresses churn
// through every pre-authentication slot, and its handshake still completes. (The
// daemon keeps its default handshake deadline, so a slow machine does not matter.)
TEST_F(Net, AHandshakeThatProvedTheGroupKeyIsNeverEvictedByStrangers) {
  std::string a = Init("a"), c = Init("c");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "c", addr);
  uint16_t port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  Proxy hold(port, Attack::kHoldReply, false);
  Child sync({TANDEM_BIN, "sync", c, "--peer", hold.address()});
  ASSERT_TRUE(WaitFor([&] { return hold.reply_held(); }));
  std::vector<int> churn;
  for (int i = 0; i < 100; ++i) {
    const std::string from = "127.0.0." + std::to_string(10 + i % 4);
    int f = ConnectLoopback(port, from.c_str());
    ASSERT_GE(f, 0);
    churn.push_back(f);
  }
  // Wait until a has accepted all of them: 64 fit, the other 36 (at least) were ended
  // to make room, and those are readable (told tandem-busy, then closed).
  auto ended = [&] {
    std::vector<pollfd> p;
    for (int f : churn) p.push_back({f, POLLIN, 0});
    poll(p.data(), p.size(), 0);
    return std::count_if(p.begin(), p.end(), [](const pollfd& x) { return x.revents != 0; });
  };
  EXPECT_TRUE(WaitFor([&] { return ended() >= 36; })) << ended();
  hold.Release();
  auto done = sync.Finish();
  EXPECT_EQ(done.exit_code, 0) << done.err;
  for (int f : churn) close(f);
}

TEST_F(Net, ASlowLinkThatKeepsMovingIsNotCutOff) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {"--timeout", "2"}, &addr);
  Pair("a", "b", addr);
  // Three 300 KB values of random text: about 600 KB after compression, which take about
  // six seconds at the proxy's 100 KiB/s, three times the timeout (with room for a slow
  // machine to apply them and answer within it).
  {
    auto r = storage::OpenReplica(a);
    ASSERT_TRUE(r.ok());
    std::mt19937_64 rng(1);
    for (const char* id : {"big1", "big2", "big3"}) {
      std::string big(300000, ' ');
      for (auto& c : big) c = "abcdefghijklmnopqrstuvwxyz0123456789"[rng() % 36];
      ASSERT_TRUE((*r)->Put("items", id, {{"text", engine::Value(big)}}).ok());
    }
  }
  uint16_t port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  Proxy slow(port, Attack::kSlow, false);
  auto r = T({"sync", b, "--peer", slow.address(), "--timeout", "2"});
  EXPECT_EQ(r.exit_code, 0) << r.err << sa->log();
  EXPECT_TRUE(Has(b, "items", "big1") && Has(b, "items", "big3"));
}

TEST_F(Net, LiveIntervalAndStatus) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  // b joins with its first daemon connection (no one-shot sync first).
  auto code = T({"invite", a});
  ASSERT_EQ(T({"join", b, code.out}).exit_code, 0);
  Serve sb({b, "--peer", addr}, Log("b"));
  ASSERT_TRUE(WaitFor([&] { return !fs::exists(b + "/join.code"); })) << sb.log();

  // Live: a change by another process on either side reaches the other.
  ASSERT_EQ(T({"put", a, "items", "live-a", "v=1"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Has(b, "items", "live-a"); }, 10000)) << sb.log();
  ASSERT_EQ(T({"put", b, "items", "live-b", "v=2"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Has(a, "items", "live-b"); }, 10000)) << sa->log();

  // Status, as JSON and text.
  json st;
  ASSERT_TRUE(WaitFor([&] {
    st = json::parse(T({"status", a, "--json"}).out);
    const auto& d = st["daemon"];
    return d.is_object() && d["running"] == true && d["peers"].size() == 1 &&
           d["peers"][0]["connected"] == true && d["peers"][0]["bytes_in"].get<int>() > 0 &&
           d["peers"][0]["last_sync_ms"].get<uint64_t>() > 0;
  })) << st.dump();
  EXPECT_EQ(st["daemon"]["peers"][0]["device"], json::parse(T({"info", b}).out)["device_id"]);
  EXPECT_EQ(st["daemon"]["mode"], "live");
  auto text = T({"status", b});
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("connected"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("daemon: running"), std::string::npos) << text.out;

  // Interval mode: syncs, disconnects, syncs again.
  std::string caddr;
  auto code_c = T({"invite", a});
  ASSERT_EQ(T({"join", c, code_c.out}).exit_code, 0);
  Serve scc({c, "--peer", addr, "--interval", "1"}, Log("c"));
  EXPECT_TRUE(WaitFor([&] { return Has(c, "items", "live-b"); })) << scc.log();
  ASSERT_EQ(T({"put", a, "items", "later", "v=3"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Has(c, "items", "later"); })) << scc.log();
  // Each interval is a new session that catches up and disconnects. (The write above may
  // still arrive in the first one: wait for the second session, not for time.)
  auto sessions = [&] {
    std::string clog = scc.log();
    size_t n = 0;
    for (size_t at = 0; (at = clog.find("disconnected from", at)) != std::string::npos; ++at) ++n;
    return n;
  };
  EXPECT_TRUE(WaitFor([&] { return sessions() >= 2; })) << scc.log();
  EXPECT_EQ(StatusOf(c)["mode"], "interval");

  // A stopped daemon says so.
  EXPECT_EQ(sb.Kill(SIGTERM), 0);
  EXPECT_NE(T({"status", b}).out.find("daemon: not running"), std::string::npos);
}

// A daemon that cannot write daemon.json (a full disk, a file in the way) is still shown
// as running, and says why; a daemon killed with SIGKILL is shown as not running.
TEST_F(Net, StatusKnowsADaemonRunsWithoutItsStatusFile) {
  std::string a = Init("a");
  // A directory in the way (not empty, so rename cannot replace it): every write fails.
  fs::create_directories(a + "/daemon.json/in-the-way");
  Serve s({a, "--listen", "127.0.0.1:0"}, Log("a"));
  EXPECT_TRUE(WaitFor([&] {
    return s.log().find("cannot update the status file") != std::string::npos;
  })) << s.log();
  // Said once, not at every try (each names another temporary file).
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  {
    const std::string log = s.log();
    size_t said = 0;
    for (size_t at = 0; (at = log.find("cannot update the status file", at)) != std::string::npos;
         ++at)
      ++said;
    EXPECT_EQ(said, 1u) << log;
  }
  auto st = T({"status", a});
  EXPECT_NE(st.out.find("daemon: running, but it could not write its status file"),
            std::string::npos)
      << st.out;
  EXPECT_EQ(json::parse(T({"status", a, "--json"}).out)["daemon"]["running"], true);
  fs::remove_all(a + "/daemon.json");
  EXPECT_TRUE(WaitFor([&] { return StatusOf(a).value("pid", 0) == s.pid(); }));
  EXPECT_NE(T({"status", a}).out.find("daemon: running, pid"), std::string::npos);
  s.Kill(SIGKILL);  // daemon.json still says running; the lock says otherwise
  EXPECT_NE(T({"status", a}).out.find("daemon: not running"), std::string::npos);
}

// A one-way device: accounting receives but never sends (`--send none`); the trust set
// still flows both ways, and status says which way data goes.
TEST_F(Net, AOneWayDeviceReceivesButNeverSends) {
  std::string shop = Init("shop"), accounting = Init("accounting");
  std::string addr;
  auto ss = Listen("shop", {}, &addr);
  Pair("shop", "accounting", addr);
  ASSERT_EQ(T({"put", shop, "orders", "o1", "total=12"}).exit_code, 0);
  ASSERT_EQ(T({"put", accounting, "notes", "private", "v=1"}).exit_code, 0);
  Serve sa({accounting, "--peer", addr, "--send", "none"}, Log("accounting"));
  EXPECT_TRUE(WaitFor([&] { return Has(accounting, "orders", "o1"); })) << sa.log();
  ASSERT_EQ(T({"put", shop, "orders", "o2", "total=7"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Has(accounting, "orders", "o2"); })) << sa.log();
  EXPECT_FALSE(Has(shop, "notes", "private")) << "a one-way device sent data";
  auto st = json::parse(T({"status", accounting, "--json"}).out);
  EXPECT_EQ(st["daemon"]["send"], json::array());
  EXPECT_EQ(st["daemon"]["receive"], "all");
  EXPECT_NE(T({"status", accounting}).out.find("sends none, receives all"), std::string::npos);
  // The trust set still flows both ways: each lists both devices.
  for (const auto& dir : {shop, accounting}) {
    const std::string devices = T({"devices", dir}).out;
    EXPECT_EQ(std::count(devices.begin(), devices.end(), '\n'), 2) << devices;
  }
}

// `cp -a a a2`, then a write on each copy and a sync of each with b: both writes reach
// b (the copy took a new replica id when it was first opened). And a copy restored over
// its own file (same inode, so only a sync can tell) is found rolled back by `sync`, which
// takes a new id and syncs again in the same run.
TEST_F(Net, CopiedAndRolledBackReplicasLoseNoWrites) {
  std::string a = Init("a"), b = Init("b");
  std::string baddr;
  auto sb = Listen("b", {}, &baddr);
  Pair("b", "a", baddr);
  const std::string a2 = Dir("a2");
  fs::copy(a, a2, fs::copy_options::recursive);
  ASSERT_EQ(T({"put", a, "items", "from-a", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", a2, "items", "from-a2", "v=2"}).exit_code, 0);
  EXPECT_NE(json::parse(T({"info", a}).out)["replica_id"],
            json::parse(T({"info", a2}).out)["replica_id"]);
  auto s1 = T({"sync", a, "--peer", baddr});
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  auto s2 = T({"sync", a2, "--peer", baddr});
  ASSERT_EQ(s2.exit_code, 0) << s2.err;
  EXPECT_TRUE(Has(b, "items", "from-a"));
  // The copy's new id came with its binding, in the batch that brought its write: held
  // until the end of the batch, then applied, before the session ended.
  EXPECT_TRUE(Has(b, "items", "from-a2"));
  EXPECT_NE(sb->log().find("applied 1 held changes"), std::string::npos) << sb->log();

  // A snapshot of a's file, a write that reaches b, then the snapshot back in place.
  fs::copy_file(a + "/data.mdb", Dir("snapshot.mdb"));
  ASSERT_EQ(T({"put", a, "items", "lost-by-rollback", "v=3"}).exit_code, 0);
  ASSERT_EQ(T({"sync", a, "--peer", baddr}).exit_code, 0);
  {
    std::ifstream in(Dir("snapshot.mdb"), std::ios::binary);
    std::ofstream out(a + "/data.mdb", std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  const std::string before = json::parse(T({"info", a}).out)["replica_id"];
  EXPECT_FALSE(Has(a, "items", "lost-by-rollback"));
  auto s3 = T({"sync", a, "--peer", baddr});
  EXPECT_EQ(s3.exit_code, 0) << s3.err;
  EXPECT_NE(s3.err.find("rolled back"), std::string::npos) << s3.err;
  EXPECT_NE(json::parse(T({"info", a}).out)["replica_id"], before);
  EXPECT_TRUE(Has(a, "items", "lost-by-rollback")) << "b gave back what the rollback lost";
  ASSERT_EQ(T({"put", a, "items", "after-rollback", "v=4"}).exit_code, 0);
  ASSERT_EQ(T({"sync", a, "--peer", baddr}).exit_code, 0);
  EXPECT_TRUE(Has(b, "items", "after-rollback"));
  EXPECT_EQ(Dump(a), Dump(b));
}

// kill -9 of either side (or both) at random moments of a sync: after every kill both
// replicas open and pass `check`, and at the end one more sync converges with nothing
// lost. TANDEM_CRASH_SYNC_KILLS sets the count (make crash-sync KILLS=N; 10 in make
// test); the seed is printed, and TANDEM_CRASH_SYNC_SEED replays it.
TEST_F(Net, KilledMidSyncBothSidesOpenCheckAndConverge) {
  int kills = 10;
  if (const char* e = std::getenv("TANDEM_CRASH_SYNC_KILLS")) kills = std::atoi(e);
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("TANDEM_CRASH_SYNC_SEED")) seed = std::stoull(e);
  std::printf("crash-sync seed %llu (TANDEM_CRASH_SYNC_SEED replays it), %d kills\n",
              static_cast<unsigned long long>(seed), kills);
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  {
    auto sa = Listen("a", {}, &addr);
    Pair("a", "b", addr);
  }
  int written_a = 0, written_b = 0;
  for (int it = 0; it < kills; ++it) {
    // New data on both sides, so that every round has something to send both ways.
    WriteMany(a, "a" + std::to_string(it) + "-", 2000);
    WriteMany(b, "b" + std::to_string(it) + "-", 500);
    written_a += 2000;
    written_b += 500;
    Serve sa({a, "--listen", addr}, Log("a"));
    ListenAddress(a, sa);
    Serve sb({b, "--peer", addr}, Log("b"));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400000));
    const int victim = static_cast<int>(rng() % 3);  // a, b, or both
    if (victim != 1) sa.Kill(SIGKILL);
    if (victim != 0) sb.Kill(SIGKILL);
    sa.Kill(SIGKILL);
    sb.Kill(SIGKILL);
    for (const auto& dir : {a, b}) {
      auto c = T({"check", dir});
      ASSERT_EQ(c.exit_code, 0) << "iteration " << it << ", " << dir << ": " << c.err;
    }
  }
  // One more sync, undisturbed: everything written on either side is on both.
  Serve sa({a, "--listen", addr}, Log("a"));
  ListenAddress(a, sa);
  auto r = T({"sync", b, "--peer", addr});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(CountItems(a), static_cast<size_t>(written_a + written_b));
  EXPECT_EQ(CountItems(b), static_cast<size_t>(written_a + written_b));
  EXPECT_EQ(Dump(a), Dump(b));
}

TEST_F(Net, LineOfThreeConvergesThroughAKilledMiddle) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string aaddr, baddr;
  auto sa = Listen("a", {}, &aaddr);
  Pair("a", "b", aaddr, "admin");  // b invites c
  auto sb = Listen("b", {"--peer", aaddr}, &baddr);
  Pair("b", "c", baddr);
  Serve sc({c, "--peer", baddr}, Log("c"));

  WriteMany(a, "first-", 2000);
  ASSERT_TRUE(WaitFor([&] { return CountItems(c) == 2000; }, 60000)) << sc.log();

  // A large write on a; kill b while it is relaying, write on c meanwhile, restart b.
  WriteMany(a, "second-", 30000);
  WaitFor([&] { return CountItems(b) > 2000; }, 20000);
  sb->Kill(SIGKILL);
  // (Where b stood when killed, for the record; how far it got is up to the scheduler.)
  std::printf("b was killed holding %zu of 32000 records\n", CountItems(b));
  WriteMany(c, "from-c-", 500);
  // b comes back on the same port (c dials it there).
  sb->args() = {b, "--listen", baddr, "--peer", aaddr};
  sb->Start();
  ASSERT_TRUE(WaitFor(
      [&] { return CountItems(a) == 32500 && CountItems(b) == 32500 && CountItems(c) == 32500; },
      120000))
      << "a=" << CountItems(a) << " b=" << CountItems(b) << " c=" << CountItems(c) << "\n"
      << sb->log();
  EXPECT_EQ(Dump(a), Dump(b));
  EXPECT_EQ(Dump(b), Dump(c));
  EXPECT_EQ(T({"check", b}).exit_code, 0);
}

TEST_F(Net, ManyPeersAtOnceWithOneWayAndFilteredPeers) {
  std::string hub = Init("hub");
  std::string addr;
  auto sh = Listen("hub", {}, &addr);
  const int n = 6;
  std::vector<std::unique_ptr<Serve>> spokes;
  for (int i = 0; i < n; ++i) {
    std::string name = "s" + std::to_string(i);
    Init(name);
    Pair("hub", name, addr);
  }
  // s0 only receives "items" and sends nothing but the trust set; s1 keeps its
  // "private" collection to itself; the others sync everything.
  for (int i = 0; i < n; ++i) {
    std::string name = "s" + std::to_string(i);
    std::vector<std::string> args{Dir(name), "--peer", addr};
    if (i == 0) args.insert(args.end(), {"--receive", "items", "--send", "_tandem_devices"});
    if (i == 1) args.insert(args.end(), {"--send", "items,notes"});
    spokes.push_back(std::make_unique<Serve>(args, Log(name)));
  }
  ASSERT_EQ(T({"put", hub, "items", "from-hub", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"put", hub, "notes", "hub-note", "v=1"}).exit_code, 0);
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(T({"put", Dir("s" + std::to_string(i)), "items", "from-s" + std::to_string(i), "v=1"})
                  .exit_code,
              0);
  ASSERT_EQ(T({"put", Dir("s1"), "private", "secret", "v=1"}).exit_code, 0);
  // Every spoke's item reaches every full spoke through the hub, live.
  for (int i = 2; i < n; ++i)
    for (int j = 1; j < n; ++j)
      EXPECT_TRUE(WaitFor([&] {
        return Has(Dir("s" + std::to_string(i)), "items", "from-s" + std::to_string(j));
      })) << "s"
          << i << " lacks s" << j << "'s item\n"
          << spokes[i]->log();
  // s0 receives items but not notes, and its own item never left it.
  EXPECT_TRUE(WaitFor([&] { return Has(Dir("s0"), "items", "from-s3"); }));
  EXPECT_TRUE(Has(Dir("s0"), "items", "from-hub"));
  EXPECT_FALSE(Has(Dir("s0"), "notes", "hub-note"));
  EXPECT_FALSE(Has(hub, "items", "from-s0"));
  EXPECT_TRUE(Has(Dir("s2"), "notes", "hub-note"));
  // s1's private collection stays on s1.
  EXPECT_FALSE(Has(hub, "private", "secret"));
  EXPECT_FALSE(Has(Dir("s2"), "private", "secret"));
  // The hub's status lists all six, connected.
  EXPECT_TRUE(WaitFor([&] {
    json st = json::parse(T({"status", hub, "--json"}).out);
    int connected = 0;
    for (const auto& p : st["daemon"]["peers"]) connected += p["connected"] == true;
    return connected == n;
  })) << T({"status", hub}).out;
}

// Multicast on this machine at all? (Containers without a route cannot.)
bool MulticastWorks() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(47475);
  inet_pton(AF_INET, "239.255.74.74", &sa.sin_addr);
  bool ok = sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 1;
  close(s);
  return ok;
}

TEST_F(Net, DiscoveryFindsGroupMembersWithoutAddresses) {
  std::string a = Init("a"), b = Init("b"), d = Init("d");
  if (!MulticastWorks()) {
    // Without a multicast route discovery cannot work; the daemon must say so.
    auto sa = Listen("a", {"--discover"});
    EXPECT_TRUE(WaitFor([&] {
      std::string log = sa->log();
      return log.find("discovery: cannot send beacons") != std::string::npos ||
             log.find("discovery unavailable") != std::string::npos;
    })) << sa->log();
    return;
  }
  std::string addr;
  {
    auto sa = Listen("a", {}, &addr);
    Pair("a", "b", addr);
  }
  auto sa = Listen("a", {"--discover"});
  auto sb = Listen("b", {"--discover"});
  auto sd = Listen("d", {"--discover"});  // another group: never connects
  ASSERT_EQ(T({"put", a, "items", "found", "v=1"}).exit_code, 0);
  EXPECT_TRUE(WaitFor([&] { return Has(b, "items", "found"); }, 20000)) << sa->log() << sb->log();
  EXPECT_EQ(sd->log().find("discovered"), std::string::npos) << sd->log();
  EXPECT_EQ(sa->log().find("refused"), std::string::npos) << sa->log();
  EXPECT_EQ(sa->log().find("cannot send beacons"), std::string::npos) << sa->log();
  EXPECT_EQ(Dump(d), "");
}

// GET http://127.0.0.1:PORT/metrics, the body ("" on failure).
std::string Scrape(const std::string& address) {
  const uint16_t port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  int s = ConnectLoopback(port);
  if (s < 0) return "";
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  if (write(s, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(s);
    return "";
  }
  std::string resp;
  char buf[65536];
  for (ssize_t n; (n = read(s, buf, sizeof buf)) > 0;) resp.append(buf, static_cast<size_t>(n));
  close(s);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

// The value of the sample whose line starts with `series` (name and labels), or -1.
double Sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

TEST_F(Net, MetricsCountTheTrafficTheyWatchedAndLogsCanBeJson) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {"--metrics", "127.0.0.1:0", "--log-format", "json"}, &addr);
  std::string metrics;
  ASSERT_TRUE(WaitFor([&] {
    metrics = StatusOf(a).value("metrics", "");
    return !metrics.empty();
  })) << sa->log();
  std::string text = Scrape(metrics);
  ASSERT_NE(text.find("# TYPE tandem_commit_seconds histogram"), std::string::npos) << text;
  EXPECT_EQ(Sample(text, "tandem_node_running"), 1);
  EXPECT_EQ(Sample(text, "tandem_peers_connected"), 0);
  EXPECT_EQ(Sample(text, "tandem_quarantined_changes"), 0);
  EXPECT_GT(Sample(text, "tandem_store_bytes"), 0);

  Pair("a", "b", addr);
  WriteMany(b, "b", 50);  // 100 fields
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  const std::string dev_b = json::parse(T({"info", b}).out)["device_id"];
  const std::string peer = "{device=\"" + dev_b + "\",direction=\"incoming\"}";
  ASSERT_TRUE(WaitFor([&] {
    text = Scrape(metrics);
    return Sample(text, "tandem_peer_fields_received_total" + peer) >= 100;
  })) << text;
  // Exactly what was synced: b's 100 fields, its trust record from pairing, and its
  // report of what it holds (written at the end of its pairing sync), and the
  // statements a signed while b was pairing, if they come back once.
  const double received = Sample(text, "tandem_peer_fields_received_total" + peer);
  EXPECT_GE(received, 100);
  EXPECT_LE(received, 113);
  EXPECT_GT(Sample(text, "tandem_peer_received_bytes_total" + peer), 500);  // compressed
  EXPECT_GT(Sample(text, "tandem_peer_received_messages_total" + peer), 2);
  EXPECT_GE(Sample(text, "tandem_peer_seconds_since_caught_up" + peer), 0);
  EXPECT_GE(Sample(text, "tandem_commit_seconds_count"), 2);
  EXPECT_EQ(Sample(text, "tandem_commit_seconds_bucket{le=\"+Inf\"}"),
            Sample(text, "tandem_commit_seconds_count"));

  // A stranger: refused in the handshake, and counted by reason.
  const uint16_t port = static_cast<uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
  int s = ConnectLoopback(port);
  ASSERT_GE(s, 0);
  const std::string junk(200, 'x');
  ASSERT_EQ(write(s, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  ASSERT_TRUE(WaitFor([&] {
    return Sample(Scrape(metrics), "tandem_connections_refused_total{reason=\"handshake\"}") == 1;
  })) << Scrape(metrics);
  close(s);

  // Every log line is one JSON object.
  sa->Kill(SIGTERM);
  std::istringstream log(sa->log());
  int lines = 0;
  for (std::string line; std::getline(log, line); ++lines) {
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j.contains("message") && j.contains("level") && j.contains("time_ms")) << line;
  }
  EXPECT_GT(lines, 2);
}

TEST_F(Net, MetricsOnABusyOrBadAddressAreClearErrors) {
  std::string a = Init("a");
  auto r = T({"serve", a, "--listen", "127.0.0.1:0", "--metrics", "nonsense"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  std::string addr;
  auto sa = Listen("a", {"--metrics", "127.0.0.1:0"});
  std::string metrics;
  ASSERT_TRUE(WaitFor([&] {
    metrics = StatusOf(a).value("metrics", "");
    return !metrics.empty();
  }));
  std::string b = Init("b");
  r = T({"serve", b, "--listen", "127.0.0.1:0", "--metrics", metrics});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("metrics: cannot listen on " + metrics), std::string::npos) << r.err;
  r = T({"serve", b, "--listen", "127.0.0.1:0", "--log-format", "xml"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
}

TEST_F(Net, BadArgumentsAreUsageErrors) {
  std::string a = Init("a");
  for (std::vector<std::string> args : {
           std::vector<std::string>{"serve", a},
           {"serve", a, "--listen", "nope"},
           {"serve", a, "--listen", "127.0.0.1:99999"},
           {"serve", a, "--peer", "[::1"},
           {"serve", a, "--listen", "127.0.0.1:0", "--interval", "5"},
           {"serve", a, "--peer", "127.0.0.1:1", "--send", ""},
           {"serve", a, "--peer", "127.0.0.1:1", "--receive", "none,c"},
           {"sync", a, "--peer", "127.0.0.1:1", "--send", "c,none"},
           {"sync", a},
           {"sync", a, "--peer", "127.0.0.1"},
           {"revoke", a, "not-a-device"},
           {"join", a, "tandem-invite-AAAA"},
           {"invite", a, "--expires", "0"},
           {"invite", a, "--address", "x"},
           {"put", a, "_tandem_devices", "x", "key=\"k\""},
       }) {
    auto r = T(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << (args.size() > 2 ? args[2] : "") << r.err;
    EXPECT_EQ(r.err.rfind("tandem: ", 0), 0u) << r.err;
  }
  // A device cannot revoke itself.
  std::string self = json::parse(T({"info", a}).out)["device_id"];
  EXPECT_EQ(T({"revoke", a, self}).exit_code, 2);
  // Runtime failures: no replica, a replica without a group key.
  EXPECT_EQ(T({"invite", tmp_ / "missing"}).exit_code, 1);
  fs::remove(a + "/group.key");
  auto r = T({"sync", a, "--peer", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("group key"), std::string::npos) << r.err;
  // Nothing connects to a closed port: a clear error, exit 1.
  ASSERT_TRUE(net::SaveGroupKey(device::Layout(a).group(), net::NewGroupKey()).ok());
  r = T({"sync", a, "--peer", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tandem::testing
