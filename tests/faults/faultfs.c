// An LD_PRELOAD library that makes chosen file operations fail, to test that Tandem
// reports I/O errors, short writes and full disks on its small files and backups
// clearly and never leaves a half-written file or an unopenable replica.
//
// Configured by the environment:
//   FAULTFS_MATCH  a substring of the path the fault applies to (required)
//   FAULTFS_OP     write | fsync | rename | link | short
//                  (short: the first matching write writes half its bytes; later
//                  writes to files that match fail with ENOSPC, as on a full disk)
//   FAULTFS_ERRNO  EIO (default) or ENOSPC
//   FAULTFS_SKIP   how many matching calls succeed before the first failure (default 0)
// Every matching call from the first failure on fails. The path of a descriptor is read
// from /proc/self/fd; rename and link match on either name.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static const char* Env(const char* name) {
  const char* v = getenv(name);
  return v && *v ? v : NULL;
}

static int FaultErrno(void) {
  const char* e = Env("FAULTFS_ERRNO");
  return e && strcmp(e, "ENOSPC") == 0 ? ENOSPC : EIO;
}

static int OpIs(const char* op) {
  const char* o = Env("FAULTFS_OP");
  return o && strcmp(o, op) == 0;
}

static int PathMatches(const char* path) {
  const char* m = Env("FAULTFS_MATCH");
  return m && path && strstr(path, m) != NULL;
}

static int FdMatches(int fd) {
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = 0;
  return PathMatches(path);
}

// Whether this matching call fails: after FAULTFS_SKIP successes, every one does.
static int Trip(void) {
  static long seen = 0;
  const char* s = Env("FAULTFS_SKIP");
  long skip = s ? atol(s) : 0;
  return __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST) > skip;
}

static int short_done = 0;

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void* buf, size_t n) {
  if ((OpIs("write") || OpIs("short")) && FdMatches(fd) && Trip()) {
    if (OpIs("short") && !__atomic_exchange_n(&short_done, 1, __ATOMIC_SEQ_CST) && n > 1)
      return NEXT(write)(fd, buf, n / 2);
    errno = OpIs("short") ? ENOSPC : FaultErrno();
    return -1;
  }
  return NEXT(write)(fd, buf, n);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  if ((OpIs("write") || OpIs("short")) && FdMatches(fd) && Trip()) {
    if (OpIs("short") && !__atomic_exchange_n(&short_done, 1, __ATOMIC_SEQ_CST) && n > 1)
      return NEXT(pwrite)(fd, buf, n / 2, off);
    errno = OpIs("short") ? ENOSPC : FaultErrno();
    return -1;
  }
  return NEXT(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

// Vectored writes (LMDB flushes runs of pages with them) fail whole; no short ones.
ssize_t writev(int fd, const struct iovec* iov, int n) {
  if ((OpIs("write") || OpIs("short")) && FdMatches(fd) && Trip()) {
    errno = OpIs("short") ? ENOSPC : FaultErrno();
    return -1;
  }
  return NEXT(writev)(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec* iov, int n, off_t off) {
  if ((OpIs("write") || OpIs("short")) && FdMatches(fd) && Trip()) {
    errno = OpIs("short") ? ENOSPC : FaultErrno();
    return -1;
  }
  return NEXT(pwritev)(fd, iov, n, off);
}

int fsync(int fd) {
  if (OpIs("fsync") && FdMatches(fd) && Trip()) {
    errno = FaultErrno();
    return -1;
  }
  return NEXT(fsync)(fd);
}

int fdatasync(int fd) {
  if (OpIs("fsync") && FdMatches(fd) && Trip()) {
    errno = FaultErrno();
    return -1;
  }
  return NEXT(fdatasync)(fd);
}

int rename(const char* from, const char* to) {
  if (OpIs("rename") && (PathMatches(from) || PathMatches(to)) && Trip()) {
    errno = FaultErrno();
    return -1;
  }
  return NEXT(rename)(from, to);
}

int link(const char* from, const char* to) {
  if (OpIs("link") && (PathMatches(from) || PathMatches(to)) && Trip()) {
    errno = FaultErrno();
    return -1;
  }
  return NEXT(link)(from, to);
}
