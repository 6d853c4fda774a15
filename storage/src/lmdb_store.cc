#include "tandem/storage/lmdb_store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "lmdb_internal.h"
#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"
#include "tandem/files/files.h"

namespace tandem::storage {

namespace {
constexpr uint32_t kLmdbMagic = 0xBEEFC0DE;
constexpr off_t kLockFileBytes = 32 << 10;  // LMDB needs 16,512 for 256 readers
}  // namespace

// LMDB reports a short write (what a full disk gives) as EIO. If the filesystem of `dir`
// is (nearly) out of space, say that instead: the fix is to free space, not to replace
// the disk.
Status DiskError(int rc, const std::string& what, const std::string& dir) {
  if (rc == EIO || rc == ENOSPC || rc == EDQUOT) {
    struct statvfs vfs;
    if (::statvfs(dir.c_str(), &vfs) == 0) {
      const uint64_t free_bytes = uint64_t{vfs.f_bavail} * vfs.f_frsize;
      if (rc != EIO || free_bytes < (uint64_t{1} << 20))
        return Status::Io(what + ": no space left on the disk holding " + dir + " (" +
                          std::to_string(free_bytes / 1024) +
                          " KiB free); free some space and try again");
    }
  }
  return Status();
}

Status LmdbError(int rc, const std::string& what) {
  if (rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED)
    return Status::Busy(what + ": map full, growing");
  if (rc == MDB_CORRUPTED || rc == MDB_INVALID || rc == MDB_PAGE_NOTFOUND ||
      rc == MDB_VERSION_MISMATCH)
    return Status::Corrupt(what + ": " + mdb_strerror(rc));
  return Status::Io(what + ": " + mdb_strerror(rc));
}

// Where a replica's data file lives: its device, inode and, where the filesystem keeps
// it, birth time (24 bytes, little-endian). The birth time tells a new file that reused
// a deleted one's inode number (`rm data.mdb; cp old data.mdb`) from the original; where
// there is none, the change time of the origin file does (lmdb_internal.h).
Result<std::string> Fingerprint(const std::string& dir, bool make, bool without_birth_times) {
  struct statx st;
  const std::string path = dir + "/data.mdb";
  if (::statx(AT_FDCWD, path.c_str(), 0, STATX_INO | STATX_BTIME, &st) != 0)
    return Status::Io("stat " + path + ": " + strerror(errno));
  auto ns = [](const struct statx_timestamp& t) {
    return static_cast<uint64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
  };
  // The device number is not stable across boots on some systems (btrfs subvolumes, LVM,
  // USB disks): with a birth time, inode and birth time alone identify the file.
  const bool btime = (st.stx_mask & STATX_BTIME) && ns(st.stx_btime) != 0 && !without_birth_times;
  uint64_t time = btime ? ns(st.stx_btime) : 0;
  if (!btime) {
    const std::string origin = dir + "/" + kOriginFile;
    struct statx ot;
    int rc = ::statx(AT_FDCWD, origin.c_str(), 0, STATX_CTIME, &ot);
    if (rc != 0 && errno == ENOENT && make) {
      // O_EXCL: of two processes making it at once, both then read the one that won.
      const int fd = ::open(origin.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
      if (fd < 0 && errno != EEXIST) return Status::Io("create " + origin + ": " + strerror(errno));
      if (fd >= 0) {
        ::close(fd);
        TANDEM_RETURN_IF_ERROR(files::SyncPath(origin));
        TANDEM_RETURN_IF_ERROR(files::SyncParent(origin));
      }
      rc = ::statx(AT_FDCWD, origin.c_str(), 0, STATX_CTIME, &ot);
    }
    if (rc == 0)
      time = std::max<uint64_t>(ns(ot.stx_ctime), 1);
    else if (errno != ENOENT)
      return Status::Io("stat " + origin + ": " + strerror(errno));
  }
  const uint64_t fields[3] = {btime ? 0 : (uint64_t{st.stx_dev_major} << 32) | st.stx_dev_minor,
                              st.stx_ino, time};
  std::string out(sizeof fields, '\0');
  std::memcpy(out.data(), fields, sizeof fields);
  return out;
}

bool AdoptsFrom(std::string_view was, std::string_view now) {
  if (was.size() != 24 || now.size() != 24 || was.substr(0, 16) != now.substr(0, 16)) return false;
  uint64_t time;
  std::memcpy(&time, was.data() + 16, 8);
  return time == 0;
}

ReplicaId RandomReplicaId() {
  ReplicaId id;
  do {
    ssize_t n = getrandom(id.bytes.data(), id.bytes.size(), 0);
    if (n != 16) abort();  // getrandom of 16 bytes cannot fail short on Linux >= 3.17
  } while (id.IsZero());
  return id;
}

uint64_t FirstLogSeqAt(uint64_t newest, int64_t now_us) {
  // A clock before 1970 (its count negative, which would wrap) or near 2^53 microseconds
  // (past 2219) is not taken: positions must stay below 2^53.
  constexpr int64_t kLatest = (int64_t{1} << 53) - (int64_t{1} << 50);
  const uint64_t clock = now_us > 0 && now_us < kLatest ? static_cast<uint64_t>(now_us) : 0;
  return std::max(newest, clock) + 1;
}

uint64_t FirstLogSeq(uint64_t newest) {
  return FirstLogSeqAt(newest, std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

Status CheckEmptyOrMissing(const std::string& dir, const char* what) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return Status::Ok();
  if (!fs::is_directory(dir, ec)) return Status::Invalid(dir + " exists and is not a directory");
  if (!fs::is_empty(dir, ec))
    return Status::Invalid(std::string(what) + ": " + dir + " is not empty" +
                           (IsReplicaDir(dir) ? " (it already holds a replica)" : ""));
  return Status::Ok();
}

// Checks that data.mdb starts with an LMDB meta page before LMDB touches the directory.
Status ProbeDataFile(const std::string& dir) {
  std::string path = dir + "/data.mdb";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return Status::NotFound(dir + ": no such directory");
    if (!fs::is_directory(dir, ec)) return Status::Invalid(dir + " is not a directory");
    return Status::NotFound(dir + " is not a Tandem replica (no data.mdb; create one with init)");
  }
  char buf[24] = {};
  in.read(buf, sizeof buf);
  uint32_t magic;
  std::memcpy(&magic, buf + 16, 4);
  if (in.gcount() < 24 || magic != kLmdbMagic)
    return Status::Corrupt(path + " is damaged or not an LMDB file");
  return Status::Ok();
}

// A replica's lock file that cannot be written: refused if a process holds LMDB's lock
// on its first byte (every process that has the environment open does).
Status CheckNoneHasItOpen(const std::string& dir) {
  const std::string lock = dir + "/lock.mdb";
  const int fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Ok();  // none: no process has it open
  struct flock l {};
  const bool known = FirstByteLock(fd, F_GETLK, F_WRLCK, &l);
  ::close(fd);
  if (known && l.l_type == F_UNLCK) return Status::Ok();
  return Status::Busy(
      dir + " is a read-only view of a replica that " +
      (known ? "process " + std::to_string(l.l_pid) + " has open" : "a process may have open") +
      ": it cannot be read safely from here; read it where it is writable");
}

// A lock file replaced while another process has the replica open (deleted as stale, or
// copied over from elsewhere): LMDB, finding no lock on it, takes this process for the
// only one, and the two would write over each other's pages. Every process of this build
// holds a shared flock on data.mdb while it has the environment open, taken after LMDB's
// lock: one held by another process while no other process holds LMDB's lock on this
// lock file means that process uses another one. Refused then, before anything is
// written. (A process of an older build takes no flock and is not seen.)
Status GuardLockFile(LmdbStore::Impl& impl, const std::string& dir) {
  const std::string data = dir + "/data.mdb";
  const int fd = ::open(data.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Io("open " + data + ": " + strerror(errno));
  impl.data_lock_fd = fd;  // closed with the store
  bool others = false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return Status::Io("lock " + data + ": " + strerror(errno));
    others = true;
  }
  // Shared from now on (from exclusive, or after the instant another process's own probe
  // holds it exclusively).
  while (::flock(fd, LOCK_SH) != 0)
    if (errno != EINTR) return Status::Io("lock " + data + ": " + strerror(errno));
  if (!others || impl.lock_fd < 0) return Status::Ok();
  struct flock l {};
  if (FirstByteLock(impl.lock_fd, F_GETLK, F_WRLCK, &l) && l.l_type == F_UNLCK)
    return Status::Busy(dir +
                        "/lock.mdb is not the lock file the other processes that have this "
                        "replica open use (was it deleted or replaced while one ran?): "
                        "this process would write beside them unseen and damage the "
                        "replica. Stop every process using it (tandem serve, sync, apps), "
                        "then open it again");
  return Status::Ok();
}

LmdbStore::LmdbStore(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
LmdbStore::~LmdbStore() = default;

Result<std::unique_ptr<LmdbStore>> Open(const std::string& dir, const Options& opt, bool create,
                                        bool stamp) {
  // A program started with a standard descriptor closed would have LMDB's files take it,
  // and its next message written into them.
  files::KeepStandardDescriptors();
  enum { kSameOrigin, kNoOrigin, kMoved } origin = kSameOrigin;
  auto impl = std::make_unique<LmdbStore::Impl>();
  impl->first_log_seq = opt.first_log_seq ? opt.first_log_seq : FirstLogSeq;
  impl->compact_floor = opt.compact_floor;
  impl->compact_slice = std::max<size_t>(opt.compact_slice, 1);
  impl->fold_floor = opt.fold_floor;
  impl->fold_slice = std::max<size_t>(opt.fold_slice, 1);
  int rc = mdb_env_create(&impl->env);
  if (rc) return LmdbError(rc, "create environment");
  if ((rc = mdb_env_set_maxdbs(impl->env, 16)) || (rc = mdb_env_set_maxreaders(impl->env, 256)))
    return LmdbError(rc, "configure environment");
  unsigned flags = MDB_NOTLS;
  if (opt.durability == Durability::kRelaxed) flags |= MDB_NOSYNC;
  const bool had_lock = fs::exists(dir + "/lock.mdb");
  impl->dir = dir;
  // A backup stays as it was made: refused to writers, and read without making a lock
  // file, which no writer needs to see since none may open it. One that has a lock file
  // (an older build opened it, and may still) is read through it, as any replica.
  const bool backup = !create && IsBackupDir(dir);
  if (backup && !opt.inspect)
    return Status::Invalid(dir +
                           " is a backup, kept as it was made: commands that read work on it; "
                           "to use it, restore it (tandem restore " +
                           dir + " NEWDIR)");
  if (backup && !had_lock) {
    impl->read_only = true;
    flags |= MDB_RDONLY | MDB_NOLOCK;
  } else {
    // LMDB maps lock.mdb and writes it through the mapping: a sparse file on a full disk
    // kills the process with SIGBUS. So its blocks are allocated first (LMDB keeps a
    // larger lock file as it is, with room for more readers).
    const std::string lock = dir + "/lock.mdb";
    int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    // A replica on a read-only medium (a snapshot, a write-protected stick), opened to be
    // read: LMDB reads it without a lock file, which keeps no writer from reusing the
    // pages it reads. So not while another process has it open, through a view of a
    // filesystem that is writable elsewhere (a read-only bind mount or container volume):
    // one that opens it during the read may still make the read fail.
    if (fd < 0 && errno == EROFS && opt.inspect && !create) {
      TANDEM_RETURN_IF_ERROR(CheckNoneHasItOpen(dir));
      impl->read_only = true;
      flags |= MDB_RDONLY;
    } else if (fd < 0 && errno == EROFS) {
      return Status::Io(dir +
                        " is on a read-only file system: commands that only read (ls, "
                        "get, dump, check, ...) work there, and this one writes");
    } else if (fd < 0) {
      return Status::Io("open " + lock + ": " + strerror(errno));
    }
    struct stat st;
    int err = fd < 0 ? 0 : ::fstat(fd, &st) != 0 ? errno : 0;
    if (fd >= 0 && !err && st.st_size < kLockFileBytes)
      err = ::posix_fallocate(fd, 0, kLockFileBytes);
    if (err)
      ::close(fd);
    else
      impl->lock_fd = fd;  // kept (Impl::HoldAlone); -1 on a read-only medium
    if (err) {
      if (!had_lock && create) ::unlink(lock.c_str());  // see below
      if (Status full = DiskError(err, "open " + dir, dir); !full.ok()) return full;
      return Status::Io("allocate " + lock + ": " + strerror(err));
    }
  }
  // Adopt the size on disk if it is larger than the initial size asked for.
  std::error_code ec;
  size_t on_disk = create ? 0 : static_cast<size_t>(fs::file_size(dir + "/data.mdb", ec));
  impl->map_bytes = std::max(opt.initial_map_bytes, ec ? 0 : on_disk);
  if ((rc = mdb_env_set_mapsize(impl->env, impl->map_bytes)))
    return LmdbError(rc, "set the map size of " + dir);
  // The owner's alone, as the keys beside it: a shop's customers and prices are not for
  // every account on the machine. (An existing file keeps the mode it has.)
  rc = mdb_env_open(impl->env, dir.c_str(), flags, 0600);
  if (rc) {
    // A new replica is left as it was found. An existing one keeps the lock file this
    // open made: another process may have opened it meanwhile, and one opened later would
    // make another, so the two would no longer exclude each other.
    if (!had_lock && create) fs::remove(dir + "/lock.mdb", ec);
    if (create) fs::remove(dir + "/data.mdb", ec);
    if (Status full = DiskError(rc, "open " + dir, dir); !full.ok()) return full;
    return LmdbError(rc, "open " + dir);
  }
  // A data file cut short (a copy to a full stick, an interrupted transfer) still opens,
  // since LMDB reads only its first pages here; the first read of a page past its end
  // would then kill the process with SIGBUS. Refused before any page is read.
  if (!create) {
    MDB_envinfo info{};
    MDB_stat stat{};
    if ((rc = mdb_env_info(impl->env, &info)) || (rc = mdb_env_stat(impl->env, &stat)))
      return LmdbError(rc, "read the environment of " + dir);
    const uint64_t need = (static_cast<uint64_t>(info.me_last_pgno) + 1) * stat.ms_psize;
    const uint64_t have = fs::file_size(dir + "/data.mdb", ec);
    if (ec) return Status::Io("size of " + dir + "/data.mdb: " + ec.message());
    if (have < need)
      return Status::Corrupt(dir + "/data.mdb is truncated: " + std::to_string(have) +
                             " bytes, but its pages run to " + std::to_string(need) +
                             " (a copy cut short?); restore it from a backup");
  }
  if (!impl->read_only) TANDEM_RETURN_IF_ERROR(GuardLockFile(*impl, dir));
  int dead = 0;
  // Clears the reader slots of killed processes.
  if ((rc = mdb_reader_check(impl->env, &dead)))
    return LmdbError(rc, "check the readers of " + dir);

  MDB_txn* txn;
  if ((rc = mdb_txn_begin(impl->env, nullptr, create ? 0 : MDB_RDONLY, &txn)))
    return LmdbError(rc, "begin");
  unsigned dbflags = create ? MDB_CREATE : 0;
  rc = mdb_dbi_open(txn, "meta", dbflags, &impl->meta);
  if (rc == MDB_NOTFOUND) {
    // Tandem's other tables without `meta`: a replica damaged (a copy taken while it was
    // written, say), not another program's environment.
    MDB_dbi probe;
    const bool ours = mdb_dbi_open(txn, "fields", 0, &probe) == 0 ||
                      mdb_dbi_open(txn, "log", MDB_INTEGERKEY, &probe) == 0;
    mdb_txn_abort(txn);
    if (ours)
      return Status::Corrupt(dir +
                             "/data.mdb is damaged: it holds a Tandem replica's tables "
                             "but not its `meta` table (a copy taken while it was "
                             "written?); restore it from a backup");
    return Status::NotFound(dir + " holds an LMDB environment but not a Tandem replica");
  }
  if (!rc) rc = mdb_dbi_open(txn, "fields", dbflags, &impl->fields);
  if (!rc) rc = mdb_dbi_open(txn, "log", dbflags | MDB_INTEGERKEY, &impl->log);
  if (!rc) rc = mdb_dbi_open(txn, "replicas", dbflags | MDB_INTEGERKEY, &impl->replicas);
  if (!rc) rc = mdb_dbi_open(txn, "names", dbflags | MDB_INTEGERKEY, &impl->names_db);
  if (!rc) rc = mdb_dbi_open(txn, "peers", dbflags, &impl->peers);
  // The blob tables and `fresh` came later: a replica from before has none until they
  // are made below.
  bool late_tables = true;
  if (!rc) rc = mdb_dbi_open(txn, "blobs", dbflags, &impl->blobs);
  if (!rc) rc = mdb_dbi_open(txn, "chunks", dbflags, &impl->chunks);
  if (!rc) rc = mdb_dbi_open(txn, "fresh", dbflags, &impl->fresh);
  if (rc == MDB_NOTFOUND && !create) {
    late_tables = false;
    rc = 0;
  }
  if (rc) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "open databases in " + dir);
  }
  MDB_val k = Val("format"), v;
  if (create) {
    uint32_t format = kFormatMark;  // 4 once something is collected (RaiseFormat)
    impl->format = format;
    v = MDB_val{4, &format};
    rc = mdb_put(txn, impl->meta, &k, &v, 0);
    ReplicaMeta meta;
    meta.id = opt.replica_id ? *opt.replica_id : opt.new_ids ? opt.new_ids() : RandomReplicaId();
    std::string m = EncodeMeta(meta);
    MDB_val mk = Val("replica"), mv = Val(m);
    if (!rc) rc = mdb_put(txn, impl->meta, &mk, &mv, 0);
    auto here = Fingerprint(dir, true, opt.without_birth_times);
    if (!here.ok()) {
      mdb_txn_abort(txn);
      return here.status();
    }
    MDB_val ok = Val("origin"), ov = Val(*here);
    if (!rc) rc = mdb_put(txn, impl->meta, &ok, &ov, 0);
    std::string hull = engine::EncodeLogHull(engine::LogHull{});
    MDB_val hk = Val("log-hull"), hv = Val(hull);
    if (!rc) rc = mdb_put(txn, impl->meta, &hk, &hv, 0);
    uint64_t end = 0;
    MDB_val ek = Val("log-hull-end"), ev{8, &end};
    if (!rc) rc = mdb_put(txn, impl->meta, &ek, &ev, 0);
    if (!rc)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc) return impl->Note(rc, "initialise " + dir);
  } else {
    rc = mdb_get(txn, impl->meta, &k, &v);
    if (rc || v.mv_size != 4) {
      mdb_txn_abort(txn);
      return Status::Corrupt(dir + ": replica format version is missing");
    }
    uint32_t format;
    std::memcpy(&format, v.mv_data, 4);
    impl->format = format;
    if (format > kFormatVersion) {
      mdb_txn_abort(txn);
      return Status::Unsupported(dir + " was written by a newer Tandem (format " +
                                 std::to_string(format) + "; this build reads up to " +
                                 std::to_string(kFormatVersion) + ")");
    }
    Status st = impl->RefreshTables(txn);
    ReplicaMeta meta;
    MDB_val mk = Val("replica"), mv;
    if (st.ok()) {
      rc = mdb_get(txn, impl->meta, &mk, &mv);
      if (rc)
        st = Status::Corrupt(dir + ": replica meta is missing");
      else if (auto m = DecodeMeta(View(mv)); !m.ok())
        st = m.status();
    }
    if (st.ok()) {
      MDB_val ok = Val("origin"), ov;
      rc = mdb_get(txn, impl->meta, &ok, &ov);
      auto here = Fingerprint(dir, false, opt.without_birth_times);
      if (!here.ok())
        st = here.status();
      else if (rc == MDB_NOTFOUND || AdoptsFrom(View(ov), *here))
        origin = kNoOrigin;  // adopts where it is (making its origin file)
      else if (View(ov) != *here)
        origin = kMoved;
    }
    // Committing (not aborting) keeps the database handles opened in this transaction.
    if (st.ok()) {
      if ((rc = mdb_txn_commit(txn))) st = LmdbError(rc, "open " + dir);
    } else {
      mdb_txn_abort(txn);
    }
    TANDEM_RETURN_IF_ERROR(st.With(dir));
  }
  if (!late_tables && impl->read_only)
    return Status::Unsupported(dir +
                               " is of an older format, which the first open completes "
                               "by writing to it, and it is on a read-only medium: copy it "
                               "to a writable disk to read it");
  if (!late_tables) {
    if ((rc = mdb_txn_begin(impl->env, nullptr, 0, &txn))) return impl->Note(rc, "open " + dir);
    rc = mdb_dbi_open(txn, "blobs", MDB_CREATE, &impl->blobs);
    if (!rc) rc = mdb_dbi_open(txn, "chunks", MDB_CREATE, &impl->chunks);
    if (!rc) rc = mdb_dbi_open(txn, "fresh", MDB_CREATE, &impl->fresh);
    if (!rc)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc) return impl->Note(rc, "add the newer tables to " + dir);
  }
  auto store = std::unique_ptr<LmdbStore>(new LmdbStore(dir, std::move(impl)));
  // A replica from before origins were recorded adopts where it is; one that is not
  // where it was created is a copy, and takes a new replica id. Opened to be read, a
  // copy keeps its id and refuses writes, and one from before origins adopts at the
  // first open that writes.
  if (stamp && opt.inspect)
    store->impl()->inspected_copy = origin == kMoved;
  else if (stamp && origin != kSameOrigin)
    TANDEM_RETURN_IF_ERROR(
        StampOrigin(*store, origin == kMoved ? Stamp::kRekey : Stamp::kAdopt, opt));
  return store;
}

Result<std::unique_ptr<LmdbStore>> CreateStore(const std::string& dir, const Options& opt) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, "init"));
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return Status::Io("create " + dir + ": " + ec.message());
  if (!existed) fs::permissions(dir, fs::perms::owner_all, ec);  // an existing one is the user's
  auto store = Open(dir, opt, true, true);
  if (!store.ok()) {
    // Leave nothing that a second try would refuse as a non-empty directory.
    fs::remove(dir + "/data.mdb", ec);
    fs::remove(dir + "/lock.mdb", ec);
    fs::remove(dir + "/" + kOriginFile, ec);
    if (!existed) fs::remove(dir, ec);
  }
  return store;
}

Result<std::unique_ptr<LmdbStore>> OpenStore(const std::string& dir, const Options& opt) {
  TANDEM_RETURN_IF_ERROR(ProbeDataFile(dir));
  return Open(dir, opt, false, true);
}

bool IsInspectedCopy(const LmdbStore& store) { return store.impl()->inspected_copy; }

bool IsReplicaDir(const std::string& dir) {
  std::error_code ec;
  return fs::exists(dir + "/data.mdb", ec);
}

}  // namespace tandem::storage
