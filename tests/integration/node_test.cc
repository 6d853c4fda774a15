// The sync node in-process: two devices in one process pair, sync live and report what
// happens through events and snapshots; nodes start and stop without leaking threads
// or descriptors; Stop() works from inside a callback.
#include "tandem/net/node.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "process.h"
#include "tandem/device/device.h"
#include "tandem/net/binding.h"
#include "tandem/net/collect.h"

namespace tandem::testing {
namespace {

using device::Device;
using net::NodeEvent;
using net::NodeEventKind;

// A node of `d` listening on a free loopback port, not started.
Result<std::unique_ptr<net::Node>> ListeningNode(Device& d) {
  net::NodeOptions o;
  o.listen = "127.0.0.1:0";
  return d.NewNode(std::move(o));
}

// Collects a node's events from its callback; waits for one of a kind.
class Events {
 public:
  void Attach(net::Node& n) {
    n.SetEventCallback([this](const NodeEvent& e) {
      std::lock_guard lock(mu_);
      seen_.push_back(e);
      cv_.notify_all();
    });
  }
  // The first event of `kind` (after `from` earlier ones), or nullopt after 20 s.
  std::optional<NodeEvent> WaitFor(NodeEventKind kind, size_t* from = nullptr) {
    std::unique_lock lock(mu_);
    size_t start = from ? *from : 0;
    std::optional<NodeEvent> found;
    cv_.wait_for(lock, std::chrono::seconds(20), [&] {
      for (size_t i = start; i < seen_.size(); ++i)
        if (seen_[i].kind == kind) {
          found = seen_[i];
          if (from) *from = i + 1;
          return true;
        }
      return false;
    });
    return found;
  }
  size_t Count(NodeEventKind kind) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& e : seen_) n += e.kind == kind;
    return n;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<NodeEvent> seen_;
};

size_t OpenDescriptors() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}
size_t Threads() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/task");
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

bool Eventually(const std::function<bool()>& pred) {
  for (int i = 0; i < 2000 && !pred(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pred();
}

TEST(Node, TwoNodesInOneProcessPairSyncLiveAndReport) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  auto b = Device::Create(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->replica().Put("notes", "n1", {{"text", engine::Value{"from a"}}}).ok());

  net::NodeOptions oa;
  oa.listen = "127.0.0.1:0";
  auto na = (*a)->NewNode(oa);
  ASSERT_TRUE(na.ok()) << na.status().ToString();
  Events ea, eb;
  ea.Attach(**na);
  ASSERT_TRUE((*na)->Start().ok());
  const std::string addr = (*na)->Snapshot().listen;
  ASSERT_FALSE(addr.empty());
  EXPECT_TRUE(ea.WaitFor(NodeEventKind::kListening));

  // Pairing in-process: an invite from a, redeemed by b's node on its first connection.
  auto code = (*a)->Invite({{addr}, 60});
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  ASSERT_TRUE((*b)->Join(*code).ok());
  net::NodeOptions ob;
  ob.peers = {addr};
  ob.collect_interval_s = 0;  // never collects, and still reports (below)
  ob.report_interval_s = 1;
  auto nb = (*b)->NewNode(ob);
  ASSERT_TRUE(nb.ok());
  eb.Attach(**nb);
  ASSERT_TRUE((*nb)->Start().ok());
  auto joined = eb.WaitFor(NodeEventKind::kJoined);
  ASSERT_TRUE(joined);
  EXPECT_EQ(joined->device, (*a)->device_id());
  auto redeemed = ea.WaitFor(NodeEventKind::kInviteRedeemed);
  ASSERT_TRUE(redeemed);
  EXPECT_EQ(redeemed->device, (*b)->device_id());
  ASSERT_TRUE(eb.WaitFor(NodeEventKind::kCaughtUp));
  EXPECT_TRUE((*b)->replica().Get("notes", "n1").ok());

  // The session that redeemed the invite stays open, live both ways.
  ASSERT_TRUE((*a)->replica().Put("notes", "n2", {{"text", engine::Value{"live"}}}).ok());
  EXPECT_TRUE(Eventually([&] { return (*b)->replica().Get("notes", "n2").ok(); }));
  ASSERT_TRUE((*b)->replica().Put("notes", "n3", {{"text", engine::Value{"back"}}}).ok());
  EXPECT_TRUE(Eventually([&] { return (*a)->replica().Get("notes", "n3").ok(); }));

  // What `tandem status` shows, in-process.
  EXPECT_TRUE(Eventually([&] {
    auto s = (*nb)->Snapshot();
    return s.running && s.peers.size() == 1 && s.peers[0].connected &&
           s.peers[0].device == (*a)->device_id() && s.peers[0].bytes_in > 0 &&
           s.peers[0].last_sync_ms > 0 && s.peers[0].pending_changes == uint64_t{0};
  }));
  auto sa = (*na)->Snapshot();
  EXPECT_EQ(sa.device, (*a)->device_id());
  EXPECT_EQ(sa.listen, addr);
  EXPECT_EQ(sa.mode, net::NodeMode::kLive);

  // Both devices list each other, and each holds the other's replica binding.
  auto members = (*a)->Devices();
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->size(), 2u);
  auto bound_at = [](Device& holder, Device& of) {
    auto found = net::FindBinding(holder.replica(), of.GetInfo()->replica_id);
    return found.ok() && found->has_value() && net::DeviceId((*found)->device) == of.device_id();
  };
  EXPECT_TRUE(Eventually([&] { return bound_at(**a, **b) && bound_at(**b, **a); }));
  // b's node reports what it holds, though it never collects, and the report reaches a:
  // a member known only by its daemon does not look silent to the others.
  const std::string b_replica = (*b)->GetInfo()->replica_id.Hex();
  EXPECT_TRUE(
      Eventually([&] { return (*a)->replica().Get(net::kReportsCollection, b_replica).ok(); }));

  // b stops: a sees the session end; b's last event is kStopped.
  (*nb)->Stop();
  EXPECT_TRUE(ea.WaitFor(NodeEventKind::kDisconnected));
  EXPECT_EQ(eb.Count(NodeEventKind::kStopped), 1u);
  EXPECT_FALSE((*nb)->Snapshot().running);
  (*na)->Stop();
}

// A node that stops before its first report interval reports what it holds as it stops:
// a member whose daemon only ever runs briefly would otherwise look silent to the others.
TEST(Node, ANodeReportsWhatItHoldsAsItStops) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->replica().Put("notes", "n1", {{"text", engine::Value{"x"}}}).ok());
  auto n = ListeningNode(**a);
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE((*n)->Start().ok());
  const std::string own = (*a)->GetInfo()->replica_id.Hex();
  EXPECT_FALSE((*a)->replica().Get(net::kReportsCollection, own).ok());
  (*n)->Stop();
  EXPECT_TRUE((*a)->replica().Get(net::kReportsCollection, own).ok());
}

// Start() from two threads at once: one starts the node, the other is told it started.
TEST(Node, StartedFromTwoThreadsAtOnceStartsOnce) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  for (int round = 0; round < 20; ++round) {
    auto n = ListeningNode(**a);
    ASSERT_TRUE(n.ok());
    Status s1, s2;
    std::thread t1([&] { s1 = (*n)->Start(); });
    std::thread t2([&] { s2 = (*n)->Start(); });
    t1.join();
    t2.join();
    EXPECT_NE(s1.ok(), s2.ok()) << s1.ToString() << " / " << s2.ToString();
    const Status& refused = s1.ok() ? s2 : s1;
    EXPECT_NE(refused.message().find("starts only once"), std::string::npos) << refused.ToString();
    (*n)->Stop();
  }
}

// An app's node, like a daemon, stops once its replica's file is replaced under it.
TEST(Node, ANodeStopsWhenItsReplicaIsReplaced) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  auto n = ListeningNode(**a);
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE((*n)->Start().ok());
  EXPECT_FALSE((*n)->Wait(1500)) << "a node whose replica stays in place runs on";
  const std::filesystem::path dir = tmp / "a";
  std::filesystem::copy_file(dir / "data.mdb", dir / "data.copy");
  std::filesystem::rename(dir / "data.copy", dir / "data.mdb");
  ASSERT_TRUE((*n)->Wait(20000));
  EXPECT_TRUE((*n)->Snapshot().replica_gone);
  bool said = false;
  for (const auto& e : (*n)->DrainEvents())
    said |= e.kind == NodeEventKind::kError &&
            e.message.find("was moved, removed or replaced") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(Node, StopFromInsideACallbackAndQueueMode) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  auto b = Device::Create(tmp / "b");
  ASSERT_TRUE(a.ok() && b.ok());
  net::NodeOptions oa;
  oa.listen = "127.0.0.1:0";
  auto na = (*a)->NewNode(oa);
  ASSERT_TRUE(na.ok());
  ASSERT_TRUE((*na)->Start().ok());
  auto code = (*a)->Invite({{(*na)->Snapshot().listen}, 60});
  ASSERT_TRUE(code.ok());
  ASSERT_TRUE((*b)->Join(*code).ok());
  net::NodeOptions ob;
  ob.peers = {(*na)->Snapshot().listen};
  auto nb = (*b)->NewNode(ob);
  ASSERT_TRUE(nb.ok());
  net::Node* node = nb->get();
  (*nb)->SetEventCallback([node](const NodeEvent& e) {
    if (e.kind == NodeEventKind::kCaughtUp) {
      node->Snapshot();  // calling back in is allowed
      node->Stop();      // and so is stopping
    }
  });
  ASSERT_TRUE((*nb)->Start().ok());
  EXPECT_TRUE((*nb)->Wait(20000)) << "stopped from its own callback";
  // Queue mode: the same events, for an app's own loop. The fd is readable while any
  // wait in the queue.
  pollfd p{(*nb)->event_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 1);
  auto events = (*nb)->DrainEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, NodeEventKind::kStopped);
  bool caught_up = false;
  for (const auto& e : events) caught_up |= e.kind == NodeEventKind::kCaughtUp;
  EXPECT_TRUE(caught_up);
  EXPECT_EQ(poll(&p, 1, 0), 0) << "drained";
  // Destroying a node from its own callback is allowed too.
  nb->reset();
}

// An error or a refusal is never reported ok (an app may check only that flag).
TEST(Node, FailuresAreNeverReportedOk) {
  TempDir tmp;
  auto b = Device::Create(tmp / "b");
  ASSERT_TRUE(b.ok());
  // A port nothing listens on: bound, then closed.
  std::string address;
  const int s = BindLoopback(&address, false);
  ASSERT_GE(s, 0);
  close(s);
  net::NodeOptions o;
  o.mode = net::NodeMode::kOnce;
  o.peers = {address};
  Events events;  // before the node: it outlives the node's last event
  auto n = (*b)->NewNode(o);
  ASSERT_TRUE(n.ok());
  events.Attach(**n);
  ASSERT_TRUE((*n)->Start().ok());
  auto error = events.WaitFor(NodeEventKind::kError);
  ASSERT_TRUE(error);
  EXPECT_FALSE(error->ok) << error->message;
  auto done = events.WaitFor(NodeEventKind::kDone);
  ASSERT_TRUE(done);
  EXPECT_FALSE(done->ok);
}

TEST(Node, StartAndStopAThousandTimesLeaksNothing) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  // One cycle first: runtimes start helper threads of their own on first use (the
  // sanitizers' background thread, say), which are not the node's.
  {
    auto n = ListeningNode(**a);
    ASSERT_TRUE(n.ok() && (*n)->Start().ok());
  }
  const size_t fds = OpenDescriptors(), threads = Threads();
  for (int i = 0; i < 1000; ++i) {
    auto n = ListeningNode(**a);
    ASSERT_TRUE(n.ok());
    ASSERT_TRUE((*n)->Start().ok());
    if (i % 2) (*n)->Stop();  // else the destructor stops it
  }
  EXPECT_EQ(OpenDescriptors(), fds);
  EXPECT_EQ(Threads(), threads);
}

TEST(Node, BadOptionsAreRefusedAtStart) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  auto start = [&](net::NodeOptions o) {
    auto n = (*a)->NewNode(std::move(o));
    return n.ok() ? (*n)->Start() : n.status();
  };
  net::NodeOptions o;
  EXPECT_EQ(start(o).code(), Code::kInvalidArgument) << "live with neither listen nor peer";
  o.peers = {"nowhere"};
  EXPECT_EQ(start(o).code(), Code::kInvalidArgument);
  o.peers = {};
  o.listen = "127.0.0.1:99999";
  EXPECT_EQ(start(o).code(), Code::kInvalidArgument);
  o.listen = "127.0.0.1:0";
  o.discover = true;
  o.listen = "";
  EXPECT_EQ(start(o).code(), Code::kInvalidArgument);
  // A port someone else holds: an I/O error, not a crash.
  net::NodeOptions first;
  first.listen = "127.0.0.1:0";
  auto n1 = (*a)->NewNode(first);
  ASSERT_TRUE(n1.ok() && (*n1)->Start().ok());
  net::NodeOptions second;
  second.listen = (*n1)->Snapshot().listen;
  auto b = Device::Create(tmp / "b");
  ASSERT_TRUE(b.ok());
  auto n2 = (*b)->NewNode(second);
  ASSERT_TRUE(n2.ok());
  EXPECT_EQ((*n2)->Start().code(), Code::kIo);
  // A second live node on one replica: refused while the first runs.
  EXPECT_EQ(start(second).code(), Code::kBusy);
  // A node starts once.
  EXPECT_EQ((*n1)->Start().code(), Code::kInvalidArgument);
}

// The registry is keyed by the open data file, not the directory: a directory removed and
// made again (its inode may be reused) is a new device, not the old one still open.
TEST(Device, ARemovedAndRecreatedDirectoryIsANewDevice) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  std::filesystem::remove_all(tmp / "a");
  auto b = Device::Create(tmp / "a");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_NE(a->get(), b->get());
  EXPECT_NE((*a)->device_id(), (*b)->device_id());
}

TEST(Device, OpeningADirectoryTwiceGivesTheSameDevice) {
  TempDir tmp;
  auto a = Device::Create(tmp / "a");
  ASSERT_TRUE(a.ok());
  auto again = Device::Open(tmp / "a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(a->get(), again->get());
  auto other_spelling = Device::Open(tmp.path() + "/a/./");
  ASSERT_TRUE(other_spelling.ok());
  EXPECT_EQ(a->get(), other_spelling->get());
  EXPECT_EQ(
      Device::Open(tmp / "a", device::OpenOptions{storage::Durability::kRelaxed}).status().code(),
      Code::kInvalidArgument);
  EXPECT_EQ(Device::Open(tmp / "missing").status().code(), Code::kNotFound);
}

// Every replica id a device takes is bound to its key (net/binding.h): when it is made,
// after a restore, and when a copy of its directory is opened.
TEST(Device, EveryReplicaIdItTakesIsBoundToItsKey) {
  TempDir tmp;
  auto bound_id = [](Device& d) -> engine::ReplicaId {
    auto info = d.GetInfo();
    EXPECT_TRUE(info.ok());
    if (!info.ok()) return {};
    auto b = net::FindBinding(d.replica(), info->replica_id);
    EXPECT_TRUE(b.ok() && b->has_value()) << "replica " << info->replica_id.Hex() << " unbound";
    if (b.ok() && b->has_value()) {
      EXPECT_EQ(net::DeviceId((*b)->device), d.device_id());
    }
    return info->replica_id;
  };
  engine::ReplicaId first;
  {
    auto a = Device::Create(tmp / "a");
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    first = bound_id(**a);
    ASSERT_TRUE((*a)->Backup(tmp / "backup").ok());
  }
  ASSERT_TRUE(Device::Restore(tmp / "backup", tmp / "restored").ok());
  {
    auto r = Device::Open(tmp / "restored");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const engine::ReplicaId id = bound_id(**r);
    EXPECT_NE(id, first);
  }
  std::filesystem::copy(tmp / "a", tmp / "copy", std::filesystem::copy_options::recursive);
  {
    auto c = Device::Open(tmp / "copy");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_NE(bound_id(**c), first);
  }
}

}  // namespace
}  // namespace tandem::testing
