// The LMDB store's spool: an unnamed file in the replica's directory (on the disk its
// data lives on), gone when closed, or when the process ends however it ends.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "lmdb_internal.h"

namespace tandem::storage {

namespace {

class FileSpool : public engine::Spool {
 public:
  explicit FileSpool(int fd) : fd_(fd) {}
  ~FileSpool() override { ::close(fd_); }
  Status Append(std::string_view bytes) override {
    while (!bytes.empty()) {
      const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(size_));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return Status(Code::kIo, std::string("write spool: ") +
                                     (n == 0 ? "nothing written" : std::strerror(errno)));
      size_ += static_cast<uint64_t>(n);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }
  Status Read(uint64_t offset, size_t n, std::string* out) override {
    if (offset >= size_) return Status::Ok();
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    const size_t start = out->size();
    out->resize(start + n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r =
          ::pread(fd_, out->data() + start + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        out->resize(start);
        return Status(Code::kIo,
                      std::string("read spool: ") + (r == 0 ? "cut short" : std::strerror(errno)));
      }
      got += static_cast<size_t>(r);
    }
    return Status::Ok();
  }

 private:
  int fd_;
  uint64_t size_ = 0;
};

}  // namespace

Result<std::unique_ptr<engine::Spool>> LmdbStore::OpenSpool() {
  int fd = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == ENOENT)) {
    // A file system without unnamed files: a named one, unlinked at once.
    std::string path = dir_ + "/spool-XXXXXX";
    fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(path.c_str());
  }
  if (fd < 0) return Status(Code::kIo, "open a spool in " + dir_ + ": " + std::strerror(errno));
  return std::unique_ptr<engine::Spool>(std::make_unique<FileSpool>(fd));
}

}  // namespace tandem::storage
