// Small files written so that a crash, a full disk or an I/O error never leaves a
// half-written one: the key files, invites, the status file, backups.
//
// Every writer here writes the whole content (a short write is retried, then reported),
// checks fsync and close, and publishes the file by rename(2) or link(2) last, so a
// reader sees the old file or the new one, never a part. On failure the temporary file
// is removed and the Status names the path and the cause ("No space left on device").
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "tandem/engine/status.h"

namespace tandem::files {

enum class Sync {
  kDurable,  // fsync the file and its directory: it survives a power cut once we return
  kNone,     // atomic, not durable (a status file rewritten every second)
};

// Writes `data` to `path` atomically (a temporary file in the same directory, renamed).
Status WriteAtomic(const std::string& path, std::string_view data, Sync sync = Sync::kDurable,
                   mode_t mode = 0600);

// As WriteAtomic, but fails with kInvalidArgument if `path` already exists (published
// with link(2), which never replaces): for files that must never be overwritten.
Status CreateAtomic(const std::string& path, std::string_view data, mode_t mode = 0600);

// Copies `from` to a new file `to` (which must not exist) and fsyncs it. On failure `to`
// is removed.
Status CopyDurable(const std::string& from, const std::string& to, mode_t mode = 0600);

// Writes all of `data` to `fd`, retrying short writes and EINTR. `what` names the file
// in the error.
Status WriteAll(int fd, std::string_view data, const std::string& what);

// fsyncs `path` (a file or a directory).
Status SyncPath(const std::string& path);

// fsyncs the directory holding `path`, so that a rename or link into it is durable.
Status SyncParent(const std::string& path);

// Removes what killed processes left in `dir` (temporary files and directories may hold
// keys): every entry named `stem` + a process id (+ optionally "." and more) whose
// process no longer exists. Best effort.
void SweepDead(const std::string& dir, const std::string& stem);

// True if the directory holding `path` is on a filesystem mounted read-only (a
// snapshot, a write-protected stick, a read-only bind mount).
bool OnReadOnlyFilesystem(const std::string& path);

// Opens `path` (created if missing, close-on-exec) and takes an exclusive flock on it
// without waiting: the descriptor, which holds the lock until it is closed; -1 if another
// open file holds the lock; kIo if the file cannot be opened or locked.
Result<int> TryLockFile(const std::string& path);

// Opens /dev/null, read-only, on each of the standard descriptors 0, 1 and 2 that is
// closed, so that no file opened later takes one: a program started with them closed
// would otherwise print its messages into whatever file got the number (a replica's
// data.mdb or lock.mdb). Writes to a standard output closed so then fail (EBADF) rather
// than vanish. Cheap; call it before opening files.
void KeepStandardDescriptors();

// Reads a file of at most `max` bytes. kNotFound if it does not exist, kCorrupt if it is
// larger than `max` or not a regular file (a FIFO in its place is refused, not waited on).
Result<std::string> ReadSmall(const std::string& path, size_t max);

}  // namespace tandem::files
