// The sync node: what `tandem serve` and `tandem sync` run, and what an app embeds.
//
// A node syncs one open replica with its peers over the network: a listener, one
// connection per peer (handshake, encrypted frames, an engine::Session), dialling with
// backoff, live sessions woken by a ChangeSource, and optional LAN discovery. It runs
// on a thread it owns; the app keeps its own threads free.
//
// Lifetime and threads:
//   - Start() returns once the listener is bound (or with the error), and the node runs
//     on its own thread from then on. A node starts at most once.
//   - Stop() is safe from any thread, including from inside an event callback, and more
//     than once. From another thread it returns after goodbyes to connected peers (at
//     most NodeOptions::stop_timeout_ms) and the node thread has ended. From the node's
//     own thread (a callback) it only begins stopping; the destructor, or a Stop() from
//     another thread, waits.
//   - The destructor stops the node. Destroying a node from its own callback is allowed:
//     the thread finishes on its own, holding what it needs.
//   - The replica must outlive the node thread: give its owner as
//     NodeOptions::keep_alive (the device module does).
//   - Snapshot() and DrainEvents() are safe from any thread.
// Several nodes, over several replicas, may run in one process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/sync.h"
#include "tandem/net/group.h"
#include "tandem/net/identity.h"

namespace tandem::net {

inline constexpr uint16_t kDiscoveryPort = 47474;
inline constexpr char kDiscoveryGroup[] = "239.255.74.74";

// Tells the node that the replica may have changed (a commit by this process or
// another). fd() is readable then, until Clear(); the node waits on it with its own
// event loop. Implemented by the storage layer's change watcher.
class ChangeSource {
 public:
  virtual ~ChangeSource() = default;
  virtual int fd() const = 0;
  virtual void Clear() = 0;
};

enum class NodeMode { kLive, kInterval, kOnce };

// How much a log line matters: kWarn, something failed that the node works around or
// retries (a peer it cannot reach, a refused connection); kError, something failed that
// needs a person (it stops, or cannot do part of its job).
enum class LogLevel { kInfo, kWarn, kError };
const char* LogLevelName(LogLevel level);  // "info", "warn", "error"

struct NodeOptions {
  GroupPaths files;                     // the group key, invites, a pending join
  std::string listen;                   // HOST:PORT; empty: no listener; port 0: any free
  std::vector<std::string> peers;       // HOST:PORT to connect to
  bool peers_are_alternatives = false;  // peers are addresses of one device (invite hints)
  NodeMode mode = NodeMode::kLive;
  int interval_s = 0;     // kInterval: sync every N seconds and disconnect
  bool discover = false;  // find peers of the group on the LAN (needs listen)
  engine::CollectionFilter send, receive;
  // The collections whose blobs are fetched only when read (Replica::RequestBlob); the
  // rest as soon as a field referencing them arrives.
  engine::CollectionFilter lazy_blobs = engine::CollectionFilter::None();
  int idle_timeout_s = 45;  // no frame for this long ends a connection
  // How long, after the group key is rotated, members that still have the previous key
  // are let through the first gate (so that they can hear of the rotation).
  int64_t key_grace_s = 7 * 24 * 3600;
  // Live and interval modes: every this many seconds (0: never), report what this
  // replica holds and collect what every member holds (net/collect.h); members silent
  // for longer than `horizon_ms` stop holding collection back.
  int collect_interval_s = 3600;
  // And every this many seconds (and as often as it collects, if more often), report
  // what this replica holds when that moved, whether it collects or not: a member known
  // only by a daemon that never runs for a whole collection interval must not look
  // silent past the horizon to the others.
  int report_interval_s = 600;
  uint64_t horizon_ms = 30ull * 24 * 3600 * 1000;
  // Sessions compare what the two replicas hold once caught up (engine::Digests: a pass
  // over every field state when something changed since the last): this side asks at
  // the first session with each device in each such interval of the wall clock (0: at
  // every session; negative: never; the peer may still ask). A difference found is
  // repaired at once (docs/design.md, Sync).
  int compare_interval_s = 3600;
  int keepalive_s = 15;        // an empty frame after this long without sending
  int stop_timeout_ms = 5000;  // Stop() waits at most this long for goodbyes
  // The replica's data file (DIR/data.mdb; Device::NewNode sets it): once it is moved,
  // removed or replaced (a restore to the same path, a copy put in its place), the node
  // stops, with a kError event: it would sync into a file nobody reads again, and its
  // peers would take what they sent it for delivered. Empty: not watched.
  std::string replica_file;
  // Whatever the node thread needs alive (the replica's owner): held until the node
  // thread has ended, even if the Node object is destroyed first. Declared before
  // `changes`, so it is released after it.
  std::shared_ptr<const void> keep_alive;
  // Whatever the node holds only while it may sync (the device's claim on its replica:
  // Device::NewNode): released when the node thread ends, before kStopped and before
  // Stop returns, or with the node if it never started.
  std::shared_ptr<const void> hold_while_running;
  // Live mode: what wakes sessions (null: a poll every second). The node consumes it.
  std::shared_ptr<ChangeSource> changes;
  // One line per happening, with how much it matters; none if empty.
  std::function<void(const std::string&, LogLevel)> log;
};

enum class NodeEventKind {
  kListening,       // address: the bound listen address
  kConnected,       // a session with a peer began (device, address)
  kCaughtUp,        // both sides of a session caught up (the first time in a session)
  kDisconnected,    // a session ended (message: why, if it failed)
  kRefused,         // a connection was refused (message: why)
  kError,           // something failed (message)
  kJoined,          // this device joined a group through its pending invite
  kInviteRedeemed,  // a device redeemed one of our invites (device)
  kDone,            // kOnce mode: every peer was synced or failed (ok: all succeeded)
  kStopped,         // the node thread is ending; the last event
};
const char* NodeEventName(NodeEventKind kind);

struct NodeEvent {
  NodeEventKind kind;
  std::string device;   // the peer's device id, when known
  std::string address;  // HOST:PORT, when known
  std::string message;
  bool ok = true;  // kDone: every peer caught up; false for kError and kRefused
  uint64_t fields_received = 0, fields_sent = 0;  // kCaughtUp, kDisconnected
};

struct PeerSnapshot {
  std::string address, device, replica_id, direction;
  bool connected = false;
  uint64_t connected_ms = 0, last_sync_ms = 0;
  uint64_t bytes_in = 0, bytes_out = 0, sessions = 0, errors = 0;
  uint64_t messages_in = 0, messages_out = 0;
  // Totals over this node's sessions with the peer (fields_quarantined: of the refused,
  // those held for breaking a schema).
  uint64_t fields_sent = 0, fields_received = 0, fields_refused = 0, fields_quarantined = 0;
  // Rebases (docs/design.md#collection): sessions in which this replica, behind what the
  // peer collected, dropped what it removed; and in which the peer did so on ours.
  uint64_t rebases = 0, rebases_served = 0;
  // Sessions that compared the two replicas' data (engine::Digests), and of those, the
  // ones that found it different where their version vectors agree (each is repaired by a
  // rebase, counted in `rebases`, unless a repair already left it so).
  uint64_t states_compared = 0, states_differed = 0;
  // Blobs (docs/design.md#attachments) fetched from the peer and sent to it, whole, and
  // their bytes (chunks, including those of blobs not finished yet).
  uint64_t blobs_received = 0, blobs_sent = 0, blob_bytes_received = 0, blob_bytes_sent = 0;
  std::optional<uint64_t> pending_changes;  // known while connected (capped at 100,000)
  std::string last_error;
};

struct NodeSnapshot {
  bool running = false;
  std::string device;  // this device's id
  std::string listen;  // the bound address, once listening
  NodeMode mode = NodeMode::kLive;
  uint64_t started_ms = 0, updated_ms = 0;
  uint64_t refused_connections = 0;
  // By reason: busy (too many connections), handshake (not tandem, wrong group key),
  // replay, revoked, not_member, invite.
  std::map<std::string, uint64_t> refused_by_reason;
  uint64_t failures = 0;  // kOnce: peers that did not catch up
  // It stopped because NodeOptions::replica_file was moved, removed or replaced.
  bool replica_gone = false;
  engine::CollectionFilter send, receive;
  // The collections whose blobs are fetched only when read (Replica::RequestBlob); the
  // rest as soon as a field referencing them arrives.
  engine::CollectionFilter lazy_blobs =
      engine::CollectionFilter::None();  // as given (the trust set flows regardless)
  std::vector<PeerSnapshot> peers;
};

class Node {
 public:
  Node(engine::Replica& replica, const Identity& self, NodeOptions options);
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Called on the node thread for every event, never under a lock of the node; it may
  // call any method of the node, Stop() included. Set before Start().
  void SetEventCallback(std::function<void(const NodeEvent&)> fn);
  // Queue mode, for apps with their own event loop: events are also queued (at most
  // 10,000; the oldest are dropped), event_fd() is readable while the queue is not
  // empty, and DrainEvents() takes them.
  int event_fd() const;
  std::vector<NodeEvent> DrainEvents();

  // kInvalidArgument for bad options (addresses), kNotFound without a group key,
  // kIo if the listen address cannot be bound.
  Status Start();
  void Stop();
  // Blocks until the node has stopped (kOnce: by itself, once every peer is done) or
  // timeout_ms passed (-1: no limit). True if stopped.
  bool Wait(int timeout_ms = -1);

  NodeSnapshot Snapshot() const;

  struct Core;

 private:
  Status Launch();  // Start's work, once
  std::shared_ptr<Core> core_;
};

// "host:port" → host, port; "[v6]:port" too. Fails on anything else.
Status ParseHostPort(const std::string& s, std::string* host, uint16_t* port);

}  // namespace tandem::net
