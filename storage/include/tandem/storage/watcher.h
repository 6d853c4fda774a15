// Watching a replica for changes: one mechanism for every follower (the sync node's
// live sessions, `tandem changes --follow`, C API subscriptions).
//
// A watcher sees commits made through its engine::Replica object at once (a commit
// observer) and commits by other processes through inotify on the replica's data file.
// fd() is a single descriptor that becomes readable on either, so an app or an event
// loop waits on it like on a socket; Clear() consumes what made it readable. A
// notification means "look again" (read the change feed from your cursor): several
// commits may give one notification, and a notification may find nothing new.
//
// Thread-safety: one consumer per watcher (fd, Clear, Wait from one thread at a time);
// the observer side is safe from any committing thread. The replica must outlive the
// watcher.
#pragma once

#include <memory>

#include "tandem/engine/replica.h"

namespace tandem::storage {

class ChangeWatcher {
 public:
  // `replica` must have been opened by CreateReplica/OpenReplica (its directory is
  // watched). kIo if the descriptors cannot be made (for example the per-user inotify
  // limit); commits by this process are still seen if only inotify fails.
  static Result<std::unique_ptr<ChangeWatcher>> Create(engine::Replica& replica);
  ~ChangeWatcher();
  ChangeWatcher(const ChangeWatcher&) = delete;
  ChangeWatcher& operator=(const ChangeWatcher&) = delete;

  int fd() const;
  void Clear();
  // Waits until something changed or timeout_ms passed (-1: no limit), then clears.
  // True if something changed.
  bool Wait(int timeout_ms);
  // False if other processes' commits cannot be seen (inotify unavailable).
  bool sees_other_processes() const;

  struct State;

 private:
  ChangeWatcher(engine::Replica& r, std::shared_ptr<State> s, uint64_t token);
  engine::Replica& replica_;
  std::shared_ptr<State> state_;
  uint64_t token_;
};

}  // namespace tandem::storage
