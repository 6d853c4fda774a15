#include "tandem/files/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tandem::files {
namespace {

namespace fs = std::filesystem;

// Callers copy errno into a local first: building `what` may change it.
Status Errno(const std::string& what, int err) {
  return Status::Io(what + ": " + std::strerror(err));
}

// A temporary name beside `path`, unique per process and call.
std::string TempBeside(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  fs::path p(path);
  std::string name = ".";
  name += p.filename().string();
  name += ".tmp.";
  name += std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  return (p.parent_path() / name).string();
}

// Removes temporary files a killed process left beside `path` (they may hold a key):
// `.<name>.tmp.<pid>.<n>` of a process that no longer exists.
void SweepStale(const std::string& path) {
  fs::path p(path);
  std::string stem = ".";  // not "." + ...: g++ 12 warns (-Wrestrict) on that falsely
  stem += p.filename().string() + ".tmp.";
  SweepDead(p.parent_path().empty() ? "." : p.parent_path().string(), stem);
}

// Ends writing `fd` (named `what`): fsyncs it if `st` is still OK and `sync` asks, then
// closes it; returns the first failure.
Status FinishFile(int fd, const std::string& what, Sync sync, Status st) {
  if (st.ok() && sync == Sync::kDurable && ::fsync(fd) != 0) {
    const int err = errno;
    st = Errno("fsync " + what, err);
  }
  if (::close(fd) != 0 && st.ok()) {
    const int err = errno;
    st = Errno("close " + what, err);
  }
  return st;
}

// Writes `data` to a new file at `tmp` (kInvalidArgument if it exists) and, if asked,
// fsyncs it. Removes it on failure.
Status WriteTemp(const std::string& tmp, const std::string& path, std::string_view data, Sync sync,
                 mode_t mode) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    const int err = errno;
    if (err == EEXIST) return Status::Invalid(tmp + " already exists");
    return Errno("create " + tmp, err);
  }
  Status st = FinishFile(fd, path, sync, WriteAll(fd, data, path));
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace

Status WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return Errno("write " + what, err);
    }
    if (n == 0) return Status::Io("write " + what + ": no progress (0 bytes written)");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return Errno("open " + path, err);
  }
  int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Errno("fsync " + path, err);
  return Status::Ok();
}

Status SyncParent(const std::string& path) {
  std::string dir = fs::path(path).parent_path().string();
  return SyncPath(dir.empty() ? "." : dir);
}

void SweepDead(const std::string& dir, const std::string& stem) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.size() <= stem.size() || n.compare(0, stem.size(), stem) != 0) continue;
    const std::string rest = n.substr(stem.size());
    const std::string pid = rest.substr(0, rest.find('.'));
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos)
      continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove_all(e.path(), ignored);
    }
  }
}

Status WriteAtomic(const std::string& path, std::string_view data, Sync sync, mode_t mode) {
  if (sync == Sync::kDurable) SweepStale(path);  // key files; not the status file each second
  const std::string tmp = TempBeside(path);
  TANDEM_RETURN_IF_ERROR(WriteTemp(tmp, path, data, sync, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    Status st = Errno("rename " + tmp + " to " + path, err);
    ::unlink(tmp.c_str());
    return st;
  }
  return sync == Sync::kDurable ? SyncParent(path) : Status::Ok();
}

Status CreateAtomic(const std::string& path, std::string_view data, mode_t mode) {
  SweepStale(path);
  const std::string tmp = TempBeside(path);
  TANDEM_RETURN_IF_ERROR(WriteTemp(tmp, path, data, Sync::kDurable, mode));
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc == 0) return SyncParent(path);
  if (err == EEXIST) return Status::Invalid(path + " already exists");
  if (err != EPERM && err != ENOTSUP && err != EOPNOTSUPP) return Errno("link " + path, err);
  // A filesystem without hard links (FAT on a memory card, some network and FUSE
  // filesystems): create the file exclusively in place; a failure removes it.
  TANDEM_RETURN_IF_ERROR(WriteTemp(path, path, data, Sync::kDurable, mode));
  return SyncParent(path);
}

Status CopyDurable(const std::string& from, const std::string& to, mode_t mode) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    const int err = errno;
    return Errno("open " + from, err);
  }
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (out < 0) {
    const int err = errno;
    Status st = Errno("create " + to, err);
    ::close(in);
    return st;
  }
  Status st;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      st = Errno("read " + from, err);
      break;
    }
    if (n == 0) break;
    st = WriteAll(out, std::string_view(buf.data(), static_cast<size_t>(n)), to);
    if (!st.ok()) break;
  }
  st = FinishFile(out, to, Sync::kDurable, std::move(st));
  ::close(in);
  if (!st.ok()) ::unlink(to.c_str());
  return st;
}

void KeepStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // The lowest free number: this one, as every lower one is open by now (unless
    // another thread took it meanwhile, which leaves it open all the same).
    const int got = ::open("/dev/null", O_RDONLY);
    if (got > 2) ::close(got);
  }
}

bool OnReadOnlyFilesystem(const std::string& path) {
  struct statvfs vfs;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return ::statvfs(dir.empty() ? "." : dir.c_str(), &vfs) == 0 && (vfs.f_flag & ST_RDONLY);
}

Result<int> TryLockFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Io("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
  const int err = errno;
  ::close(fd);
  if (err == EWOULDBLOCK) return -1;
  return Status::Io("cannot lock " + path + ": " + std::strerror(err));
}

Result<std::string> ReadSmall(const std::string& path, size_t max) {
  // Without waiting for a writer, should a FIFO be there: what it is is checked first.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + " does not exist");
    return Errno("open " + path, err);
  }
  struct stat what;
  if (::fstat(fd, &what) != 0 || !S_ISREG(what.st_mode)) {
    ::close(fd);
    return Status::Corrupt(path + " is not a regular file");
  }
  // Grown as it fills, never beyond max + 1 bytes: a large `max` costs nothing on a
  // small file.
  std::string data;
  Status st;
  while (data.size() <= max) {
    const size_t at = data.size();
    data.resize(std::min(max + 1, std::max<size_t>(at * 2, 4096)));
    ssize_t n = ::read(fd, data.data() + at, data.size() - at);
    if (n < 0) {
      const int err = errno;
      data.resize(at);
      if (err == EINTR) continue;
      st = Errno("read " + path, err);
      break;
    }
    data.resize(at + static_cast<size_t>(n));
    if (n == 0) break;
  }
  ::close(fd);
  TANDEM_RETURN_IF_ERROR(st);
  if (data.size() > max) return Status::Corrupt(path + " is too large");
  return data;
}

}  // namespace tandem::files
