// Backup and restore of a replica directory (lmdb_store.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lmdb_internal.h"

namespace tandem::storage {

Status Backup(LmdbStore& store, const std::string& dest, const std::vector<std::string>& files) {
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dest, "backup"));
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return Status::Io("create " + dest + ": " + ec.message());
  int rc = mdb_env_copy2(store.impl()->env, dest.c_str(), MDB_CP_COMPACT);
  if (rc) return LmdbError(rc, "backup to " + dest);
  for (const auto& src : files) {
    if (!fs::exists(src, ec)) continue;
    const std::string name = fs::path(src).filename().string();
    fs::copy_file(src, dest + "/" + name, ec);
    if (ec) return Status::Io("copy " + name + ": " + ec.message());
    fs::permissions(dest + "/" + name, fs::perms::owner_read | fs::perms::owner_write, ec);
  }
  return Status::Ok();
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
  TANDEM_RETURN_IF_ERROR(CheckEmptyOrMissing(dir, "restore"));
  // Built beside `dir` (same filesystem, so the rename is atomic and keeps the inode the
  // origin records) and renamed into place last: a restore that fails or is killed
  // leaves no replica at `dir`. The new replica id is taken before anything else, so
  // even a leftover temporary directory never holds a clone of the backup's replica.
  fs::path target = fs::absolute(fs::path(dir)).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  std::string tmp_name = ".";  // not "." + ...: g++ 12 warns (-Wrestrict) on that falsely
  tmp_name += target.filename().string() + ".restoring." + std::to_string(::getpid());
  const fs::path tmp = target.parent_path() / tmp_name;
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(target.parent_path(), ec);
  fs::create_directory(tmp, ec);
  if (ec) return Status::Io("create " + tmp.string() + ": " + ec.message());
  Status st = [&]() -> Status {
    fs::copy_file(backup + "/data.mdb", tmp / "data.mdb", ec);
    if (ec) return Status::Io("copy data: " + ec.message());
    {
      TANDEM_ASSIGN_OR_RETURN(auto store, Open(tmp.string(), Options{}, false, false));
      // A new id whatever the backup's origin says (a backup from before origins has none).
      TANDEM_RETURN_IF_ERROR(StampOrigin(*store, Stamp::kForceRekey, Options{}));
    }
    for (const auto& name : files) {
      if (!fs::exists(backup + "/" + name, ec)) continue;
      const fs::path to = tmp / name;
      fs::copy_file(backup + "/" + name, to, ec);
      if (ec) return Status::Io("copy " + std::string(name) + ": " + ec.message());
      fs::permissions(to, fs::perms::owner_read | fs::perms::owner_write, ec);
      int fd = ::open(to.c_str(), O_RDONLY);
      if (fd < 0 || ::fsync(fd) != 0) {
        if (fd >= 0) ::close(fd);
        return Status::Io("fsync " + to.string() + ": " + strerror(errno));
      }
      ::close(fd);
    }
    // rename(2) replaces an empty directory, which CheckEmptyOrMissing allowed.
    if (::rename(tmp.c_str(), target.c_str()) != 0)
      return Status::Io("rename " + tmp.string() + " to " + target.string() + ": " +
                        strerror(errno));
    int dfd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
      ::fsync(dfd);  // the rename itself; failing here leaves a complete replica anyway
      ::close(dfd);
    }
    return Status::Ok();
  }();
  if (!st.ok()) fs::remove_all(tmp, ec);
  return st;
}

}  // namespace tandem::storage
