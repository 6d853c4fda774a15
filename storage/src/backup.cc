// Backup and restore of a replica directory (lmdb_store.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "lmdb_internal.h"
#include "tandem/files/files.h"

namespace tandem::storage {
namespace {

// Builds a directory at `dir` by `fill`ing a temporary directory beside it (same
// filesystem) and renaming it into place last, with its parent fsynced: a failed or
// killed build leaves nothing at `dir`, and the temporary directory is removed on
// failure. `dir` must be missing or empty (rename(2) replaces an empty directory).
Status BuildInPlace(const std::string& dir, const char* what,
                    const std::function<Status(const fs::path& tmp)>& fill) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, what));
  fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  std::string tmp_name = ".";  // not "." + ...: g++ 12 warns (-Wrestrict) on that falsely
  tmp_name += target.filename().string() + "." + what + "." + std::to_string(::getpid());
  const fs::path tmp = target.parent_path() / tmp_name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(target.parent_path(), ec);
  fs::create_directory(tmp, ec);
  if (ec) return Status::Io("create " + tmp.string() + ": " + ec.message());
  Status st = [&]() -> Status {
    TANDEM_RETURN_IF_ERROR(fill(tmp));
    TANDEM_RETURN_IF_ERROR(files::SyncPath(tmp.string()));
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      return Status::Io("rename " + tmp.string() + " to " + target.string() + ": " +
                        strerror(errno));
    // The rename itself; failing here still leaves a complete directory.
    (void)files::SyncParent(target.string());
    return Status::Ok();
  }();
  if (!st.ok()) fs::remove_all(tmp, ec);
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

Status Backup(LmdbStore& store, const std::string& dest, const std::vector<std::string>& files) {
  return BuildInPlace(dest, "backup", [&](const fs::path& tmp) -> Status {
    int rc = mdb_env_copy2(store.impl()->env, tmp.c_str(), MDB_CP_COMPACT);
    if (rc) return LmdbError(rc, "backup to " + dest);
    // mdb_env_copy2 writes but does not fsync.
    TANDEM_RETURN_IF_ERROR(files::SyncPath((tmp / "data.mdb").string()));
    return CopyFilesInto({files.begin(), files.end()}, tmp);
  });
}

Status Restore(const std::string& backup, const std::string& dir,
               const std::vector<std::string>& files) {
  {
    // Validate the backup fully (format, meta, every field) before making anything,
    // without changing it (no origin stamp, no new id).
    TANDEM_RETURN_IF_ERROR(ProbeDataFile(backup));
    TANDEM_ASSIGN_OR_RETURN(auto src, Open(backup, Options{}, false, /*stamp=*/false));
    TANDEM_RETURN_IF_ERROR(Check(*src).With("backup " + backup));
  }
  // The new replica id is taken before anything else, so even a leftover temporary
  // directory (a killed restore) never holds a clone of the backup's replica.
  return BuildInPlace(dir, "restoring", [&](const fs::path& tmp) -> Status {
    TANDEM_RETURN_IF_ERROR(
        files::CopyDurable(backup + "/data.mdb", (tmp / "data.mdb").string(), 0644));
    {
      TANDEM_ASSIGN_OR_RETURN(auto store, Open(tmp.string(), Options{}, false, false));
      // A new id whatever the backup's origin says (a backup from before origins has none).
      TANDEM_RETURN_IF_ERROR(StampOrigin(*store, Stamp::kForceRekey, Options{}));
    }
    std::vector<fs::path> from;
    for (const auto& name : files) from.push_back(fs::path(backup) / name);
    return CopyFilesInto(from, tmp);
  });
}

}  // namespace tandem::storage
