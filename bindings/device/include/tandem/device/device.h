// A device: one replica directory opened as a whole, the one module that knows every
// file in it. The CLI and the C API are both thin users of it.
//
// A replica directory holds:
//   data.mdb, lock.mdb   the replica (storage/, LMDB)
//   origin               storage's, on a filesystem without birth times (format.md)
//   identity.key         this device's Ed25519 identity (net/identity.h)
//   group.key            the sync group's key (net/group.h)
//   group.root           the group founder's public key, the root of its authority
//   invites/             open invites this device made
//   join.code            an invite this device has yet to redeem
//   daemon.json          the status a running `tandem serve` publishes (written by the CLI)
//   daemon.lock          held by a running `tandem serve` or `sync` (flock)
//   serve.lock           held by the one running `tandem serve` (flock)
// Backups carry identity.key, group.key and group.root with the data (Layout::key_files).
//
// Thread-safety: a Device may be used from several threads at once. Opening a directory
// that this process already has open returns the same Device (LMDB forbids opening one
// environment twice in a process); it closes when the last holder lets go.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/net/group.h"
#include "tandem/net/identity.h"
#include "tandem/net/node.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/watcher.h"

namespace tandem::device {

// Every file of a replica directory, in one place.
struct Layout {
  explicit Layout(std::string directory) : dir(std::move(directory)) {}
  std::string dir;
  std::string identity_key() const { return dir + "/identity.key"; }
  std::string status_file() const { return dir + "/daemon.json"; }
  // Held (shared flock) by every running `tandem serve`/`sync`: tells `status` whether
  // one runs even when daemon.json could not be written, and is released by a crash.
  std::string daemon_lock() const { return dir + "/daemon.lock"; }
  // Held (exclusive flock) by a node that keeps syncing (`tandem serve`, an app's live
  // or interval node): a second one is refused (Device::NewNode).
  std::string serve_lock() const { return dir + "/serve.lock"; }
  net::GroupPaths group() const {
    return {dir + "/group.key",  dir + "/invites",          dir + "/join.code",
            dir + "/group.root", dir + "/replica.bindings", dir + "/reports.heard"};
  }
  // What backups carry besides the data: names, and paths in this directory.
  static std::vector<std::string> key_file_names() {
    return {"identity.key", "group.key", "group.root"};
  }
  std::vector<std::string> key_files() const {
    return {identity_key(), dir + "/group.key", dir + "/group.root"};
  }
};

struct OpenOptions {
  storage::Durability durability = storage::Durability::kDurable;
  // For a program that only reads (storage::Options::inspect): a copy of a replica (a
  // backup, a `cp -a`) is read as it is, neither given a replica id of its own nor bound,
  // and refuses writes.
  bool inspect = false;
};

struct InviteOptions {
  std::vector<std::string> addresses;   // HOST:PORT hints, at most 8, each <= 255 bytes
  int64_t expires_minutes = 24 * 60;    // 1 .. 30 days
  net::Role role = net::Role::kMember;  // what the joiner becomes (below this device's)
};

struct Info {
  std::string device_id;
  engine::ReplicaId replica_id;
  engine::VersionVector version_vector;
  uint32_t format = 0;  // the replica's format version (docs/format.md)
};

// Whether a device holds a record's current state, as this device knows it.
struct Holding {
  enum class State { kHolds, kLacks, kUnknown };
  std::string device;
  bool this_device = false;
  bool revoked = false;
  State state = State::kUnknown;
  uint64_t reported_ms = 0;  // when its version vector was last reported here (0: never)
  bool receives = true;      // its last session took this collection from us
  // Judged by the newest report of what it holds that reached this device through others
  // (it never synced with this one directly); reported_ms is then on the reporter's clock.
  bool relayed = false;
};

class Device : public std::enable_shared_from_this<Device> {
 public:
  // Makes a replica in `dir` (created; must be empty or missing) with a new identity and
  // a group of one (this device). kInvalidArgument if `dir` is not empty.
  static Result<std::shared_ptr<Device>> Create(const std::string& dir, const OpenOptions& = {});
  // Opens a replica directory; the same Device if this process has it open already
  // (kInvalidArgument if it was opened with another durability).
  static Result<std::shared_ptr<Device>> Open(const std::string& dir, const OpenOptions& = {});
  ~Device();

  engine::Replica& replica() { return *replica_; }
  const Layout& layout() const { return layout_; }
  // The device identity; kNotFound for a bare replica (made without one, as by
  // storage::CreateReplica), which can be read and written but not synced or paired.
  Result<net::Identity> identity() const;
  const std::string& device_id() const { return device_id_; }  // empty without identity
  Result<Info> GetInfo();

  // Pairing. An invite's code holds this device's key, a one-time secret, the expiry
  // and the hints; it is stored until redeemed or expired.
  Result<std::string> Invite(const InviteOptions& options);
  // What joining another group would take there from this replica: its collections that
  // hold records (tandem's own trust set aside) and the other devices it trusts.
  struct Holdings {
    std::vector<std::string> collections;
    std::vector<std::string> devices;
    bool empty() const { return collections.empty() && devices.empty(); }
  };
  Result<Holdings> OwnHoldings();
  // Stores a code (kInvalidArgument if malformed or our own; its expiry is the inviter's
  // to judge, by its clock, at redemption); the first sync
  // with the inviter redeems it. Returns the invite (the inviter, its hints).
  // Joining merges both ways: a replica that holds data or trusts other devices is
  // refused (kInvalidArgument, saying what it holds) unless `merge` says to join with
  // them.
  Result<net::Invite> Join(const std::string& code, bool merge = false);
  Result<std::optional<net::Invite>> PendingJoin();
  Status CancelJoin();  // kNotFound if nothing is pending
  Result<std::vector<net::Member>> Devices();
  // Delivery status, answered offline: for each device of the group, whether the version
  // vector it last reported to this device covers the record's current state here; for a
  // device this one never synced with directly, the newest report of what it holds that
  // reached this one through others (`relayed`), or kUnknown without one. NotFound if
  // this replica has no state for the record.
  Result<std::vector<Holding>> Where(std::string_view collection, std::string_view id);
  // The group's authority as this replica knows it (statements, refusals).
  Result<net::Authority> Authority();
  // kInvalidArgument for a malformed id or this device; kNotFound if never a member;
  // kUnauthorized (saying why) if this device's role does not allow it.
  Status Revoke(const std::string& device_id);
  // Gives a member another role: kNotFound, kUnauthorized as Revoke.
  Status SetRole(const std::string& device_id, net::Role role);
  // Grants `who` (a device id or a role name) `level` on `collection` (or "*", every
  // collection no permit names). Local writes to a collection this device may not
  // write fail with kUnauthorized.
  Status SetPermit(const std::string& collection, const std::string& who, net::Level level);

  Status Backup(const std::string& dest);
  // A new replica at `dir` from a backup made by Backup (a new replica id; the same
  // device and group).
  static Status Restore(const std::string& backup, const std::string& dir);
  // The store (storage::Check), then the key files present: each must read back.
  Result<storage::CheckReport> Check();
  // kNotFound, naming the file, if the device belongs to a group (group.key) but its
  // identity.key is missing: the data may be whole, yet it cannot pair or sync until the
  // key is restored. OK otherwise.
  Status IdentityIntact() const;
  // kUnauthorized, naming the file, if the group is signed but group.root is missing: the
  // device cannot tell who may do what until it is copied back (net::RootIntact).
  Status RootIntact();

  // Watches this replica for changes by this process and others.
  Result<std::unique_ptr<storage::ChangeWatcher>> Watch();

  // The process that opened it. An LMDB environment does not survive fork(): a child
  // that inherited this device cannot use it (the C API refuses its handles there), and
  // Open in the child opens the replica afresh instead of returning it.
  pid_t opened_by() const { return pid_; }

  // A sync node over this replica; options.files and (for live mode) options.changes are
  // filled in. The node holds the device (and its watcher) until it is destroyed. A live
  // or interval node is refused (Code::kBusy) while another holds the replica.
  Result<std::unique_ptr<net::Node>> NewNode(net::NodeOptions options);

 private:
  Device(std::string dir, std::unique_ptr<engine::Replica> r, std::optional<net::Identity> id,
         storage::Durability d);
  static Result<std::shared_ptr<Device>> Provision(const std::string& dir, const OpenOptions& o);
  Layout layout_;
  std::unique_ptr<engine::Replica> replica_;
  std::optional<net::Identity> identity_;
  std::string device_id_;
  storage::Durability durability_;
  bool inspect_ = false;  // opened only to be read (OpenOptions::inspect): not bound
  std::string key_;       // the registry's key (device and inode of the directory)
  pid_t pid_;
};

}  // namespace tandem::device
