#include "tandem/device/device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "tandem/data/schema.h"
#include "tandem/files/files.h"
#include "tandem/net/binding.h"
#include "tandem/net/collect.h"
#include "tandem/storage/replica.h"

namespace tandem::device {

namespace fs = std::filesystem;

namespace {

// Devices open in this process, by the device and inode of their data.mdb: two
// spellings of one path, or a symlink, find the same one, and since an open device keeps
// its data.mdb open, the inode cannot be another replica's while it is registered.
// A device leaves the registry only once its LMDB environment is closed (under `mu`), and
// Open waits for that, so one environment is never open twice in the process.
struct Registry {
  std::mutex mu;
  std::condition_variable closed;
  std::map<std::string, std::weak_ptr<Device>> open;
};
Registry& TheRegistry() {
  static Registry* r = new Registry;  // never destroyed: devices may outlive main()
  return *r;
}

Result<std::string> DirKey(const std::string& dir) {
  struct stat st;
  const std::string data = dir + "/data.mdb";
  if (::stat(data.c_str(), &st) != 0) return Status::NotFound(data + ": not found");
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

// Local writes follow the collections' schemas, and this device's write permissions:
// an operation on a collection it may not write fails (kUnauthorized) before anything
// is written. Peers refuse such changes anyway; this says so at once.
class DevicePolicy : public engine::WritePolicy {
 public:
  DevicePolicy(net::GroupPaths files, std::string self) : files_(std::move(files)), self_(self) {}

  Result<std::shared_ptr<const engine::CollectionRules>> RulesFor(
      engine::ReadTxn& txn, std::string_view collection) override {
    TANDEM_ASSIGN_OR_RETURN(auto rules, schema_.RulesFor(txn, collection));
    if (collection == net::kAnyCollection)
      return std::shared_ptr<const engine::CollectionRules>(std::make_shared<Refusing>(
          std::move(rules), net::kAnyCollectionIsNoName, Code::kInvalidArgument));
    const bool schemas = collection == net::kSchemasCollection;
    if (self_.empty() || (net::IsSystemCollection(collection) && !schemas)) return rules;
    TANDEM_ASSIGN_OR_RETURN(net::Level level, LevelOf(txn, std::string(collection)));
    if (level == net::Level::kWrite) return rules;
    return std::shared_ptr<const engine::CollectionRules>(
        std::make_shared<Refusing>(std::move(rules), WhyNot(std::string(collection), level)));
  }
  bool Invalidates(const engine::FieldKey& key) const override {
    return schema_.Invalidates(key) || key.collection == net::kStatementsCollection;
  }

 private:
  // Delegates everything but local operations, which it refuses.
  class Refusing : public engine::CollectionRules {
   public:
    Refusing(std::shared_ptr<const engine::CollectionRules> inner, std::string why,
             Code code = Code::kUnauthorized)
        : inner_(std::move(inner)), why_(std::move(why)), code_(code) {}
    Status CheckOp(std::string_view, engine::Op, engine::Value*) const override {
      return Status(code_, why_);
    }
    Status CheckRecord(std::string_view id, const engine::RecordState& record,
                       const std::set<std::string>& written) const override {
      return inner_ ? inner_->CheckRecord(id, record, written) : Status::Ok();
    }
    int PickWinner(std::string_view field,
                   const std::vector<engine::Sibling>& siblings) const override {
      return inner_ ? inner_->PickWinner(field, siblings) : -1;
    }
    Status CheckIncoming(std::string_view field, engine::Kind kind, const engine::Value& value,
                         engine::Hlc hlc, bool at_most) const override {
      return inner_ ? inner_->CheckIncoming(field, kind, value, hlc, at_most) : Status::Ok();
    }

   private:
    std::shared_ptr<const engine::CollectionRules> inner_;
    std::string why_;
    Code code_;
  };

  // Judged again only when the replica has changed since (its change log moved on: a
  // statement, or a join, which writes too), not at every read or write.
  // Why this device may not write `collection`, where it has `level` (LevelOf).
  std::string WhyNot(const std::string& collection, net::Level level) {
    std::lock_guard lock(mu_);
    const net::Standing* me = authority_ ? authority_->Find(self_) : nullptr;
    if (me && me->revoked)
      return "this device was revoked from its group (by " + me->revoked_by +
             "): no member takes its changes";
    if (!me && authority_)
      return "this device is not a member of its group (no statement here admits it)";
    if (collection == net::kSchemasCollection)
      return "only admins and owners of the group change schemas";
    return "this device may not write " + collection + " (it has " + net::LevelName(level) +
           " permission in its group)";
  }

  Result<net::Level> LevelOf(engine::ReadTxn& txn, const std::string& collection) {
    uint64_t at = 0;
    TANDEM_RETURN_IF_ERROR(txn.LastLogSeq(&at));
    std::lock_guard lock(mu_);
    // A group from before statements is looked at again each time: its root arrives with
    // the first statement, and may be saved after that statement's write.
    if (!judged_ || at != judged_at_ || !authority_) {
      TANDEM_ASSIGN_OR_RETURN(auto root, net::LoadRoot(files_));
      if (!root) {
        authority_.reset();  // a group from before statements: anyone writes
      } else {
        TANDEM_ASSIGN_OR_RETURN(auto statements, net::ReadStatements(txn));
        if (authority_ && authority_->root != *root) verified_.clear();
        authority_ = net::Evaluate(*root, statements, &verified_);
      }
      judged_ = true;
      judged_at_ = at;
    }
    return authority_ ? authority_->LevelOf(self_, collection) : net::Level::kWrite;
  }

  data::SchemaPolicy schema_;
  const net::GroupPaths files_;
  const std::string self_;
  std::mutex mu_;
  bool judged_ = false;
  uint64_t judged_at_ = 0;                   // the change log's end when judged
  std::optional<net::Authority> authority_;  // none: a group from before statements
  std::set<net::StatementId> verified_;
};

// A device's new replica ids are bound to its key (net/binding.h).
storage::Options StorageOptions(const OpenOptions& o, const Layout& layout,
                                const std::optional<net::Identity>& self) {
  storage::Options so;
  so.durability = o.durability;
  so.inspect = o.inspect;
  if (self) so.new_ids = net::BoundIds(*self, layout.group().bindings);
  return so;
}

// Publishes the binding of r's replica id; an id that has none and issued nothing yet
// (a restored replica's, or one made before bindings that never wrote) is replaced by a
// bound one first. Best effort: the next open, or the node's start, tries again.
void Bind(engine::Replica& r, const storage::Options& so, const Layout& layout) {
  auto bound = net::PublishOwnBinding(r, layout.group().bindings);
  if (!bound.ok() || *bound || !so.new_ids) return;
  auto meta = r.Meta();
  if (!meta.ok() || meta->vv.Get(meta->id) != 0) return;
  if (storage::TakeNewId(storage::StoreOf(r), so, meta->id).ok())
    (void)net::PublishOwnBinding(r, layout.group().bindings);
}

}  // namespace

Device::Device(std::string dir, std::unique_ptr<engine::Replica> r, std::optional<net::Identity> id,
               storage::Durability d)
    : layout_(std::move(dir)),
      replica_(std::move(r)),
      identity_(std::move(id)),
      device_id_(identity_ ? net::DeviceId(identity_->public_key) : ""),
      durability_(d),
      pid_(::getpid()) {}

Result<net::Identity> Device::identity() const {
  if (!identity_)
    return Status::NotFound(layout_.dir +
                            " has no device identity: identity.key is missing (restore it "
                            "from a backup of this directory; a replica made without one, "
                            "not by `tandem init`, cannot pair or sync)");
  return *identity_;
}

Device::~Device() {
  if (pid_ != ::getpid()) {
    // Inherited through fork(): closing the environment here would close descriptors
    // the parent's locks and this process's own environment on the file depend on
    // (closing any descriptor of a file drops every fcntl lock the process holds on
    // it). Left as it is; the process's exit or exec releases it.
    (void)replica_.release();
    if (key_.empty()) return;
    Registry& reg = TheRegistry();
    std::lock_guard lock(reg.mu);
    auto it = reg.open.find(key_);
    if (it != reg.open.end() && it->second.expired()) reg.open.erase(it);
    reg.closed.notify_all();
    return;
  }
  if (key_.empty()) return;
  Registry& reg = TheRegistry();
  std::lock_guard lock(reg.mu);
  replica_.reset();  // closes the environment before anyone may open it again
  auto it = reg.open.find(key_);
  if (it != reg.open.end() && it->second.expired()) reg.open.erase(it);
  reg.closed.notify_all();
}

Result<std::shared_ptr<Device>> Device::Create(const std::string& dir, const OpenOptions& o) {
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  auto made = Provision(dir, o);
  if (!made.ok() && made.status().code() != Code::kInvalidArgument) {
    // A half-made device (a full disk, say) is removed: `init` can simply run again.
    // (kInvalidArgument: the directory was not empty, and is not ours to touch.)
    if (existed) {
      for (const auto& e : fs::directory_iterator(dir, ec)) fs::remove_all(e.path(), ec);
    } else {
      fs::remove_all(dir, ec);
    }
  }
  return made;
}

Result<std::shared_ptr<Device>> Device::Provision(const std::string& dir, const OpenOptions& o) {
  net::InitCrypto();
  Layout layout(dir);
  auto identity = net::GenerateIdentity();
  const storage::Options so = StorageOptions(o, layout, identity);
  TANDEM_ASSIGN_OR_RETURN(auto r, storage::CreateReplica(dir, so));
  TANDEM_RETURN_IF_ERROR(net::SaveIdentity(identity, layout.identity_key()));
  // A new device starts its own group of one; a join moves it into another.
  TANDEM_RETURN_IF_ERROR(net::SaveGroupKey(layout.group(), net::NewGroupKey()));
  const std::string device = net::DeviceId(identity.public_key);
  TANDEM_RETURN_IF_ERROR(net::AddMember(*r, identity.public_key, device, storage::SystemClockMs()));
  // Its founder: the root of the group's authority.
  TANDEM_RETURN_IF_ERROR(net::SaveRoot(layout.group(), identity.public_key));
  TANDEM_ASSIGN_OR_RETURN(auto meta, r->Meta());
  TANDEM_RETURN_IF_ERROR(net::NoteReplica(*r, device, meta.id));
  TANDEM_ASSIGN_OR_RETURN(bool bound, net::PublishOwnBinding(*r, layout.group().bindings));
  if (!bound) return Status::Io("cannot save the binding of replica " + meta.id.Hex());
  r.reset();  // closed here; Open registers it
  return Open(dir, o);
}

Result<std::shared_ptr<Device>> Device::Open(const std::string& dir, const OpenOptions& o) {
  Registry& reg = TheRegistry();
  // Held while opening, so that two threads opening one directory get one Device.
  std::unique_lock lock(reg.mu);
  auto key = DirKey(dir);
  if (key.ok()) {
    for (;;) {
      auto it = reg.open.find(*key);
      if (it == reg.open.end()) break;
      auto d = it->second.lock();
      if (d && d->pid_ != ::getpid()) {
        // Inherited through fork(): of no use here. This process opens its own.
        reg.open.erase(it);
        break;
      }
      if (d) {
        if (d->durability_ != o.durability)
          return Status::Invalid(dir + " is already open in this process with another durability");
        if (!o.inspect && d->inspect_)
          return Status::Invalid(dir + " is open in this process only to be read");
        return d;
      }
      reg.closed.wait(lock);  // the last holder is closing it: wait until it has
    }
  }
  Layout layout(dir);
  std::optional<net::Identity> identity;
  if (auto id = net::LoadIdentity(layout.identity_key()); id.ok()) {
    identity = std::move(id).value();
  } else if (id.status().code() != Code::kNotFound) {
    return id.status().With(layout.identity_key());
  }
  const storage::Options so = StorageOptions(o, layout, identity);
  // A replica that takes a new id as it opens is a copy, or was rolled back.
  storage::Options open_so = so;
  auto took_id = std::make_shared<bool>(false);
  open_so.new_ids = [inner = so.new_ids, took_id] {
    *took_id = true;
    return inner ? inner() : storage::RandomReplicaId();
  };
  TANDEM_ASSIGN_OR_RETURN(auto r, storage::OpenReplica(dir, open_so));
  // Its invites are its original's, which may have burned them since the copy was made
  // (each code works once): they are dropped, and new ones are made with `invite`.
  if (*took_id) TANDEM_RETURN_IF_ERROR(net::DropInvites(layout.group()));
  // Opened to be read, a replica is left as it is (a copy would bind its original's id,
  // one from before bindings would publish its own): the next open to write binds it.
  if (identity && !o.inspect) Bind(*r, so, layout);
  // Every local write through the device follows its collections' schemas and its
  // permissions.
  r->SetWritePolicy(std::make_shared<DevicePolicy>(
      layout.group(), identity ? net::DeviceId(identity->public_key) : std::string()));
  TANDEM_ASSIGN_OR_RETURN(std::string k, DirKey(dir));
  auto d =
      std::shared_ptr<Device>(new Device(dir, std::move(r), std::move(identity), o.durability));
  d->key_ = k;
  d->inspect_ = o.inspect;
  reg.open[k] = d;
  return d;
}

Result<Info> Device::GetInfo() {
  TANDEM_ASSIGN_OR_RETURN(auto meta, replica_->Meta());
  TANDEM_ASSIGN_OR_RETURN(uint32_t format, storage::StoreOf(*replica_).Format());
  return Info{device_id_, meta.id, meta.vv, format};
}

Result<std::string> Device::Invite(const InviteOptions& o) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  TANDEM_RETURN_IF_ERROR(net::LoadGroupKey(layout_.group()).status());
  if (o.expires_minutes < 1 || o.expires_minutes > 60 * 24 * 30)
    return Status::Invalid("an invite expires after 1 minute to 30 days");
  if (o.addresses.size() > 8) return Status::Invalid("at most 8 address hints");
  for (const auto& a : o.addresses) {
    if (a.size() > 255) return Status::Invalid("an address hint is longer than 255 bytes");
    std::string host;
    uint16_t port;
    TANDEM_RETURN_IF_ERROR(net::ParseHostPort(a, &host, &port));
  }
  if (o.role == net::Role::kOwner)
    return Status::Invalid("an invite grants reader, member or admin; make owners with `role`");
  {
    TANDEM_RETURN_IF_ERROR(
        net::FounderUpkeep(*replica_, layout_.group(), self, storage::SystemClockMs()));
    TANDEM_ASSIGN_OR_RETURN(auto a, Authority());
    TANDEM_RETURN_IF_ERROR(net::MayInvite(a, self.public_key, o.role));
  }
  net::Invite inv;
  inv.role = o.role;
  inv.inviter = self.public_key;
  inv.secret = net::NewGroupKey();
  inv.expires_ms = storage::SystemClockMs() + static_cast<uint64_t>(o.expires_minutes) * 60000;
  inv.addresses = o.addresses;
  TANDEM_RETURN_IF_ERROR(net::StoreInvite(layout_.group(), inv));
  return net::EncodeInvite(inv);
}

Result<Device::Holdings> Device::OwnHoldings() {
  Holdings h;
  TANDEM_ASSIGN_OR_RETURN(auto collections, replica_->Collections());
  for (const auto& c : collections) {
    if (c == net::kDevicesCollection || c == net::kStatementsCollection ||
        c == net::kBindingsCollection)
      continue;
    bool any = false;
    TANDEM_RETURN_IF_ERROR(replica_->Scan(c, "", [&](const engine::Record&) {
      any = true;
      return false;
    }));
    if (any) h.collections.push_back(c);
  }
  TANDEM_ASSIGN_OR_RETURN(auto members, Devices());
  for (const auto& m : members)
    if (m.device != device_id()) h.devices.push_back(m.device);
  return h;
}

Result<net::Invite> Device::Join(const std::string& code, bool merge) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  auto inv = net::DecodeInvite(code);
  if (!inv.ok()) return Status::Invalid(inv.status().message());
  if (inv->inviter == self.public_key)
    return Status::Invalid("this invite was made by this device");
  TANDEM_ASSIGN_OR_RETURN(Holdings h, OwnHoldings());
  if (!merge && !h.empty()) {
    std::string what;
    if (!h.collections.empty()) {
      what = "records in " + std::to_string(h.collections.size()) + " collection" +
             (h.collections.size() == 1 ? "" : "s") + " (";
      for (size_t i = 0; i < h.collections.size() && i < 5; ++i)
        what += (i ? ", " : "") + h.collections[i];
      what += h.collections.size() > 5 ? ", ...)" : ")";
    }
    if (!h.devices.empty())
      what += (what.empty() ? "" : " and ") + std::to_string(h.devices.size()) + " other device" +
              (h.devices.size() == 1 ? "" : "s") + " it trusts";
    return Status::Invalid(
        layout_.dir + " already holds " + what +
        ": joining would send them to the inviter's group and bring that group's data and "
        "devices here. Join from a new replica (tandem init), or give --merge to join with "
        "them");
  }
  // A reader's writes reach nobody: its records would stay here alone, for good.
  if (merge && inv->role == net::Role::kReader && !h.collections.empty())
    return Status::Invalid(
        layout_.dir +
        " holds records, and this invite makes it a reader, whose writes "
        "every device refuses: they would never reach the group. Join from a new replica "
        "(tandem init), or ask for an invite with a role that may write");
  // Schemas set here by this device as its own group's founder: the group refuses them
  // from anyone below admin, while this replica would go on applying them to its writes
  // and to the group's (its data and the group's would never converge).
  if (merge && inv->role < net::Role::kAdmin) {
    std::vector<std::string> schemas;
    TANDEM_RETURN_IF_ERROR(
        replica_->Scan(net::kSchemasCollection, "", [&](const engine::Record& rec) {
          schemas.push_back(rec.id);
          return schemas.size() < 6;
        }));
    if (!schemas.empty()) {
      std::string names;
      for (size_t i = 0; i < schemas.size() && i < 5; ++i) names += (i ? ", " : "") + schemas[i];
      return Status::Invalid(layout_.dir + " holds schemas (for " + names +
                             (schemas.size() > 5 ? ", ..." : "") +
                             "), and this invite makes it a " + net::RoleName(inv->role) +
                             ", which may not set schemas: the group would "
                             "refuse them while this replica kept applying them. Join from a new "
                             "replica (tandem init), or ask for an admin invite");
    }
  }
  // Not judged here: the inviter judges the expiry by its own clock when the code is
  // redeemed, and this device's clock may be off by more than the invite's lifetime.
  TANDEM_RETURN_IF_ERROR(net::SaveJoin(layout_.group(), code));
  return std::move(inv).value();
}

Result<std::optional<net::Invite>> Device::PendingJoin() { return net::LoadJoin(layout_.group()); }

Status Device::CancelJoin() {
  TANDEM_ASSIGN_OR_RETURN(auto pending, PendingJoin());
  if (!pending) return Status::NotFound("no pending join in " + layout_.dir);
  return net::ClearJoin(layout_.group());
}

Result<std::vector<net::Member>> Device::Devices() {
  return net::Members(*replica_, layout_.group());
}

Result<net::Authority> Device::Authority() {
  return net::ReadAuthority(*replica_, layout_.group());
}

Result<std::vector<Holding>> Device::Where(std::string_view c, std::string_view id) {
  // NotFound first, whatever the group.
  TANDEM_RETURN_IF_ERROR(replica_->Holds(c, id, engine::PeerState()).status());
  TANDEM_ASSIGN_OR_RETURN(auto members, Devices());
  TANDEM_ASSIGN_OR_RETURN(auto peers, replica_->Peers());
  std::map<engine::ReplicaId, engine::PeerState> by_replica(peers.begin(), peers.end());
  std::vector<Holding> out;
  std::optional<net::GroupHolding> group;  // read once, if a member needs it
  bool self_listed = false;
  for (const auto& m : members) {
    Holding h;
    h.device = m.device;
    h.revoked = m.revoked;
    h.this_device = m.device == device_id_;
    if (h.this_device) {
      h.state = Holding::State::kHolds;
      self_listed = true;
      out.push_back(std::move(h));
      continue;
    }
    // Its most recent report, over the replicas it syncs as.
    const engine::PeerState* latest = nullptr;
    for (const auto& r : m.replicas) {
      auto it = by_replica.find(r);
      if (it != by_replica.end() && it->second.last_sync_ms > 0 &&
          (!latest || it->second.last_sync_ms > latest->last_sync_ms))
        latest = &it->second;
    }
    if (latest) {
      h.reported_ms = latest->last_sync_ms;
      h.receives = latest->delivery.Allows(std::string(c));
      TANDEM_ASSIGN_OR_RETURN(bool holds, replica_->Holds(c, id, *latest));
      h.state = holds ? Holding::State::kHolds : Holding::State::kLacks;
    } else {
      // Never synced with us: what it reported holding, as its report reached us through
      // the others (reports spread like any record).
      if (!group) {
        TANDEM_ASSIGN_OR_RETURN(group, net::HeldByMembers(*replica_, layout_.group(), device_id_,
                                                          storage::SystemClockMs()));
      }
      for (const auto& mh : group->members) {
        if (mh.device != m.device || mh.reported_ms == 0) continue;
        engine::PeerState reported;
        reported.vv = mh.vv;
        // A replica holds every event of its own, whatever its report says of them.
        if (mh.replica) reported.vv.Raise(*mh.replica, UINT64_MAX);
        TANDEM_ASSIGN_OR_RETURN(bool holds, replica_->Holds(c, id, reported));
        h.state = holds ? Holding::State::kHolds : Holding::State::kLacks;
        h.reported_ms = mh.reported_ms;
        h.relayed = true;
      }
    }
    out.push_back(std::move(h));
  }
  if (!self_listed) {  // a bare replica, or a group not yet joined
    Holding h;
    h.device = device_id_;
    h.this_device = true;
    h.state = Holding::State::kHolds;
    out.insert(out.begin(), std::move(h));
  }
  return out;
}

Status Device::Revoke(const std::string& typed) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  const auto id = net::CanonicalDeviceId(typed);
  if (!id) return Status::Invalid("not a device id (check for typos): " + typed);
  const std::string& device = *id;
  if (device == device_id_)
    return Status::Invalid("a device cannot revoke itself; revoke it from another member");
  // The founder signs what it can first (net::FounderUpkeep).
  TANDEM_RETURN_IF_ERROR(
      net::FounderUpkeep(*replica_, layout_.group(), self, storage::SystemClockMs()));
  return net::Revoke(*replica_, layout_.group(), self, device, storage::SystemClockMs());
}

Status Device::SetPermit(const std::string& collection, const std::string& typed,
                         net::Level level) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  // A role, or a device id as typed (dashes anywhere or none).
  const auto id = net::ParseRole(typed) ? std::nullopt : net::CanonicalDeviceId(typed);
  const std::string& who = id ? *id : typed;
  TANDEM_RETURN_IF_ERROR(
      net::FounderUpkeep(*replica_, layout_.group(), self, storage::SystemClockMs()));
  return net::SetPermit(*replica_, layout_.group(), self, collection, who, level,
                        storage::SystemClockMs());
}

Status Device::SetRole(const std::string& typed, net::Role role) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  const auto id = net::CanonicalDeviceId(typed);
  if (!id) return Status::Invalid("not a device id (check for typos): " + typed);
  const std::string& device = *id;
  if (device == device_id_) return Status::Invalid("a device cannot change its own role");
  TANDEM_RETURN_IF_ERROR(
      net::FounderUpkeep(*replica_, layout_.group(), self, storage::SystemClockMs()));
  return net::SetRole(*replica_, layout_.group(), self, device, role, storage::SystemClockMs());
}

Status Device::Backup(const std::string& dest) {
  return storage::Backup(storage::StoreOf(*replica_), dest, layout_.key_files());
}

namespace {
// The key files present in a directory read back: a damaged one leaves a replica that
// cannot pair or sync, though its data is whole.
Status CheckKeyFiles(const Layout& l) {
  std::error_code ec;
  if (fs::exists(l.identity_key(), ec))
    TANDEM_RETURN_IF_ERROR(net::LoadIdentity(l.identity_key()).status());
  if (fs::exists(l.group().group_key, ec))
    TANDEM_RETURN_IF_ERROR(net::LoadGroupKey(l.group()).status());
  return net::LoadRoot(l.group()).status();
}
}  // namespace

Status Device::Restore(const std::string& backup, const std::string& dir) {
  // Refused before anything is made.
  TANDEM_RETURN_IF_ERROR(CheckKeyFiles(Layout(backup)).With("backup"));
  return storage::Restore(backup, dir, Layout::key_file_names());
}

Result<storage::CheckReport> Device::Check() {
  storage::CheckReport rep;
  TANDEM_RETURN_IF_ERROR(storage::Check(storage::StoreOf(*replica_), &rep));
  TANDEM_RETURN_IF_ERROR(CheckKeyFiles(layout_));
  return rep;
}

Status Device::IdentityIntact() const {
  std::error_code ec;
  if (identity_ || !fs::exists(layout_.group().group_key, ec)) return Status::Ok();
  return Status::NotFound(layout_.identity_key() +
                          " is missing: this device cannot pair or sync until it is restored "
                          "from a backup of this directory (the data itself is whole)");
}

Status Device::RootIntact() { return net::RootIntact(*replica_, layout_.group()); }

Result<std::unique_ptr<storage::ChangeWatcher>> Device::Watch() {
  return storage::ChangeWatcher::Create(*replica_);
}

namespace {

class WatcherSource : public net::ChangeSource {
 public:
  explicit WatcherSource(std::unique_ptr<storage::ChangeWatcher> w) : w_(std::move(w)) {}
  int fd() const override { return w_->fd(); }
  void Clear() override { w_->Clear(); }

 private:
  std::unique_ptr<storage::ChangeWatcher> w_;
};

// The exclusive lock on serve.lock that keeps a second node that keeps syncing off the
// replica, held while the node may sync (NodeOptions::hold_while_running).
struct ServeHold {
  int fd = -1;
  ~ServeHold() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::unique_ptr<net::Node>> Device::NewNode(net::NodeOptions o) {
  TANDEM_ASSIGN_OR_RETURN(auto self, identity());
  o.files = layout_.group();
  // The node holds the device until its thread ends (and the watcher, released first).
  o.keep_alive = shared_from_this();
  if (o.replica_file.empty()) o.replica_file = layout_.dir + "/data.mdb";
  if (o.mode != net::NodeMode::kOnce) {
    // One node that keeps syncing per replica (`tandem serve`, an app's, in any process):
    // a second would dial and accept the same peers under the same replica id. A
    // one-shot sync beside it is fine.
    const std::string path = layout_.serve_lock();
    auto hold = std::make_shared<ServeHold>();
    TANDEM_ASSIGN_OR_RETURN(hold->fd, files::TryLockFile(path));
    if (hold->fd < 0)
      return Status::Busy("another node (a tandem serve, or an app's) already syncs " +
                          layout_.dir + "; stop it first");
    o.hold_while_running = std::move(hold);
    TANDEM_ASSIGN_OR_RETURN(auto watcher, Watch());
    o.changes = std::make_shared<WatcherSource>(std::move(watcher));
  }
  return std::make_unique<net::Node>(*replica_, self, std::move(o));
}

}  // namespace tandem::device
