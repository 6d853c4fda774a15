// Attacks on real daemons on loopback: strangers, wrong keys and revoked devices, a
// tampering man-in-the-middle, silent and stalled peers, churn through the
// pre-authentication slots, and slow links.
#include "net_fixture.h"
#include "raw_lmdb.h"

namespace tandem::testing {
namespace {

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
// kNoHalfClose closes both ways once one side ends its half (as some proxies and NATs do).
enum class Attack {
  kNone,
  kFlip,
  kReplay,
  kTruncate,
  kStall,
  kSlow,
  kHoldReply,
  kNoHalfClose,
  kLongerLength  // the first frame's length prefix says 512 KiB more (still in range)
};
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
        if (attack_ == Attack::kLongerLength) a[1] = static_cast<char>(uint8_t(a[1]) ^ 0x08);
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
    if (attack_ == Attack::kNoHalfClose) {
      shutdown(to, SHUT_RDWR);
      shutdown(other_from, SHUT_RDWR);
      shutdown(other_to, SHUT_RDWR);
    } else {
      shutdown(to, SHUT_WR);
    }
  }
  void Serve() {
    int client = accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) return;
    int server = ConnectLoopback(target_);
    if (server < 0) abort();
    client_ = client;
    server_ = server;
    bool none = attack_ == Attack::kNone || attack_ == Attack::kSlow ||
                attack_ == Attack::kHoldReply || attack_ == Attack::kNoHalfClose;
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

// A link that drops the peer's goodbye (a proxy that closes both ways once the syncing
// side ends its half) after the session caught up loses nothing: the sync succeeds.
TEST_F(Net, ASyncThatCaughtUpSucceedsThoughTheLinkDropsThePeersGoodbye) {
  std::string addr;
  auto sa = PairedWithAWriteEach(&addr);
  const std::string a = Dir("a"), b = Dir("b");
  Proxy proxy(PortOf(addr), Attack::kNoHalfClose, true);
  auto r = T({"sync", b, "--peer", proxy.address()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("truncated"), std::string::npos) << r.err;
  EXPECT_TRUE(Has(a, "items", "from-b"));
  EXPECT_TRUE(Has(b, "items", "from-a"));
}

TEST_F(Net, TamperedStreamsEndTheSessionAndNothingTamperedIsApplied) {
  std::string addr;
  auto sa = PairedWithAWriteEach(&addr);
  const std::string a = Dir("a"), b = Dir("b");
  ASSERT_FALSE(HasFailure());
  const std::string dump_a = Dump(a), dump_b = Dump(b);
  const uint16_t port = PortOf(addr);
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

// A length prefix damaged on the way (it is authenticated only with its body) makes the
// receiver wait for a body that never comes whole: the peer's keepalives must not keep
// that wait alive. The session fails within the timeout, and nothing is applied.
TEST_F(Net, ADamagedFrameLengthTimesOutInsteadOfWaitingForKeepalives) {
  std::string addr;
  auto sa = PairedWithAWriteEach(&addr);
  const std::string a = Dir("a"), b = Dir("b");
  const std::string dump_b = Dump(b);
  Proxy proxy(PortOf(addr), Attack::kLongerLength, false);
  auto r = T({"sync", b, "--peer", proxy.address(), "--timeout", "3"});
  EXPECT_TRUE(proxy.attacked());
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("timed out waiting for the rest of a frame"), std::string::npos) << r.err;
  EXPECT_EQ(Dump(b), dump_b);
  EXPECT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  EXPECT_TRUE(Has(b, "items", "from-a"));
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

// A relay (or port forward) whose other end is gone accepts the connection and closes
// it: the error says that this, too, may be why, not only a key or a revocation.
TEST_F(Net, AnAddressThatClosesAtOnceIsNamedAsAPossibleDeadRelay) {
  std::string b = Init("b");
  std::string address;
  int ls = BindLoopback(&address);
  ASSERT_GE(ls, 0);
  std::thread relay([ls] {
    for (int c; (c = accept(ls, nullptr, nullptr)) >= 0;) close(c);
  });
  auto r = T({"sync", b, "--peer", address, "--timeout", "5"});
  shutdown(ls, SHUT_RDWR);
  relay.join();
  close(ls);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("closed the connection during the handshake"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("a relay whose other end is gone"), std::string::npos) << r.err;
}

// Another kind of server at the address (a web server, say) answers with text: the error
// says so, rather than naming a length read from its first two letters.
TEST_F(Net, AServerThatIsNotTandemIsNamedAsSuch) {
  std::string b = Init("b");
  std::string address;
  int ls = BindLoopback(&address);
  ASSERT_GE(ls, 0);
  std::thread web([ls] {
    static const char kReply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    for (int c; (c = accept(ls, nullptr, nullptr)) >= 0;) {
      if (write(c, kReply, sizeof kReply - 1) < 0) {
      }
      shutdown(c, SHUT_WR);
      char sink[512];
      while (read(c, sink, sizeof sink) > 0) {
      }
      close(c);
    }
  });
  auto r = T({"sync", b, "--peer", address, "--timeout", "5"});
  shutdown(ls, SHUT_RDWR);
  web.join();
  close(ls);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not speak Tandem's protocol (it began with \"HT\""), std::string::npos)
      << r.err;
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

// A field damaged on disk holds a peer's later states of it aside: status says so, as
// such, not as a broken schema.
TEST_F(Net, StatusTellsChangesHeldForADamagedFieldFromSchemaBreaches) {
  std::string a = Init("a"), b = Init("b");
  std::string addr;
  auto sa = Listen("a", {}, &addr);
  Pair("a", "b", addr);
  ASSERT_EQ(T({"put", a, "items", "1", "name=\"damage-me-here\""}).exit_code, 0);
  ASSERT_EQ(T({"sync", b, "--peer", addr}).exit_code, 0);
  ASSERT_TRUE(RawDamageValue(b, "damage-me-here"));
  ASSERT_EQ(T({"put", a, "items", "1", "name=\"pear\""}).exit_code, 0);
  T({"sync", b, "--peer", addr});  // the field is withheld by b: not caught up
  auto st = T({"status", b});
  ASSERT_EQ(st.exit_code, 0) << st.err;
  EXPECT_NE(st.out.find("1 changes from peers to fields whose value is damaged here"),
            std::string::npos)
      << st.out;
  EXPECT_EQ(st.out.find("broke a schema"), std::string::npos) << st.out;
  st = T({"status", b, "--json"});
  auto j = nlohmann::json::parse(st.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << st.out;
  EXPECT_EQ(j["quarantined_for_damage"], 1) << st.out;
  auto check = T({"check", b});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.err.find("items/1.name"), std::string::npos) << check.err;
}

}  // namespace
}  // namespace tandem::testing
