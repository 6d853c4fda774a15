// Backup and restore of a replica directory (lmdb_store.h).
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

#include "lmdb_internal.h"
#include "tandem/files/files.h"

namespace tandem::storage {
namespace {

// Builds a directory at `dir` by `fill`ing a temporary directory (owner-only: backups
// hold the device's keys) on the same filesystem and publishing it last, so that a
// failed or killed build leaves nothing at `dir`; the temporary directory is removed on
// failure. A missing `dir` is made by renaming the temporary directory, built beside
// it, into place. An existing, empty `dir` (a mount point, or a directory made with the
// owner's own permissions) is kept: the build happens in a hidden directory inside it,
// and its files are renamed into `dir` with data.mdb last, so `dir` holds a replica
// only once everything is there.
// Where a build of `dir` happens: the directory that holds the temporary one, and the
// temporary one's name but for the process id.
struct BuildPlace {
  fs::path target, home;
  std::string stem;
  bool inside = false;
};
BuildPlace PlaceOf(const std::string& dir, const char* what) {
  BuildPlace p;
  p.target = fs::absolute(fs::path(dir)).lexically_normal();
  if (p.target.filename().empty()) p.target = p.target.parent_path();
  std::error_code ec;
  p.inside = fs::exists(p.target, ec);
  p.stem = ".";  // not "." + ...: g++ 12 warns (-Wrestrict) on that falsely
  if (!p.inside) p.stem += p.target.filename().string() + ".";
  p.stem += std::string(what) + ".";
  p.home = p.inside ? p.target : p.target.parent_path();
  return p;
}

Status BuildInPlace(const std::string& dir, const char* what,
                    const std::function<Status(const fs::path& tmp)>& fill) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, what));
  const BuildPlace place = PlaceOf(dir, what);
  const fs::path& target = place.target;
  const bool inside = place.inside;
  std::error_code ec;
  const fs::path tmp = place.home / (place.stem + std::to_string(::getpid()));
  // Leftovers of killed builds (they may hold key files): any process's that is gone,
  // of this name and of any other built here (dated backups never reuse a name).
  files::SweepDead(place.home.string(), place.stem);
  const std::string mark = std::string(".") + what + ".";
  for (const auto& e : fs::directory_iterator(place.home, ec)) {
    const std::string n = e.path().filename().string();
    const size_t at = n.rfind(mark);
    if (n.size() > 1 && n[0] == '.' && at != std::string::npos && at > 0)
      files::SweepDead(place.home.string(), n.substr(0, at + mark.size()));
  }
  ec.clear();
  fs::remove_all(tmp, ec);
  ec.clear();
  if (!inside) fs::create_directories(target.parent_path(), ec);
  if (!ec) fs::create_directory(tmp, ec);
  if (!ec) fs::permissions(tmp, fs::perms::owner_all, ec);
  if (ec) return Status::Io("create " + tmp.string() + ": " + ec.message());
  std::vector<fs::path> moved;
  Status st = [&]() -> Status {
    TANDEM_RETURN_IF_ERROR(fill(tmp));
    TANDEM_RETURN_IF_ERROR(files::SyncPath(tmp.string()));
    if (!inside) {
      if (::rename(tmp.c_str(), target.c_str()) != 0) {
        const int err = errno;
        return Status::Io("rename " + tmp.string() + " to " + target.string() + ": " +
                          strerror(err));
      }
      // The rename itself; failing here still leaves a complete directory.
      (void)files::SyncParent(target.string());
      return Status::Ok();
    }
    std::vector<fs::path> names;
    for (const auto& e : fs::directory_iterator(tmp, ec)) {
      const std::string n = e.path().filename().string();
      if (n == "lock.mdb") continue;  // LMDB makes it again
      names.push_back(e.path().filename());
    }
    if (ec) return Status::Io("list " + tmp.string() + ": " + ec.message());
    std::stable_partition(names.begin(), names.end(),
                          [](const fs::path& n) { return n != "data.mdb"; });
    // Once files go into `dir`, they all go: a process that dies with its parent (the
    // CLI's worker, PR_SET_PDEATHSIG) would leave key files there without data.mdb, which
    // the next build into `dir` refuses as not empty.
    (void)::prctl(PR_SET_PDEATHSIG, 0);
    for (const auto& n : names) {
      if (::rename((tmp / n).c_str(), (target / n).c_str()) != 0) {
        const int err = errno;
        return Status::Io("rename " + (tmp / n).string() + ": " + strerror(err));
      }
      moved.push_back(target / n);
    }
    fs::remove_all(tmp, ec);
    (void)files::SyncPath(target.string());
    return Status::Ok();
  }();
  if (!st.ok()) {
    for (const auto& m : moved) fs::remove(m, ec);  // `dir` is left as empty as it was
    fs::remove_all(tmp, ec);
  }
  return st;
}

// Copies the files of `paths` that exist into the directory `to`, durably, under their
// own names.
Status CopyFilesInto(const std::vector<fs::path>& paths, const fs::path& to) {
  std::error_code ec;
  for (const auto& p : paths) {
    if (!fs::exists(p, ec)) continue;
    TANDEM_RETURN_IF_ERROR(files::CopyDurable(p.string(), (to / p.filename()).string()));
  }
  return Status::Ok();
}

}  // namespace

bool IsBackupDir(const std::string& dir) {
  const std::string path = dir + "/" + kBackupMark;
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(path, ec))) return false;
  auto text = files::ReadSmall(path, 4096);
  return text.ok() && text->rfind(kBackupMarkText, 0) == 0;
}

Status Backup(LmdbStore& store, const std::string& dest, const std::vector<std::string>& files) {
  // Inside the replica's directory, a backup goes with the replica when the directory is
  // lost, and would be copied with it by anyone copying the directory.
  {
    std::error_code ec;
    const fs::path home = fs::weakly_canonical(fs::absolute(store.impl()->dir), ec);
    const fs::path to = ec ? fs::path() : fs::weakly_canonical(fs::absolute(dest), ec);
    if (!ec) {
      auto [h, t] = std::mismatch(home.begin(), home.end(), to.begin(), to.end());
      if (h == home.end() || (std::next(h) == home.end() && h->empty()))
        return Status::Invalid("backup: " + dest + " is inside the replica's directory " +
                               store.impl()->dir +
                               ": a backup there is lost with it; choose a directory outside it");
    }
  }
  return BuildInPlace(dest, "backup", [&](const fs::path& tmp) -> Status {
    int rc = mdb_env_copy2(store.impl()->env, tmp.c_str(), MDB_CP_COMPACT);
    if (rc) return LmdbError(rc, "backup to " + dest);
    // mdb_env_copy2 writes but does not fsync.
    TANDEM_RETURN_IF_ERROR(files::SyncPath((tmp / "data.mdb").string()));
    TANDEM_RETURN_IF_ERROR(files::WriteAtomic(
        (tmp / kBackupMark).string(),
        std::string(kBackupMarkText) +
            "Commands that read work on it; to use it, restore it: tandem restore DIR NEWDIR\n"));
    // Checked whole, read only, as restore will check it: a copy of a damaged replica
    // would not restore, and one that would be mended by restoring a backup needs a
    // sound one, not a copy of the damage.
    {
      Options read;
      read.inspect = true;
      TANDEM_ASSIGN_OR_RETURN(auto copy, Open(tmp.string(), read, false, false));
      if (Status st = Check(*copy); !st.ok())
        return st.With(
            "no backup made: the replica does not pass tandem check, and a copy of "
            "it would not restore");
    }
    return CopyFilesInto({files.begin(), files.end()}, tmp);
  });
}

Status Restore(const std::string& backup, const std::string& dir,
               const std::vector<std::string>& files) {
  // The backup is only read, as a file: opening it as a replica would write a lock file
  // into it, and tables a replica of an older format lacks (a backup on a read-only
  // medium could not be restored). Its copy is validated fully (format, meta, every
  // field) before it becomes anything; a failure leaves nothing at `dir`.
  TANDEM_RETURN_IF_ERROR(ProbeDataFile(backup));
  TANDEM_RETURN_IF_ERROR(BuildInPlace(dir, "restoring", [&](const fs::path& tmp) -> Status {
    TANDEM_RETURN_IF_ERROR(
        files::CopyDurable(backup + "/data.mdb", (tmp / "data.mdb").string(), 0600));
    // What is wrong with the copy is wrong with the backup: said of the backup (the
    // temporary directory is gone once this returns), and with what to do about it. An
    // I/O error (a full disk where the copy is) is the target's, not the backup's.
    auto of_backup = [&](const Status& st) {
      if (st.ok() || st.code() == Code::kIo) return st;
      std::string m = st.message();
      const std::string t = tmp.string();
      for (size_t at; (at = m.find(t)) != std::string::npos;) m.replace(at, t.size(), backup);
      constexpr std::string_view kAdvice = "; restore it from a backup";
      if (m.size() >= kAdvice.size() && m.ends_with(kAdvice)) m.resize(m.size() - kAdvice.size());
      return Status(st.code(), m + "; no replica made: restore another backup");
    };
    {
      auto store = Open(tmp.string(), Options{}, false, false);
      if (!store.ok()) return of_backup(store.status());
      TANDEM_RETURN_IF_ERROR(of_backup(Check(**store).With("backup " + backup)));
      // A new id whatever the backup's origin says (a backup from before origins has none).
      TANDEM_RETURN_IF_ERROR(StampOrigin(**store, Stamp::kForceRekey, Options{}));
    }
    std::vector<fs::path> from;
    for (const auto& name : files) from.push_back(fs::path(backup) / name);
    return CopyFilesInto(from, tmp);
  }));
  // Published into an existing directory, its files were renamed one by one, which on
  // some filesystems changes the origin file's change time: where it is now is its
  // origin (elsewhere this finds the origin as recorded and writes nothing). Failing
  // that, its first open takes another new id: harmless, it has issued nothing yet.
  if (auto store = Open(dir, Options{}, false, false); store.ok())
    (void)StampOrigin(**store, Stamp::kAdopt, Options{});
  return Status::Ok();
}

void SweepDeadBuilds(const std::string& dir) {
  for (const char* what : {"restoring", "backup"}) {
    const BuildPlace place = PlaceOf(dir, what);
    files::SweepDead(place.home.string(), place.stem);
  }
}

}  // namespace tandem::storage
