#include "tandem/storage/watcher.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tandem/storage/replica.h"

namespace tandem::storage {

// Owned jointly by the watcher and its commit observer, which may still run on another
// thread while the watcher goes away: the descriptors close with the last owner.
struct ChangeWatcher::State {
  int epoll = -1, event = -1, inotify = -1, timer = -1;
  // Another process's commit writes data.mdb before readers can see it: LMDB writes the
  // meta page last and publishes its transaction id to readers just after, so the last
  // inotify event of a commit may come a moment before a reader sees the commit. While
  // the meta pages hold a transaction that readers do not see yet, the timer fires again,
  // backing off. A commit whose meta page is not written yet needs no timer: that write
  // comes after the events read, and gives one of its own.
  bool awaiting = false;
  int delay_ms = 0;
  ~State() {
    for (int fd : {epoll, event, inotify, timer})
      if (fd >= 0) ::close(fd);
  }
  void Arm(int ms) {
    itimerspec t{};
    t.it_value.tv_sec = ms / 1000;
    t.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
    ::timerfd_settime(timer, 0, &t, nullptr);
  }
};

Result<std::unique_ptr<ChangeWatcher>> ChangeWatcher::Create(engine::Replica& replica) {
  auto s = std::make_shared<State>();
  s->epoll = ::epoll_create1(EPOLL_CLOEXEC);
  s->event = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->epoll < 0 || s->event < 0)
    return Status::Io(std::string("cannot watch the replica: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(s->epoll, EPOLL_CTL_ADD, s->event, &ev) != 0)
    return Status::Io(std::string("cannot watch the replica: ") + std::strerror(errno));
  // Every commit writes data.mdb (LMDB writes pages with pwrite), whichever process
  // makes it. Without inotify, commits through this object are still seen.
  s->inotify = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  s->timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (s->inotify >= 0 && s->timer >= 0) {
    const std::string data = StoreOf(replica).dir() + "/data.mdb";
    if (::inotify_add_watch(s->inotify, data.c_str(), IN_MODIFY) < 0 ||
        ::epoll_ctl(s->epoll, EPOLL_CTL_ADD, s->inotify, &ev) != 0 ||
        ::epoll_ctl(s->epoll, EPOLL_CTL_ADD, s->timer, &ev) != 0) {
      ::close(s->inotify);
      s->inotify = -1;
    }
  } else if (s->inotify >= 0) {
    ::close(s->inotify);
    s->inotify = -1;
  }
  const uint64_t token = replica.AddCommitObserver([s] {
    uint64_t one = 1;
    if (::write(s->event, &one, sizeof one) < 0) {
      // EAGAIN: the counter is saturated, so the descriptor is readable already.
    }
  });
  return std::unique_ptr<ChangeWatcher>(new ChangeWatcher(replica, std::move(s), token));
}

ChangeWatcher::ChangeWatcher(engine::Replica& r, std::shared_ptr<State> s, uint64_t token)
    : replica_(r), state_(std::move(s)), token_(token) {}

ChangeWatcher::~ChangeWatcher() { replica_.RemoveCommitObserver(token_); }

int ChangeWatcher::fd() const { return state_->epoll; }

bool ChangeWatcher::sees_other_processes() const { return state_->inotify >= 0; }

void ChangeWatcher::Clear() {
  State& s = *state_;
  uint64_t n;
  while (::read(s.event, &n, sizeof n) > 0) {
  }
  if (s.inotify < 0) return;
  bool modified = false, fired = false;
  alignas(inotify_event) char buf[4096];
  while (::read(s.inotify, buf, sizeof buf) > 0) modified = true;
  while (::read(s.timer, &n, sizeof n) > 0) fired = true;
  if (!modified && !(fired && s.awaiting)) return;
  // The consumer reads after this. Done once readers see every written commit, or after
  // about 1.3 s (a writer stopped that long between the two is seen with the next
  // commit).
  LmdbStore& store = StoreOf(replica_);
  const bool unpublished = store.LastTxnId() > store.ReadableTxnId();
  if (modified) s.delay_ms = 0;
  if (!unpublished || s.delay_ms >= 640) {
    s.awaiting = false;
    return;
  }
  s.awaiting = true;
  s.delay_ms = s.delay_ms ? s.delay_ms * 2 : 5;
  s.Arm(s.delay_ms);
}

bool ChangeWatcher::Wait(int timeout_ms) {
  pollfd p{state_->epoll, POLLIN, 0};
  int rc;
  do rc = ::poll(&p, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  if (rc <= 0) return false;
  Clear();
  return true;
}

}  // namespace tandem::storage
