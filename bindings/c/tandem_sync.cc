// The C API's subscriptions to the change feed and its sync node (tandem.h).
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <set>
#include <sstream>
#include <thread>

#include "capi_internal.h"

namespace {
using namespace tandem::capi;  // its using-declarations (Status, Json, Device, ...) too
}  // namespace

namespace {

// What a subscription's thread needs; shared with the thread, so that freeing the
// subscription from its own callback is safe.
struct WatchState {
  std::shared_ptr<Device> device;
  std::unique_ptr<tandem::storage::ChangeWatcher> watcher;  // after device: freed first
  std::mutex mu;                                            // polling mode: one drainer at a time
  uint64_t cursor = 0;
  tandem_change_fn fn = nullptr;
  void* context = nullptr;
  std::atomic<bool> stopping{false};
  int stop_fd = -1;
  std::thread thread;
  // The thread waits for `thread` to be assigned (a callback may free the subscription,
  // which reads it).
  std::mutex start_mu;
  std::condition_variable start_cv;
  bool started = false;
  ~WatchState() {
    if (thread.joinable()) {
      if (std::this_thread::get_id() == thread.get_id())
        thread.detach();
      else
        thread.join();
    }
    if (stop_fd >= 0) ::close(stop_fd);
  }
};

// Calls fn for each change after the cursor; false if stopping.
bool Deliver(WatchState& s) {
  for (;;) {
    auto page = s.device->replica().Changes(s.cursor, 1000);
    if (!page.ok()) return true;  // try again at the next notification
    for (const auto& c : page->changes) {
      if (s.stopping) return false;
      if (IsSystem(c.collection)) continue;
      const std::string j = tandem::bindings::Canonical(tandem::bindings::ChangeToJson(c));
      s.fn(j.c_str(), j.size(), c.cursor, s.context);
    }
    if (page->next_cursor == s.cursor) return true;
    s.cursor = page->next_cursor;
  }
}

void WatchThread(std::shared_ptr<WatchState> s) {
  {
    std::unique_lock lock(s->start_mu);
    s->start_cv.wait(lock, [&] { return s->started; });
  }
  while (!s->stopping) {
    if (!Deliver(*s)) break;
    pollfd fds[2] = {{s->watcher->fd(), POLLIN, 0}, {s->stop_fd, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    s->watcher->Clear();
  }
}

}  // namespace

struct tandem_watch {
  std::shared_ptr<WatchState> state;
};

namespace {
// The state of a live subscription handle, held for the call.
Result<std::shared_ptr<WatchState>> WatchOf(tandem_watch* w) {
  if (!w) return Status::Invalid("tandem_watch is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(w);
  if (it == Handles().end() || it->second != Kind::kWatch)
    return Status::Invalid("the tandem_watch handle is freed or not a tandem_watch");
  return w->state;
}
}  // namespace

struct tandem_node {
  std::shared_ptr<Device> device;
  std::shared_ptr<net::Node> node;  // copied by each call, so a concurrent free waits
};

extern "C" {

int tandem_watch_new(tandem_watch** out, tandem_db* db, uint64_t since, tandem_change_fn fn,
                     void* context, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    auto s = std::make_shared<WatchState>();
    auto w = d->Watch();
    if (!w.ok()) return w.status();
    s->device = std::move(d);
    s->watcher = std::move(w).value();
    s->cursor = since;
    s->fn = fn;
    s->context = context;
    if (fn) {
      s->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (s->stop_fd < 0) return {TANDEM_IO, std::string("eventfd: ") + std::strerror(errno)};
    }
    auto* h = new tandem_watch{s};
    Register(h, Kind::kWatch);
    *out = h;
    // Last: the first callback may free the subscription, so the handle must be out.
    if (fn) {
      s->thread = std::thread(WatchThread, s);
      std::lock_guard lock(s->start_mu);
      s->started = true;
      s->start_cv.notify_all();
    }
    return {};
  });
}

void tandem_watch_free(tandem_watch* w) {
  if (!w || !Unregister(w, Kind::kWatch)) return;
  auto s = std::move(w->state);
  delete w;
  s->stopping = true;
  if (s->stop_fd >= 0) {
    uint64_t one = 1;
    if (::write(s->stop_fd, &one, sizeof one) < 0) {
      // The counter cannot overflow here; stopping is set anyway.
    }
  }
  if (s->thread.joinable()) {
    if (std::this_thread::get_id() == s->thread.get_id())
      s->thread.detach();  // from the callback: the thread ends after it returns
    else
      s->thread.join();
  }
}

int tandem_watch_fd(int* fd, tandem_watch* w, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(fd, "fd"));
    auto ws = WatchOf(w);
    if (!ws.ok()) return ws.status();
    if ((*ws)->fn) return Invalid("a subscription with a callback has no descriptor to poll");
    *fd = (*ws)->watcher->fd();
    return {};
  });
}

int tandem_watch_drain(char** json, size_t* len, uint64_t* cursor, tandem_watch* w,
                       tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto ws = WatchOf(w);
    if (!ws.ok()) return ws.status();
    WatchState& s = **ws;
    if (s.fn) return Invalid("a subscription with a callback delivers its changes itself");
    std::lock_guard lock(s.mu);
    s.watcher->Clear();  // before reading: a commit after this makes it readable again
    Json j = Json::array();
    for (;;) {
      auto page = s.device->replica().Changes(s.cursor, 1000);
      if (!page.ok()) return page.status();
      for (const auto& c : page->changes)
        if (!IsSystem(c.collection)) j.push_back(tandem::bindings::ChangeToJson(c));
      if (page->next_cursor == s.cursor) break;
      s.cursor = page->next_cursor;
    }
    if (cursor) *cursor = s.cursor;
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

// ---- The sync node ----

static CStatus ParseList(const char* list, const char* what, engine::CollectionFilter* out) {
  if (!list) return {};
  auto f = engine::CollectionFilter::Parse(list);
  if (!f.ok()) return Invalid(std::string(what) + ": " + f.status().message());
  *out = std::move(f).value();
  return {};
}

int tandem_node_new(tandem_node** out, tandem_db* db, const tandem_node_options* options,
                    tandem_node_event_fn fn, void* context, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    if (!options) return Invalid("options is NULL: use TANDEM_NODE_OPTIONS_INIT");
    if (options->version < 1)
      return Invalid("tandem_node_options.version is 0: use TANDEM_NODE_OPTIONS_INIT");
    net::NodeOptions o;
    if (options->listen) o.listen = options->listen;
    if (options->peer_count > 0 && !options->peers) return Invalid("peers is NULL");
    for (size_t i = 0; i < options->peer_count; ++i) {
      if (!options->peers[i]) return Invalid("a peer is NULL");
      o.peers.emplace_back(options->peers[i]);
    }
    switch (options->mode) {
      case TANDEM_NODE_LIVE:
        o.mode = net::NodeMode::kLive;
        break;
      case TANDEM_NODE_INTERVAL:
        o.mode = net::NodeMode::kInterval;
        break;
      case TANDEM_NODE_ONCE:
        o.mode = net::NodeMode::kOnce;
        break;
      default:
        return Invalid("unknown node mode " + std::to_string(options->mode));
    }
    o.interval_s = options->interval_s;
    o.discover = options->discover != 0;
    C_RETURN_IF(ParseList(options->send, "send", &o.send));
    C_RETURN_IF(ParseList(options->receive, "receive", &o.receive));
    if (options->idle_timeout_s < 1 || options->idle_timeout_s > 3600)
      return Invalid("idle_timeout_s must be 1 to 3600");
    if (options->stop_timeout_ms < 0) return Invalid("stop_timeout_ms must not be negative");
    o.idle_timeout_s = options->idle_timeout_s;
    o.keepalive_s = std::max(1, options->idle_timeout_s / 3);
    o.stop_timeout_ms = options->stop_timeout_ms;
    auto n = d->NewNode(std::move(o));
    if (!n.ok()) return n.status();
    if (fn) {
      (*n)->SetEventCallback([fn, context](const net::NodeEvent& e) {
        tandem_node_event ce{static_cast<int>(e.kind),
                             e.device.c_str(),
                             e.address.c_str(),
                             e.message.c_str(),
                             e.ok ? 1 : 0,
                             e.fields_received,
                             e.fields_sent};
        fn(&ce, context);
      });
    }
    auto* h = new tandem_node{std::move(d), std::shared_ptr<net::Node>(std::move(n).value())};
    Register(h, Kind::kNode);
    *out = h;
    return {};
  });
}

// The node of a live handle, held for the call (a concurrent free cannot pull it away).
static Result<std::shared_ptr<net::Node>> NodeOf(tandem_node* node) {
  if (!node) return Status::Invalid("tandem_node is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(node);
  if (it == Handles().end() || it->second != Kind::kNode)
    return Status::Invalid("the tandem_node handle is freed or not a tandem_node");
  return node->node;
}

int tandem_node_start(tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return (*n)->Start();
  });
}

int tandem_node_stop(tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    (*n)->Stop();
    return {};
  });
}

int tandem_node_wait(tandem_node* node, int timeout_ms, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    if (!(*n)->Wait(timeout_ms)) return {TANDEM_BUSY, "the node is still running"};
    return {};
  });
}

void tandem_node_free(tandem_node* node) {
  if (!node || !Unregister(node, Kind::kNode)) return;
  // From another thread Stop() returns once the last event was delivered; from the
  // node's own callback it only begins stopping, and the events still to come
  // (disconnected, stopped) must not reach a callback whose context the app may free
  // with the node.
  node->node->Stop();
  node->node->SetEventCallback(nullptr);
  delete node;  // (from its own callback: the thread finishes on its own)
}

int tandem_node_status(char** json, size_t* len, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return Out(tandem::bindings::Reported(tandem::bindings::NodeSnapshotToJson((*n)->Snapshot())),
               json, len);
  });
}

int tandem_node_listen_address(char** address, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(address, "address"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return Out((*n)->Snapshot().listen, address, nullptr);
  });
}

int tandem_node_event_fd(int* fd, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(fd, "fd"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    *fd = (*n)->event_fd();
    return {};
  });
}

int tandem_node_drain_events(char** json, size_t* len, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    Json j = Json::array();
    for (const auto& e : (*n)->DrainEvents()) j.push_back(tandem::bindings::NodeEventToJson(e));
    return Out(tandem::bindings::Reported(j), json, len);
  });
}

}  // extern "C"
