#include "tandem/files/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tandem::files {
namespace {

namespace fs = std::filesystem;

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

// Writes `data` to a new file at `tmp` and, if asked, fsyncs it. Removes it on failure.
Status WriteTemp(const std::string& tmp, const std::string& path, std::string_view data, Sync sync,
                 mode_t mode) {
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Errno("create " + tmp, errno);
  Status st = WriteAll(fd, data, path);
  if (st.ok() && sync == Sync::kDurable && ::fsync(fd) != 0) st = Errno("fsync " + path, errno);
  if (::close(fd) != 0 && st.ok()) st = Errno("close " + path, errno);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace

Status WriteAll(int fd, std::string_view data, const std::string& what) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write " + what, errno);
    }
    if (n == 0) return Status::Io("write " + what + ": no progress (0 bytes written)");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status SyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("open " + path, errno);
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

Status WriteAtomic(const std::string& path, std::string_view data, Sync sync, mode_t mode) {
  const std::string tmp = TempBeside(path);
  TANDEM_RETURN_IF_ERROR(WriteTemp(tmp, path, data, sync, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status st = Errno("rename " + tmp + " to " + path, errno);
    ::unlink(tmp.c_str());
    return st;
  }
  return sync == Sync::kDurable ? SyncParent(path) : Status::Ok();
}

Status CreateAtomic(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = TempBeside(path);
  TANDEM_RETURN_IF_ERROR(WriteTemp(tmp, path, data, Sync::kDurable, mode));
  const int rc = ::link(tmp.c_str(), path.c_str());
  const int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0) {
    if (err == EEXIST) return Status::Invalid(path + " already exists");
    return Errno("link " + path, err);
  }
  return SyncParent(path);
}

Status CopyDurable(const std::string& from, const std::string& to, mode_t mode) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Errno("open " + from, errno);
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (out < 0) {
    Status st = Errno("create " + to, errno);
    ::close(in);
    return st;
  }
  Status st;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(in, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      st = Errno("read " + from, errno);
      break;
    }
    if (n == 0) break;
    st = WriteAll(out, std::string_view(buf.data(), static_cast<size_t>(n)), to);
    if (!st.ok()) break;
  }
  if (st.ok() && ::fsync(out) != 0) st = Errno("fsync " + to, errno);
  if (::close(out) != 0 && st.ok()) st = Errno("close " + to, errno);
  ::close(in);
  if (!st.ok()) ::unlink(to.c_str());
  return st;
}

Result<std::string> ReadSmall(const std::string& path, size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " does not exist");
    return Errno("open " + path, errno);
  }
  std::string data(max + 1, '\0');
  size_t got = 0;
  Status st;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      st = Errno("read " + path, errno);
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  TANDEM_RETURN_IF_ERROR(st);
  if (got > max) return Status::Corrupt(path + " is too large");
  data.resize(got);
  return data;
}

}  // namespace tandem::files
