// Copies, restores and rollbacks of an LMDB replica: each must keep every peer whole.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <thread>

#include "../../integration/process.h"
#include "../../integration/raw_lmdb.h"
#include "../../integration/read_only_mount.h"
#include "sync_once.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/sync.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {
namespace {

using engine::Value;

namespace fs = std::filesystem;

engine::ReplicaMeta MetaOf(const std::string& dir) {
  auto r = OpenReplica(dir);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? (*r)->Meta().value() : engine::ReplicaMeta{};
}

// Makes a replica in `dir` holding c/r.x = 1, and a backup of it in `backup` if given.
void MakeOneRecord(const std::string& dir, const std::string& backup = "") {
  auto r = CreateReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE((*r)->Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());
  if (!backup.empty()) {
    ASSERT_TRUE(Backup(StoreOf(**r), backup).ok());
  }
}

// `cp -a a a2` (a phone migration, a VM clone, a file-level restore): the copy must not
// issue the dots its original issues, or peers would keep only one of each pair.
TEST(LmdbStore, ACopiedDirectoryTakesANewReplicaIdWhenOpened) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", a2 = tmp / "a2", moved = tmp / "moved";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(a));
  const engine::ReplicaMeta before = MetaOf(a);
  fs::copy(a, a2, fs::copy_options::recursive);
  const engine::ReplicaMeta copy = MetaOf(a2);
  EXPECT_NE(copy.id, before.id);
  EXPECT_EQ(copy.vv.Get(before.id), 1u) << "the original's events stay, as a foreign replica's";
  EXPECT_EQ(copy.vv.Get(copy.id), 0u);
  EXPECT_EQ(MetaOf(a2).id, copy.id) << "taken once, not at every open";
  EXPECT_EQ(MetaOf(a).id, before.id) << "the original is where it was created";
  // Renaming within a filesystem is not a copy.
  fs::rename(a, moved);
  EXPECT_EQ(MetaOf(moved).id, before.id);
  // Both write; their dots differ, so a peer keeps both.
  auto r1 = OpenReplica(moved), r2 = OpenReplica(a2);
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_TRUE((*r1)->Put("c", "one", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE((*r2)->Put("c", "two", {{"x", Value{int64_t{2}}}}).ok());
  EXPECT_NE((*r1)->Meta()->id, (*r2)->Meta()->id);
  ASSERT_TRUE(Check(StoreOf(**r2)).ok());
}

// Options that take every filesystem for one without birth times, and the id of the
// replica in `dir` opened with them.
Options WithoutBirthTimes() {
  Options o;
  o.without_birth_times = true;
  return o;
}
engine::ReplicaId IdWithoutBirthTimes(const std::string& dir) {
  auto r = OpenReplica(dir, WithoutBirthTimes());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? (*r)->Meta()->id : engine::ReplicaId{};
}

// On a filesystem that keeps no birth time (ext2, ext4 with 128-byte inodes), a copy put
// back where its original was (`rm -rf a; cp -a backup a`) may get the original's inode
// number again. The origin file's change time, which no copy keeps, tells it apart: it
// takes a new id, and its next write cannot reuse a dot a peer holds of a lost write.
TEST(LmdbStore, ACopyPutBackWhereItsOriginalWasTakesANewIdWithoutBirthTimes) {
  const Options no_birth_times = WithoutBirthTimes();
  testing::TempDir tmp;
  const std::string a = tmp / "a", backup = tmp / "backup";
  {
    auto r = CreateReplica(a, no_birth_times);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE((*r)->Put("c", "r", {{"x", Value{int64_t{1}}}}).ok());
  }
  ASSERT_TRUE(fs::exists(a + "/origin"));
  const engine::ReplicaId before = IdWithoutBirthTimes(a);
  EXPECT_EQ(IdWithoutBirthTimes(a), before) << "where it was made, it keeps its id";
  fs::copy(a, backup, fs::copy_options::recursive);
  {
    auto r = OpenReplica(a, no_birth_times);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Put("c", "lost", {{"x", Value{int64_t{2}}}}).ok());
  }
  // A filesystem with one-second change times cannot tell a copy made in the same second.
  struct statx made {};
  ASSERT_EQ(::statx(AT_FDCWD, (a + "/origin").c_str(), 0, STATX_CTIME, &made), 0);
  if (made.stx_ctime.tv_nsec == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // Put back as the inode number would come back: the data file's contents replaced in
  // place, the origin file made anew by the copy.
  fs::copy_file(backup + "/data.mdb", a + "/data.mdb", fs::copy_options::overwrite_existing);
  fs::remove(a + "/origin");
  fs::copy_file(backup + "/origin", a + "/origin");
  auto restored = OpenReplica(a, no_birth_times);
  ASSERT_TRUE(restored.ok());
  const engine::ReplicaMeta meta = (*restored)->Meta().value();
  restored->reset();
  EXPECT_NE(meta.id, before);
  EXPECT_EQ(meta.vv.Get(before), 1u);
  EXPECT_EQ(IdWithoutBirthTimes(a), meta.id) << "taken once";
  // An origin file removed: the safe side, a new id.
  fs::remove(a + "/origin");
  EXPECT_NE(IdWithoutBirthTimes(a), meta.id);
  EXPECT_TRUE(fs::exists(a + "/origin"));
}

// A replica whose origin was recorded before origin files, on such a filesystem, adopts
// where it is (keeps its id) and makes its origin file; so does one whose file was made
// but not recorded (a crash, a full disk, another process between the two).
TEST(LmdbStore, AnOriginFromBeforeOriginFilesIsAdopted) {
  const Options no_birth_times = WithoutBirthTimes();
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  ASSERT_TRUE(CreateReplica(a, no_birth_times).ok());
  const engine::ReplicaId before = IdWithoutBirthTimes(a);
  std::string origin = testing::RawGet(a, "meta", "origin");
  ASSERT_EQ(origin.size(), 24u);
  std::fill(origin.begin() + 16, origin.end(), '\0');
  for (bool file_made : {false, true}) {
    ASSERT_NO_FATAL_FAILURE(testing::RawPut(a, "meta", "origin", origin));
    if (!file_made) fs::remove(a + "/origin");
    EXPECT_EQ(IdWithoutBirthTimes(a), before) << file_made;
    EXPECT_TRUE(fs::exists(a + "/origin"));
    EXPECT_NE(testing::RawGet(a, "meta", "origin"), origin);
    EXPECT_EQ(IdWithoutBirthTimes(a), before);
  }
}

// A lock file deleted (as "stale") while another process has the replica open: a process
// that opens it then would make a new one, take itself for the only one, and the two
// would write over each other's pages. Refused instead, with what to do; once the other
// process is gone, the replica opens, whole.
TEST(LmdbStore, AReplicaWhoseLockFileWasReplacedUnderAnotherProcessIsRefused) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  {
    auto r = CreateReplica(dir);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->Put("c", "r1", {{"x", engine::Value{int64_t{1}}}}).ok());
  }
  int up[2], down[2];
  ASSERT_EQ(pipe(up), 0);
  ASSERT_EQ(pipe(down), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // another process with the replica open, as a daemon would have it
    close(up[0]);
    close(down[1]);
    auto r = OpenReplica(dir);
    const char ok = r.ok() ? 'y' : 'n';
    if (write(up[1], &ok, 1) != 1) _exit(2);
    char c;
    while (read(down[0], &c, 1) > 0) {
    }
    _exit(r.ok() && (*r)->Put("c", "r2", {{"x", engine::Value{int64_t{2}}}}).ok() ? 0 : 3);
  }
  close(up[1]);
  close(down[0]);
  char ok = 0;
  ASSERT_EQ(read(up[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  ASSERT_EQ(::unlink((dir + "/lock.mdb").c_str()), 0);
  {
    auto r = OpenReplica(dir);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kBusy) << r.status().ToString();
    EXPECT_NE(r.status().message().find("lock.mdb is not the lock file"), std::string::npos)
        << r.status().ToString();
  }
  close(down[1]);  // the other process writes, then ends
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  close(up[0]);
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)->Get("c", "r1").ok());
  EXPECT_TRUE((*r)->Get("c", "r2").ok());
  EXPECT_TRUE(Check(StoreOf(**r)).ok());
}

// A copy opened to be read keeps its original's id and refuses every write (it would
// issue its original's dots); opened to write, it takes an id of its own as before. A
// replica where it was made opens for writing as usual, inspected or not.
TEST(LmdbStore, ACopyOpenedToBeReadIsLeftAsItIs) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", a2 = tmp / "a2";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(a));
  const engine::ReplicaMeta original = MetaOf(a);
  fs::copy(a, a2, fs::copy_options::recursive);
  Options inspect;
  inspect.inspect = true;
  {
    auto r = OpenReplica(a2, inspect);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(IsInspectedCopy(StoreOf(**r)));
    EXPECT_EQ((*r)->Meta()->id, original.id);
    EXPECT_TRUE((*r)->Get("c", "r").ok());
    Status st = (*r)->Put("c", "r2", {{"x", Value{int64_t{2}}}});
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
    EXPECT_NE(st.message().find("opened only to be read"), std::string::npos) << st.ToString();
    EXPECT_FALSE((*r)->Get("c", "r2").ok());
    EXPECT_TRUE(Check(StoreOf(**r)).ok());
  }
  {
    auto r = OpenReplica(a, inspect);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(IsInspectedCopy(StoreOf(**r)));
    EXPECT_TRUE((*r)->Put("c", "r3", {{"x", Value{int64_t{3}}}}).ok());
  }
  const engine::ReplicaMeta copy = MetaOf(a2);  // opened to write
  EXPECT_NE(copy.id, original.id);
  auto r = OpenReplica(a2, inspect);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(IsInspectedCopy(StoreOf(**r))) << "no longer a copy: it has its own id";
}

// A replica from before origins were recorded, opened to be read, is not adopted (a
// write): the first open that writes does it, keeping its id.
TEST(LmdbStore, AReplicaFromBeforeOriginsOpenedToBeReadIsLeftAsItIs) {
  testing::TempDir tmp;
  const std::string a = tmp / "a";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(a));
  const engine::ReplicaMeta original = MetaOf(a);
  ASSERT_NO_FATAL_FAILURE(testing::RawPut(a, "meta", "origin", nullptr));
  Options inspect;
  inspect.inspect = true;
  {
    auto r = OpenReplica(a, inspect);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->Meta()->id, original.id);
    EXPECT_TRUE((*r)->Get("c", "r").ok());
  }
  EXPECT_EQ(testing::RawGet(a, "meta", "origin"), "") << "a read recorded an origin";
  EXPECT_EQ(MetaOf(a).id, original.id);  // opened to write: adopted where it is
  EXPECT_NE(testing::RawGet(a, "meta", "origin"), "");
}

// A replica or a backup on a read-only medium (a snapshot, a write-protected stick) is
// read, opened to be read, without the lock file it cannot have there; every write is
// refused with a clear error, and an older format (whose first open writes the tables it
// lacks) is refused as such.
TEST(LmdbStore, AReplicaOnAReadOnlyMediumIsReadAsItIs) {
  testing::TempDir tmp;
  const std::string dir = tmp / "disk", ro = tmp / "ro";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(dir + "/a", dir + "/bak"));
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(dir + "/old", dir + "/oldbak"));
  {
    testing::RawWriter w(dir + "/oldbak");
    ASSERT_EQ(mdb_drop(w.txn, w.Open("fresh"), 1), 0);
    w.Commit();
  }
  fs::remove(fs::path(dir) / "oldbak" / "lock.mdb");
  const engine::ReplicaMeta original = MetaOf(dir + "/a");
  testing::ReadOnlyMount mount(dir, ro);
  if (!mount.Mounted()) GTEST_SKIP() << "a read-only bind mount needs root";
  Options inspect;
  inspect.inspect = true;
  for (const char* name : {"a", "bak"}) {
    SCOPED_TRACE(name);
    const std::string at = ro + "/" + name;
    auto r = OpenReplica(at, inspect);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->Meta()->id, original.id);
    auto rec = (*r)->Get("c", "r");
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_TRUE(Check(StoreOf(**r)).ok());
    Status st = (*r)->Put("c", "r2", {{"x", Value{int64_t{2}}}});
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find("read-only medium"), std::string::npos) << st.ToString();
    auto w = OpenReplica(at);  // to write: refused, naming the cause
    ASSERT_FALSE(w.ok());
    const std::string cause = name == std::string("bak") ? "is a backup" : "read-only file system";
    EXPECT_NE(w.status().message().find(cause), std::string::npos) << w.status().ToString();
  }
  // A read-only view of a replica another process has open (writable where it is) is
  // not read without a lock: that process could reuse the pages being read.
  int ready[2], done[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(done), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto held = OpenReplica(dir + "/a");
    char c = held.ok() ? 'y' : 'n';
    if (::write(ready[1], &c, 1) != 1 || ::read(done[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  auto busy = OpenReplica(ro + "/a", inspect);
  EXPECT_FALSE(busy.ok());
  EXPECT_EQ(busy.status().code(), Code::kBusy) << busy.status().ToString();
  EXPECT_NE(busy.status().message().find("process " + std::to_string(child) + " has open"),
            std::string::npos)
      << busy.status().ToString();
  ASSERT_EQ(::write(done[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  for (int fd : {ready[0], ready[1], done[0], done[1]}) ::close(fd);
  EXPECT_TRUE(OpenReplica(ro + "/a", inspect).ok()) << "once that process is gone";
  auto old = OpenReplica(ro + "/oldbak", inspect);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kUnsupported) << old.status().ToString();
  EXPECT_NE(old.status().message().find("read-only medium"), std::string::npos);
  // Restored from there, it is a replica of its own.
  Status st = Restore(ro + "/oldbak", tmp / "restored");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(OpenReplica(tmp / "restored").ok());
}

// Restore used to fail on a backup larger than the initial 64 MiB map ("map full"),
// leaving behind a directory that opened as a clone of the backed-up replica.
TEST(LmdbStore, RestoreOfABackupLargerThanTheInitialMap) {
  testing::TempDir tmp;
  const std::string src = tmp / "src", bak = tmp / "bak", dst = tmp / "dst";
  engine::ReplicaId src_id;
  {
    Options o;
    o.durability = Durability::kRelaxed;  // the data volume is the point, not its fsyncs
    auto r = CreateReplica(src, o);
    ASSERT_TRUE(r.ok());
    const std::string big(120 << 10, 'x');
    for (int i = 0; i < 650; i += 50) {
      ASSERT_TRUE((*r)->Write([&](engine::Batch& b) {
                        for (int k = i; k < i + 50; ++k)
                          TANDEM_RETURN_IF_ERROR(
                              b.Put("files", std::to_string(k), "body", Value{big}));
                        return Status::Ok();
                      })
                      .ok());
    }
    src_id = (*r)->Meta()->id;
    ASSERT_TRUE(Backup(StoreOf(**r), bak).ok());
  }
  ASSERT_GT(fs::file_size(fs::path(bak) / "data.mdb"), size_t{64} << 20);
  auto read = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  const std::string before = read(bak + "/data.mdb");
  Status st = Restore(bak, dst);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(read(bak + "/data.mdb") == before) << "restore changed the backup";
  auto r = OpenReplica(dst);
  ASSERT_TRUE(r.ok());
  EXPECT_NE((*r)->Meta()->id, src_id);
  EXPECT_TRUE(Check(StoreOf(**r)).ok());
  EXPECT_TRUE((*r)->Get("files", "649").ok());
  ASSERT_TRUE((*r)->Put("files", "new", {{"body", Value{std::string("y")}}}).ok());
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".restoring"), std::string::npos) << e.path();
}

TEST(LmdbStore, AFailedRestoreLeavesNoReplicaBehind) {
  testing::TempDir tmp;
  const std::string src = tmp / "src", bak = tmp / "bak", dst = tmp / "dst";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(src, bak));
  // A key file that cannot be copied makes the restore fail half-way.
  fs::create_directory(fs::path(bak) / "group.key");
  Status st = Restore(bak, dst, {"group.key"});
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(fs::exists(dst));
  EXPECT_FALSE(IsReplicaDir(dst));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".restoring"), std::string::npos) << e.path();
}

// A backup is only read: a restore writes no lock file into it, and does not give a
// backup of an older format (here one from before the `fresh` table) the tables it
// lacks. A backup on a read-only medium restores alike.
TEST(LmdbStore, ARestoreLeavesTheBackupAsItWas) {
  testing::TempDir tmp;
  const std::string src = tmp / "src", bak = tmp / "bak";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(src, bak));
  {
    testing::RawWriter w(bak);
    ASSERT_EQ(mdb_drop(w.txn, w.Open("fresh"), 1), 0);
    uint32_t nine = kFormatHeld;
    MDB_val k{6, const_cast<char*>("format")}, v{4, &nine};
    ASSERT_EQ(mdb_put(w.txn, w.Open("meta"), &k, &v, 0), 0);
    w.Commit();
  }
  fs::remove(fs::path(bak) / "lock.mdb");  // a backup has none
  auto snapshot = [&] {
    std::string s;
    for (const auto& e : fs::directory_iterator(bak)) {
      std::ifstream in(e.path(), std::ios::binary);
      s += e.path().filename().string() + ":" +
           std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return s;
  };
  const std::string before = snapshot();
  for (const char* to : {"one", "two"}) {
    Status st = Restore(bak, tmp / to);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(snapshot() == before) << "the restore to " << to << " changed the backup";
    EXPECT_FALSE(fs::exists(fs::path(bak) / "lock.mdb"));
    auto r = OpenReplica(tmp / to);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(Check(StoreOf(**r)).ok());
    auto rec = (*r)->Get("c", "r");
    ASSERT_TRUE(rec.ok());
  }
  // A backup with a damaged field value is refused (by the check of its copy), still
  // untouched, and leaves nothing behind.
  {
    testing::RawWriter w(bak);
    const MDB_dbi fields = w.Open("fields");
    MDB_cursor* c;
    ASSERT_EQ(mdb_cursor_open(w.txn, fields, &c), 0);
    MDB_val k, v;
    ASSERT_EQ(mdb_cursor_get(c, &k, &v, MDB_FIRST), 0);
    std::string bytes(static_cast<const char*>(v.mv_data), v.mv_size);
    bytes.back() ^= 1;
    v = MDB_val{bytes.size(), bytes.data()};
    ASSERT_EQ(mdb_cursor_put(c, &k, &v, MDB_CURRENT), 0);
    mdb_cursor_close(c);
    w.Commit();
  }
  fs::remove(fs::path(bak) / "lock.mdb");
  const std::string damaged = snapshot();
  Status st = Restore(bak, tmp / "three");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("backup"), std::string::npos) << st.ToString();
  EXPECT_TRUE(snapshot() == damaged);
  EXPECT_FALSE(fs::exists(tmp / "three"));
  for (const auto& e : fs::directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".restoring"), std::string::npos) << e.path();
}

// Restores `snapshot` over DIR/data.mdb in place (same inode): the replica cannot see
// it at open.
void RestoreInPlace(const std::string& snapshot, const std::string& dir) {
  std::ifstream in(snapshot, std::ios::binary);
  std::ofstream out(dir + "/data.mdb", std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

// Closes *r, restores `snapshot` over DIR in place and opens it again: an in-place
// rollback, which keeps the replica id (returned; the test stops if it changed).
engine::ReplicaId RollBackInPlace(Result<std::unique_ptr<engine::Replica>>& r,
                                  const std::string& snapshot, const std::string& dir) {
  const engine::ReplicaId id = (*r)->Meta()->id;
  r->reset();
  RestoreInPlace(snapshot, dir);
  r = OpenReplica(dir);
  if (!r.ok()) {
    ADD_FAILURE() << r.status().ToString();
    return id;
  }
  EXPECT_EQ((*r)->Meta()->id, id) << "an in-place rollback cannot be seen at open";
  return id;
}

// A snapshot restored in place (same file, same inode: a VM or filesystem snapshot, or
// `cp old/data.mdb a/data.mdb` over the file) cannot be seen at open. A peer holding
// more of the replica's events than it has shows it at the next sync: the replica takes
// a new id before it writes again, and gets back what it lost from that peer.
TEST(LmdbStore, ARollbackInPlaceIsFoundAtSyncAndHealed) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b", snap = tmp / "snapshot.mdb";
  auto ra = CreateReplica(a);
  auto rb = CreateReplica(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_TRUE((*ra)->Put("c", "early", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  fs::copy_file(a + "/data.mdb", snap);
  ASSERT_TRUE((*ra)->Put("c", "late", {{"x", Value{int64_t{2}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  // Same inode, so the origin still matches.
  const engine::ReplicaId old_id = RollBackInPlace(ra, snap, a);
  ASSERT_TRUE(ra.ok());
  EXPECT_FALSE((*ra)->Get("c", "late").ok()) << "rolled back";
  engine::Session* ended = nullptr;
  Status st = SyncOnce(**ra, **rb, &ended);
  EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
  EXPECT_NE(ended, nullptr) << "the session ends as rolled back: " << st.ToString();
  const engine::ReplicaMeta now = (*ra)->Meta().value();
  EXPECT_NE(now.id, old_id);
  // The next session runs under the new id and brings back what the rollback lost.
  st = SyncOnce(**ra, **rb);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE((*ra)->Get("c", "late").ok());
  ASSERT_TRUE((*ra)->Put("c", "after", {{"x", Value{int64_t{3}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*rb)->Get("c", "after").ok()) << "a write after the rollback reaches the peer";
  EXPECT_TRUE(Check(StoreOf(**ra)).ok());
}

// The peer holds an event of ours that its version vector does not claim (it came in a
// state applied outside a complete session): what it holds is evidence enough.
TEST(LmdbStore, ARollbackIsFoundByWhatThePeerHoldsNotOnlyByWhatItClaims) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b", snap = tmp / "snapshot.mdb";
  auto ra = CreateReplica(a);
  auto rb = CreateReplica(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_TRUE((*ra)->Put("c", "early", {{"x", Value{int64_t{1}}}}).ok());
  fs::copy_file(a + "/data.mdb", snap);
  ASSERT_TRUE((*ra)->Put("c", "late", {{"x", Value{int64_t{2}}}}).ok());
  auto late = (*ra)->GetState("c", "late");
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(
      (*rb)->ApplyDeltas({engine::FieldDelta{{"c", "late", "x"}, late->fields.at("x")}}).ok());
  const engine::ReplicaId old_id = (*ra)->Meta()->id;
  EXPECT_EQ((*rb)->Meta()->vv.Get(old_id), 0u) << "the peer claims nothing of a";
  RollBackInPlace(ra, snap, a);
  ASSERT_TRUE(ra.ok());
  // Seen at b's request, before a answers anything: a CaughtUp from a would let b take
  // a's version vector while b's cursor into a's log reads a log a no longer has.
  engine::Session sa(**ra, {}), sb(**rb, {});
  std::vector<engine::Message> to_a, to_b, ignored;
  ASSERT_TRUE(sa.Start(&to_b).ok());
  ASSERT_TRUE(sb.Start(&to_a).ok());
  ASSERT_TRUE(sb.Receive(to_b.at(0), &to_a).ok());     // a's Hello: b asks
  ASSERT_TRUE(sa.Receive(to_a.at(0), &ignored).ok());  // b's Hello: a asks
  ASSERT_EQ(to_a.size(), 2u);
  Status st = sa.Receive(to_a.at(1), &ignored);  // b's SyncRequest
  EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
  EXPECT_TRUE(sa.rolled_back());
  EXPECT_NE((*ra)->Meta()->id, old_id) << "the rollback went unseen";
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*ra)->Get("c", "late").ok());
}

// No event of ours was lost, but the peer read our log further than it now reaches: its
// cursor belongs to a log we no longer have, and what we write next would land below it.
TEST(LmdbStore, ARollbackIsFoundByAPeerCursorPastTheEndOfTheLog) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b", c = tmp / "c", snap = tmp / "snapshot.mdb";
  auto ra = CreateReplica(a);
  auto rb = CreateReplica(b);
  auto rc = CreateReplica(c);
  ASSERT_TRUE(ra.ok() && rb.ok() && rc.ok());
  ASSERT_TRUE((*ra)->Put("c", "mine", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  fs::copy_file(a + "/data.mdb", snap);
  // After the snapshot, a only relays: c's records reach b through a.
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE((*rc)->Put("c", "from-c-" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
  ASSERT_TRUE(SyncOnce(**rc, **ra).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  const engine::ReplicaId old_id = RollBackInPlace(ra, snap, a);
  ASSERT_TRUE(ra.ok());
  engine::Session* ended = nullptr;
  Status st = SyncOnce(**ra, **rb, &ended);
  EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
  EXPECT_NE((*ra)->Meta()->id, old_id) << "the rollback went unseen";
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ASSERT_TRUE((*ra)->Put("c", "after", {{"x", Value{int64_t{3}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*rb)->Get("c", "after").ok()) << "a write after the rollback reaches the peer";
  EXPECT_TRUE((*ra)->Get("c", "from-c-4").ok());
}

// Nothing of ours was lost and the log regrows past the peer's cursor before the peer
// syncs again: under the same positions, the peer would read on from its cursor and skip
// what came in since. A process starts its positions past the wall clock's microseconds,
// so the peer reads all of it (and its mark of where the log ended lies in the gap the
// new process skipped, which shows the rollback).
TEST(LmdbStore, ALogRegrownAfterARollbackIsReadWholeByThePeer) {
  testing::TempDir tmp;
  const std::string a = tmp / "a", b = tmp / "b", c = tmp / "c", d = tmp / "d",
                    snap = tmp / "snapshot.mdb";
  auto ra = CreateReplica(a);
  auto rb = CreateReplica(b);
  auto rc = CreateReplica(c);
  auto rd = CreateReplica(d);
  ASSERT_TRUE(ra.ok() && rb.ok() && rc.ok() && rd.ok());
  ASSERT_TRUE((*ra)->Put("c", "mine", {{"x", Value{int64_t{1}}}}).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  ra->reset();
  fs::copy_file(a + "/data.mdb", snap);
  ra = OpenReplica(a);
  ASSERT_TRUE(ra.ok());
  // After the snapshot a only relays: c's records reach b through a.
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE((*rc)->Put("c", "from-c-" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
  ASSERT_TRUE(SyncOnce(**rc, **ra).ok());
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  const engine::ReplicaId old_id = RollBackInPlace(ra, snap, a);
  ASSERT_TRUE(ra.ok());
  // More than c's records come in from d, which b never meets.
  for (int i = 0; i < 8; ++i)
    ASSERT_TRUE((*rd)->Put("c", "from-d-" + std::to_string(i), {{"x", Value{int64_t{i}}}}).ok());
  ASSERT_TRUE(SyncOnce(**rd, **ra).ok());
  Status st = SyncOnce(**ra, **rb);
  EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
  EXPECT_NE((*ra)->Meta()->id, old_id) << "the rollback went unseen";
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  for (int i = 0; i < 8; ++i)
    EXPECT_TRUE((*rb)->Get("c", "from-d-" + std::to_string(i)).ok()) << "from-d-" << i;
  ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
  EXPECT_TRUE((*ra)->Get("c", "from-c-2").ok());
}

// The lost timeline had rewritten a field, moving its log entry past where the peer
// then read to (the link was cut before the new entry): after the rollback the field is
// back below the peer's cursor, in a state the peer never had. Where the replica's log
// ended when the peer read it (its mark) shows the rollback: past the end of the log,
// or, once the replica wrote again, in the gap the new process skipped.
TEST(LmdbStore, ARollbackThatHadMovedAFieldPastThePeersCursorIsFound) {
  for (bool writes_again : {false, true}) {
    SCOPED_TRACE(writes_again ? "the replica wrote again" : "nothing written since");
    testing::TempDir tmp;
    const std::string a = tmp / "a", b = tmp / "b", snap = tmp / "snapshot.mdb";
    {
      auto ra = CreateReplica(a);
      ASSERT_TRUE(ra.ok());
      ASSERT_TRUE((*ra)->Put("c", "x", {{"v", Value{int64_t{1}}}}).ok());
      ASSERT_TRUE((*ra)->Put("c", "y", {{"v", Value{int64_t{1}}}}).ok());
    }
    fs::copy_file(a + "/data.mdb", snap);
    auto ra = OpenReplica(a);
    auto rb = CreateReplica(b);
    ASSERT_TRUE(ra.ok() && rb.ok());
    ASSERT_TRUE((*ra)->Put("c", "x", {{"v", Value{int64_t{2}}}}).ok());  // moves x past y
    {
      // b reads a's log one field per batch, and the link is cut after the first: b has
      // read past y, and x's old entry is gone.
      engine::SessionOptions one;
      one.batch_fields = 1;
      engine::Session sa(**ra, one), sb(**rb, one);
      std::vector<engine::Message> to_a, to_b;
      ASSERT_TRUE(sa.Start(&to_b).ok());
      ASSERT_TRUE(sb.Start(&to_a).ok());
      std::vector<engine::Message> from_b, from_a;
      ASSERT_TRUE(sb.Receive(to_b.at(0), &from_b).ok());  // a's Hello: b asks
      ASSERT_TRUE(sa.Receive(to_a.at(0), &from_a).ok());  // b's Hello
      from_a.clear();
      ASSERT_TRUE(sa.Receive(from_b.at(0), &from_a).ok());  // b's request: a sends
      ASSERT_FALSE(from_a.empty());
      std::vector<engine::Message> ignored;
      ASSERT_TRUE(sb.Receive(from_a.at(0), &ignored).ok());  // the first batch only
      ASSERT_TRUE((*rb)->Get("c", "y").ok());
      ASSERT_FALSE((*rb)->Get("c", "x").ok());
    }
    const engine::ReplicaId old_id = RollBackInPlace(ra, snap, a);
    ASSERT_TRUE(ra.ok());
    if (writes_again) {
      ASSERT_TRUE((*ra)->Put("c", "z", {{"v", Value{int64_t{3}}}}).ok());
    }
    Status st = SyncOnce(**ra, **rb);
    EXPECT_EQ(st.code(), Code::kBusy) << st.ToString();
    EXPECT_NE((*ra)->Meta()->id, old_id) << "the rollback went unseen";
    ASSERT_TRUE(SyncOnce(**ra, **rb).ok());
    auto x = (*rb)->Get("c", "x");
    ASSERT_TRUE(x.ok()) << "the peer skipped x";
    EXPECT_EQ(x->fields.at("v").scalar, Value{int64_t{1}});
    EXPECT_TRUE(Check(StoreOf(**ra)).ok());
  }
}

// An open of an existing replica that fails after making its lock file keeps it: another
// process may be using it already, and removing it would let a later one make another.
TEST(LmdbCopies, AFailedOpenOfAReplicaKeepsTheLockFileItMade) {
  testing::TempDir tmp;
  const std::string dir = tmp / "a";
  ASSERT_NO_FATAL_FAILURE(MakeOneRecord(dir));
  ASSERT_TRUE(fs::remove(dir + "/lock.mdb"));
  Options huge;
  huge.initial_map_bytes = size_t{1} << 50;  // more address space than there is
  auto failed = OpenReplica(dir, huge);
  ASSERT_FALSE(failed.ok());
  EXPECT_TRUE(fs::exists(dir + "/lock.mdb"));
  auto r = OpenReplica(dir);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)->Get("c", "r").ok());
}

}  // namespace
}  // namespace tandem::storage
