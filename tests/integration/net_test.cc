// Secure networking with real processes on loopback: pairing and invites, large states,
// attachments, the daemon's modes and status, copies and kills mid-sync, discovery,
// metrics and usage errors.
#include "net_fixture.h"

namespace tandem::testing {
namespace {

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
  auto out_of_line = [&](const std::string& dir) {
    auto c = T({"check", dir});
    EXPECT_EQ(c.exit_code, 0) << c.err;
    return c.out.find("\"fields_out_of_line\":1") != std::string::npos;
  };
  EXPECT_TRUE(out_of_line(b)) << "kept as it came";
  // Two more there and one removed: the state that comes has seen all b holds of the
  // field, so it takes that one's place as it came.
  for (int i = 10; i < 12; ++i)
    ASSERT_EQ(T({"add", a, "docs", "d1", "photos",
                 "\"" + std::string(100'000, static_cast<char>('a' + i)) + "\""})
                  .exit_code,
              0);
  ASSERT_EQ(
      T({"remove", a, "docs", "d1", "photos", "\"" + std::string(100'000, 'a') + "\""}).exit_code,
      0);
  s = T({"sync", b, "--peer", addr});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(Dump(b), Dump(a));
  EXPECT_TRUE(out_of_line(b)) << "in place of the one held";
  // One more on each side: each joins the other's state with its own, a part at a time,
  // and keeps the join in place of its own.
  ASSERT_EQ(
      T({"add", a, "docs", "d1", "photos", "\"" + std::string(100'000, 'x') + "\""}).exit_code, 0);
  ASSERT_EQ(
      T({"add", b, "docs", "d1", "photos", "\"" + std::string(100'000, 'y') + "\""}).exit_code, 0);
  EXPECT_FALSE(out_of_line(b)) << "written here: in line";
  s = T({"sync", b, "--peer", addr});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(Dump(b), Dump(a));
  EXPECT_NE(Dump(b).find(std::string(100'000, 'x')), std::string::npos);
  EXPECT_NE(Dump(a).find(std::string(100'000, 'y')), std::string::npos);
  EXPECT_TRUE(out_of_line(b)) << "the join, in place of b's own";
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

// A device that takes blobs lazily, the only route between the one that attached a blob
// and one that wants it: asked for it, it fetches it and passes it on, live.
TEST_F(Net, ABlobCrossesALazyRelayInLiveSessions) {
  std::string a = Init("a"), b = Init("b"), c = Init("c");
  std::string data(1'500'000, '\0');
  std::mt19937 rng(9);
  for (auto& ch : data) ch = static_cast<char>(rng());
  const std::string file = Dir("photo.png");
  std::ofstream(file, std::ios::binary) << data;
  std::string addr_a;
  auto sa = Listen("a", {}, &addr_a);
  Pair("a", "b", addr_a);
  Pair("a", "c", addr_a);
  auto att = T({"attach", a, "photos", "p1", "img", file});
  ASSERT_EQ(att.exit_code, 0) << att.err;
  const std::string hash = json::parse(att.out)["$blob"];
  std::string addr_b;
  auto sb = Listen("b", {"--peer", addr_a, "--blobs", "lazy"}, &addr_b);
  Serve sc({c, "--peer", addr_b}, Log("c-serve"));
  ASSERT_TRUE(WaitFor(
      [&] {
        return T({"get", c, "photos", "p1"}).exit_code == 0;
      },
      60000))
      << sb->log() << sc.log();
  auto got = T({"blob", c, hash, "--wait", "60"});
  ASSERT_EQ(got.exit_code, 0) << got.err << sb->log() << sc.log();
  EXPECT_TRUE(got.out == data);
  EXPECT_EQ(json::parse(T({"blobs", b, "--json"}).out)["state"], "complete");
}

// `where` on a device that syncs with one other only: the third device's report reaches
// it through that one, and says that device holds the record it wrote.
TEST_F(Net, WhereJudgesDevicesNeverMetByTheirRelayedReports) {
  std::string addr;
  auto sa = Founded({"a", "b", "c"}, &addr);
  ASSERT_EQ(T({"put", Dir("c"), "orders", "o1", "qty=1"}).exit_code, 0);
  ASSERT_EQ(T({"sync", Dir("c"), "--peer", addr}).exit_code, 0);  // c's report goes too
  ASSERT_EQ(T({"sync", Dir("b"), "--peer", addr}).exit_code, 0);
  const std::string c_id = json::parse(T({"info", Dir("c")}).out)["device_id"];
  auto r = T({"where", Dir("b"), "orders", "o1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  bool seen = false;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line);
    if (j["device"] != c_id) continue;
    seen = true;
    EXPECT_EQ(j["state"], "holds") << line;
    EXPECT_EQ(j["relayed"], true) << line;
  }
  EXPECT_TRUE(seen) << r.out;
  EXPECT_NE(T({"where", Dir("b"), "orders", "o1"}).out.find(", relayed)"), std::string::npos);
}

// Two devices with different --timeout settings: each keeps the other fed with keepalives
// often enough for the other's timeout, so an idle live link stays up. A 1-second timeout
// on both sides too.
TEST_F(Net, DifferentTimeoutsOnEachSideKeepAnIdleLinkUp) {
  for (const std::string t : {"3", "1"}) {
    SCOPED_TRACE("timeout " + t);
    TempDir tmp;
    const std::string a = tmp / "a", b = tmp / "b";
    ASSERT_EQ(T({"init", a}).exit_code, 0);
    ASSERT_EQ(T({"init", b}).exit_code, 0);
    std::vector<std::string> args{a, "--listen", "127.0.0.1:0"};
    if (t == "1") args.insert(args.end(), {"--timeout", "1"});  // both sides: 1 s
    Serve sa(args, tmp / "a.log");
    const std::string addr = ListenAddress(a, sa);
    auto code = T({"invite", a, "--address", addr});
    ASSERT_EQ(code.exit_code, 0);
    ASSERT_EQ(T({"join", b, code.out}).exit_code, 0);
    Serve sb({b, "--peer", addr, "--timeout", t}, tmp / "b.log");
    ASSERT_TRUE(WaitFor([&] {
      auto st = StatusOf(b);
      return st.contains("peers") && !st["peers"].empty() &&
             st["peers"][0].value("connected", false);
    })) << sb.log();
    std::this_thread::sleep_for(std::chrono::seconds(8));  // idle, well past the timeout
    const json st = StatusOf(b);
    ASSERT_FALSE(st["peers"].empty());
    EXPECT_EQ(st["peers"][0]["sessions"], 1) << sb.log() << sa.log();
    EXPECT_EQ(sb.log().find("timed out"), std::string::npos) << sb.log();
    EXPECT_EQ(sa.log().find("timed out"), std::string::npos) << sa.log();
  }
}

// A one-shot sync beside a running serve leaves the daemon's status file alone; and a
// daemon killed outright is shown as such, its peers no longer connected.
TEST_F(Net, ASyncBesideAServeKeepsItsStatusAndAKilledOneShowsNoPeers) {
  std::string addr;
  auto sa = PairedWithAWriteEach(&addr);
  std::string addr_b;
  auto sb = Listen("b", {}, &addr_b);
  ASSERT_EQ(T({"sync", Dir("a"), "--peer", addr_b}).exit_code, 0);
  json st = StatusOf(Dir("a"));
  EXPECT_EQ(st.value("pid", 0), sa->pid()) << st.dump();
  EXPECT_EQ(st.value("listen", ""), addr) << st.dump();
  EXPECT_EQ(st.value("running", false), true) << st.dump();
  auto invite = T({"invite", Dir("a")});
  ASSERT_EQ(invite.exit_code, 0) << invite.err;
  EXPECT_EQ(invite.err.find("no address hint"), std::string::npos) << invite.err;
  // b dials a: a's daemon has a connected peer, until it is killed.
  sb.reset();
  auto sb2 = Listen("b", {"--peer", addr});
  ASSERT_TRUE(WaitFor([&] {
    const json j = StatusOf(Dir("a"));
    return j.contains("peers") && !j["peers"].empty() && j["peers"][0].value("connected", false);
  }));
  sa->Kill(SIGKILL);
  auto r = T({"status", Dir("a"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json shown = json::parse(r.out);
  EXPECT_EQ(shown["daemon"]["running"], false) << r.out;
  EXPECT_EQ(shown["daemon"]["ended_unexpectedly"], true) << r.out;
  for (const auto& p : shown["daemon"]["peers"]) EXPECT_EQ(p["connected"], false) << r.out;
  EXPECT_NE(T({"status", Dir("a")}).out.find("ended without stopping"), std::string::npos);
}

// gc says what waits for the members' reports, and collects it once they came.
TEST_F(Net, GcSaysWhatWaitsForTheMembersReports) {
  std::string addr;
  auto sa = Founded({"a", "b"}, &addr);
  const std::string a = Dir("a"), b = Dir("b");
  ASSERT_EQ(T({"put", a, "items", "gone", "v=1"}).exit_code, 0);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"del", a, "items", "gone"}).exit_code, 0);
  json gc = json::parse(T({"gc", a, "--json"}).out);
  EXPECT_EQ(gc["collected"], 0) << gc.dump();
  EXPECT_GE(gc["waiting"], 1) << gc.dump();
  EXPECT_NE(T({"gc", a}).out.find("wait until every member has reported holding them"),
            std::string::npos);
  // b takes the deletion and reports as its sync ends; its next sync brings the report.
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  gc = json::parse(T({"gc", a, "--json"}).out);
  EXPECT_GE(gc["collected"], 1) << gc.dump();
  EXPECT_EQ(gc["waiting"], 0) << gc.dump();
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

// One-shot syncs with a live daemon that applied them end normally on both sides: the
// daemon, which may already be sending what it applied (an empty batch that moves the
// peer's cursor past its own changes) when the peer says goodbye, counts no error.
TEST_F(Net, OneShotSyncsWithALiveDaemonEndWithoutErrors) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(T({"put", b, "items", "b" + std::to_string(i), "v=1"}).exit_code, 0);
    if (i % 2) {
      ASSERT_EQ(T({"put", a, "items", "a" + std::to_string(i), "v=1"}).exit_code, 0);
    }
    auto r = T({"sync", b, "--peer", addr});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_TRUE(Has(a, "items", "b19"));
  EXPECT_TRUE(Has(b, "items", "a19"));
  json peers;
  ASSERT_TRUE(WaitFor([&] {
    peers = StatusOf(a)["peers"];
    return peers.size() == 1 && peers[0]["sessions"].get<int>() >= 20 &&
           peers[0]["connected"] == false;
  })) << peers.dump();
  EXPECT_EQ(peers[0]["errors"], 0) << peers.dump();
  EXPECT_EQ(sa->log().find("ended the session before"), std::string::npos) << sa->log();
  // The two compared their data at their first session, and not again within the hour
  // (twice if the syncs straddle the turn of an hour); they agreed.
  EXPECT_GE(peers[0]["states_compared"], 1) << peers.dump();
  EXPECT_LE(peers[0]["states_compared"], 2) << peers.dump();
  EXPECT_EQ(peers[0]["states_differed"], 0) << peers.dump();
}

// A daemon whose replica directory is removed, or replaced (a restore to the same path),
// stops, and says why: it would sync into a file nobody reads again, while its peers
// took what they sent it for delivered. Served again, the replica there syncs.
TEST_F(Net, ADaemonStopsWhenItsReplicaIsRemovedOrReplaced) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  ASSERT_EQ(T({"backup", a, Dir("bk")}).exit_code, 0);
  std::error_code ec;
  fs::remove_all(a, ec);
  ASSERT_EQ(T({"restore", Dir("bk"), a}).exit_code, 0);
  EXPECT_EQ(sa->WaitExit(20000), 1) << sa->log();
  EXPECT_NE(sa->log().find("was moved, removed or replaced while this node synced it"),
            std::string::npos)
      << sa->log();
  auto again = Listen("a", {}, &addr);
  ASSERT_EQ(T({"put", b, "items", "after", "v=1"}).exit_code, 0);
  auto r = T({"sync", b, "--peer", addr});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Has(a, "items", "after"));
  // Removed outright, likewise.
  fs::remove_all(a, ec);
  EXPECT_EQ(again->WaitExit(20000), 1) << again->log();
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

// One daemon per replica: a second `serve` (run by mistake, or by a second service
// manager) is refused and names the first; a one-shot `sync` beside it is not; once the
// first has stopped, or died, another starts.
TEST_F(Net, ASecondServeOnOneReplicaIsRefused) {
  std::string a = Init("a");
  auto first = Listen("a");
  auto second =
      testing::Run({"/usr/bin/timeout", "20", TANDEM_BIN, "serve", a, "--listen", "127.0.0.1:0"});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_NE(second.err.find("already serves " + a), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(first->pid())), std::string::npos)
      << second.err;
  EXPECT_EQ(StatusOf(a).value("pid", 0), first->pid()) << "the first's status stands";
  auto once = T({"sync", a, "--peer", "127.0.0.1:1", "--timeout", "2"});
  EXPECT_EQ(once.err.find("already serves"), std::string::npos) << once.err;
  first->Kill(SIGKILL);
  auto again = Listen("a");
  EXPECT_EQ(StatusOf(a).value("pid", 0), again->pid());
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
  EXPECT_NE(sb->log().find("judged the held changes again: applied 1,"), std::string::npos)
      << sb->log();

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

// GET http://127.0.0.1:PORT/metrics, the body ("" on failure, or with no answer for 20 s).
std::string Scrape(const std::string& address) {
  int s = ConnectLoopback(PortOf(address));
  if (s < 0) return "";
  const timeval patience{20, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
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
  {
    // Clients that send half a request and wait do not keep a scraper waiting.
    const uint16_t port = PortOf(metrics);
    std::vector<int> slow;
    for (int i = 0; i < 4; ++i) {  // as many as the exporter's threads: each waits a while
      slow.push_back(ConnectLoopback(port));
      ASSERT_GE(slow.back(), 0);
      const std::string half = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
      ASSERT_EQ(write(slow.back(), half.data(), half.size()), static_cast<ssize_t>(half.size()));
    }
    EXPECT_NE(Scrape(metrics).find("tandem_node_running"), std::string::npos);
    for (int fd : slow) close(fd);
  }
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
  bool refusal_warned = false;
  for (std::string line; std::getline(log, line); ++lines) {
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << line;
    EXPECT_TRUE(j.contains("message") && j.contains("level") && j.contains("time_ms")) << line;
    // The stranger's refusal is a warning: an alert on warn or error sees it.
    if (j.value("message", "").rfind("refused ", 0) == 0) refusal_warned |= j["level"] == "warn";
    if (j.value("message", "").find("listening on") != std::string::npos) {
      EXPECT_EQ(j["level"], "info") << line;
    }
  }
  EXPECT_GT(lines, 2);
  EXPECT_TRUE(refusal_warned) << sa->log();
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
  EXPECT_NE(r.err.find("metrics: cannot listen on " + metrics + ": Address already in use"),
            std::string::npos)
      << r.err;
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
  // A device cannot revoke itself, nor change its own role: a usage error.
  std::string self = json::parse(T({"info", a}).out)["device_id"];
  EXPECT_EQ(T({"revoke", a, self}).exit_code, 2);
  EXPECT_EQ(T({"role", a, self, "admin"}).exit_code, 2);
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
