// The trust set: signed statements judged into an authority (authority.h), the root
// file, the unsigned per-device records and revocation cutoffs. The write limits are
// in write_limits.cc, the founder's upkeep and the rotation of the group key in
// founder.cc. See group.h, "The trust set".
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "tandem/files/files.h"
#include "tandem/net/binding.h"
#include "tandem/net/collect.h"
#include "tandem/net/group.h"
#include "trust_internal.h"

namespace tandem::net {
namespace {

using engine::Value;
const Value* Register(const engine::Record& r, const char* field) {
  auto it = r.fields.find(field);
  if (it == r.fields.end() || it->second.kind != engine::Kind::kRegister) return nullptr;
  return &it->second.scalar;
}
std::string StringField(const engine::Record& r, const char* field) {
  auto* v = Register(r, field);
  if (!v) return {};
  auto* s = std::get_if<std::string>(v);
  return s ? *s : std::string();
}

bool ParseHex32(const std::string& s, Key32* out) {
  size_t bin_len = 0;
  return s.size() == 64 &&
         sodium_hex2bin(out->data(), out->size(), s.data(), s.size(), nullptr, &bin_len, nullptr) ==
             0 &&
         bin_len == 32;
}

// "hex:n" (or several, comma-separated) -> a map; malformed entries are skipped.
std::map<engine::ReplicaId, uint64_t> ParseCutoff(const std::string& s) {
  std::map<engine::ReplicaId, uint64_t> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(at, end - at);
    size_t colon = item.find(':');
    if (colon != std::string::npos) {
      auto id = engine::ReplicaId::FromHex(item.substr(0, colon));
      std::string n = item.substr(colon + 1);
      if (id.ok() && !n.empty() && n.size() <= 19 &&
          n.find_first_not_of("0123456789") == std::string::npos)
        out[*id] = std::stoull(n);
    }
    at = end + 1;
  }
  return out;
}

std::optional<Member> ToMember(const engine::Record& r) {
  Member m;
  m.device = r.id;
  if (!ParseHex32(StringField(r, "key"), &m.key) || DeviceId(m.key) != r.id) return std::nullopt;
  m.added_by = StringField(r, "added_by");
  if (auto* v = Register(r, "added_ms"); v && std::holds_alternative<int64_t>(*v))
    m.added_ms = static_cast<uint64_t>(std::get<int64_t>(*v));
  // Revocation is sticky: any write of "revoked" (even a concurrent sibling) revokes.
  m.revoked = r.fields.count("revoked") > 0;
  m.revoked_by = StringField(r, "revoked_by");
  if (auto it = r.fields.find("replicas");
      it != r.fields.end() && it->second.kind == engine::Kind::kSet)
    for (const auto& v : it->second.set)
      if (auto* h = std::get_if<std::string>(&v))
        if (auto id = engine::ReplicaId::FromHex(*h); id.ok()) m.replicas.push_back(*id);
  // "cutoff": a set of "hex:n" entries (one per revocation); the smallest per replica.
  if (auto it = r.fields.find("cutoff");
      it != r.fields.end() && it->second.kind == engine::Kind::kSet)
    for (const auto& v : it->second.set)
      if (auto* e = std::get_if<std::string>(&v))
        for (const auto& [id, n] : ParseCutoff(*e)) {
          auto c = m.cutoff.find(id);
          m.cutoff[id] = c == m.cutoff.end() ? n : std::min(c->second, n);
        }
  return m;
}

}  // namespace

Result<std::vector<Member>> Records(engine::Replica& r,
                                    std::map<engine::ReplicaId, std::string>* bound) {
  std::vector<Member> out;
  TANDEM_RETURN_IF_ERROR(r.Scan(kDevicesCollection, "", [&](const engine::Record& rec) {
    if (auto m = ToMember(rec)) out.push_back(std::move(*m));
    return true;
  }));
  TANDEM_ASSIGN_OR_RETURN(auto bindings, ReadBindings(r));
  for (auto& m : out) {
    std::erase_if(m.replicas, [&](const engine::ReplicaId& id) {
      auto b = bindings.find(id);
      return b != bindings.end() && b->second != m.device;
    });
    for (const auto& [id, device] : bindings)
      if (device == m.device) {
        if (std::find(m.replicas.begin(), m.replicas.end(), id) == m.replicas.end())
          m.replicas.push_back(id);
        m.bound.insert(id);
      }
  }
  if (bound) *bound = std::move(bindings);
  return out;
}

Result<std::map<std::string, std::vector<engine::ReplicaId>>> ReplicasByDevice(
    engine::Replica& r, std::map<engine::ReplicaId, std::string>* bindings) {
  std::map<engine::ReplicaId, std::string> bound;
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r, &bound));
  std::map<std::string, std::vector<engine::ReplicaId>> out;
  for (auto& m : records) out[m.device] = std::move(m.replicas);
  // A device whose record is gone (or never arrived) keeps its bound replicas.
  for (const auto& [id, device] : bound) {
    auto& ids = out[device];
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  if (bindings) *bindings = std::move(bound);
  return out;
}

std::set<engine::ReplicaId> BoundToMembers(const std::map<engine::ReplicaId, std::string>& bindings,
                                           const Authority& a) {
  std::set<engine::ReplicaId> out;
  for (const auto& [id, device] : bindings)
    if (a.Find(device)) out.insert(id);
  return out;
}

Status Sign(engine::Replica& r, const Identity& self, const Authority& a, Statement s,
            uint64_t now_ms) {
  s.time_ms = now_ms;
  s.parents = a.heads;
  if (s.parents.size() > kMaxStatementParents) s.parents.resize(kMaxStatementParents);
  SignStatement(&s, self, a.root);
  const std::string e = EncodeStatement(s);
  return r.Put(kStatementsCollection, HexId(IdOf(e)),
               {{kStatementField, engine::Value(engine::Bytes{e})}});
}

Status AddMember(engine::Replica& r, const Key32& key, const std::string& added_by,
                 uint64_t now_ms) {
  return r.Put(kDevicesCollection, DeviceId(key),
               {{"key", Value(Hex(key))},
                {"added_by", Value(added_by)},
                {"added_ms", Value(static_cast<int64_t>(now_ms))}});
}

Status NoteReplica(engine::Replica& r, const std::string& device,
                   const engine::ReplicaId& replica) {
  std::map<engine::ReplicaId, std::string> bound;
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r, &bound));
  if (auto b = bound.find(replica); b != bound.end() && b->second != device)
    return Status::Unauthorized("replica " + replica.Hex() + " is bound to device " + b->second +
                                ", not " + device);
  const Member* self = nullptr;
  for (const auto& m : records) {
    for (const auto& id : m.replicas)
      if (id == replica) {
        if (m.device == device) return Status::Ok();  // known
        // A Hello naming another device's replica: not recorded (a revocation of this
        // device must never cut off that one).
        return Status::Unauthorized("replica " + replica.Hex() + " belongs to device " + m.device +
                                    ", not " + device);
      }
    if (m.device == device) self = &m;
  }
  if (!self) return Status::Ok();  // not recorded: nothing to note
  return r.Add(kDevicesCollection, device, "replicas", Value(replica.Hex()));
}

Result<std::vector<engine::ReplicaId>> ReplicasOf(engine::Replica& r, const std::string& device) {
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r));
  return std::move(replicas[device]);
}

Result<std::map<engine::ReplicaId, uint64_t>> RevocationCutoffs(engine::Replica& r,
                                                                const Authority& a) {
  std::map<engine::ReplicaId, uint64_t> out;
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r));
  std::set<engine::ReplicaId> innocent{meta.id};  // ours, and members' in good standing
  for (const auto& [device, d] : a.devices)
    if (!d.revoked) innocent.insert(replicas[device].begin(), replicas[device].end());
  for (const auto& [device, d] : a.devices) {
    if (!d.revoked) continue;
    // A replica of the device with no cutoff (noted after the revocation was made, a
    // restore for instance) has no accepted events at all: cutoff 0.
    for (const auto& id : replicas[device])
      if (!d.cutoff.count(id) && !innocent.count(id)) out.emplace(id, 0);
    for (const auto& [id, n] : d.cutoff) {
      if (innocent.count(id)) continue;
      auto it = out.find(id);
      out[id] = it == out.end() ? n : std::min(it->second, n);
    }
  }
  return out;
}

namespace {
// What group.root holds for a group from before statements (its founder is read from the
// unsigned trust records): unlike a missing file, never taken for a deleted one.
constexpr char kLegacyRoot[] = "legacy";
}  // namespace

Status SaveRoot(const GroupPaths& files, const std::optional<Key32>& root) {
  return tandem::files::WriteAtomic(files.root,
                                    (root ? Hex(*root) : std::string(kLegacyRoot)) + "\n");
}

Result<std::optional<Key32>> LoadRoot(const GroupPaths& files, bool* missing) {
  if (missing) *missing = false;
  auto data = tandem::files::ReadSmall(files.root, 256);
  if (!data.ok()) {
    if (data.status().code() != Code::kNotFound) return data.status();
    if (missing) *missing = true;
    return std::optional<Key32>();
  }
  std::string hex = *data;
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.pop_back();
  if (hex == kLegacyRoot) return std::optional<Key32>();
  Key32 k;
  if (!ParseHex32(hex, &k)) return Status::Corrupt(files.root + " is damaged");
  return std::optional<Key32>(k);
}

Result<std::vector<std::string>> ReadStatements(engine::ReadTxn& txn) {
  std::vector<std::string> out;
  TANDEM_RETURN_IF_ERROR(txn.ScanRecords(
      kStatementsCollection, "", [&](const std::string& id, engine::RecordState& state) {
        auto rec = engine::Read(id, state);
        if (!rec) return true;
        auto it = rec->fields.find(kStatementField);
        if (it != rec->fields.end() && it->second.kind == engine::Kind::kRegister)
          if (auto* b = std::get_if<engine::Bytes>(&it->second.scalar)) out.push_back(b->data);
        return true;
      }));
  return out;
}

Result<std::vector<std::string>> ReadStatements(engine::Replica& r) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, r.store().BeginRead());
  return ReadStatements(*txn);
}

engine::Admission AdmitStatement(const engine::FieldDelta& d, const std::optional<Key32>& root) {
  if (d.key.collection != kStatementsCollection) return engine::Admission::kAccept;
  const engine::FieldState& s = d.state;
  // Grow-only: one field, never removed, holding the statement its id names.
  if (d.key.field != kStatementField || s.markers.empty() || !s.elements.empty() ||
      !s.counter.empty() || !s.counter_base.empty())
    return engine::Admission::kRefuse;
  for (const auto& [dot, m] : s.markers) {
    auto* b = std::get_if<engine::Bytes>(&m.value);
    if (m.kind != engine::Kind::kRegister || !b || HexId(IdOf(b->data)) != d.key.record)
      return engine::Admission::kRefuse;
    auto st = DecodeStatement(b->data);
    if (!st.ok() || (root && !VerifyStatement(*st, *root))) return engine::Admission::kRefuse;
  }
  return engine::Admission::kAccept;
}

Status StoreStatements(engine::Replica& r, const std::vector<std::string>& encoded,
                       const Key32& root) {
  return r.Write([&](engine::Batch& b) -> Status {
    for (const auto& e : encoded) {
      auto st = DecodeStatement(e);
      if (!st.ok()) return st.status();
      if (!VerifyStatement(*st, root))
        return Status::Invalid("a statement not signed by its signer for this group");
      TANDEM_RETURN_IF_ERROR(
          b.Put(kStatementsCollection, HexId(IdOf(e)), kStatementField, Value(engine::Bytes{e})));
    }
    return Status::Ok();
  });
}

namespace {

// The founder of a group from before statements: the device whose record says it added
// itself (as `init` does), the earliest, then the smallest id.
const Member* LegacyFounder(const std::vector<Member>& records) {
  const Member* f = nullptr;
  for (const auto& m : records)
    if (m.added_by == m.device &&
        (!f || m.added_ms < f->added_ms || (m.added_ms == f->added_ms && m.device < f->device)))
      f = &m;
  return f;
}

Authority LegacyAuthority(const std::vector<Member>& records, const Member* founder) {
  Authority a;
  a.legacy = true;
  if (founder) a.root = founder->key;
  for (const auto& m : records) {
    Standing s;
    s.key = m.key;
    s.device = m.device;
    s.founder = founder && m.device == founder->device;
    s.role = s.founder ? Role::kOwner : Role::kMember;
    s.granted_by = s.founder ? "" : m.added_by;
    s.granted_ms = m.added_ms;
    s.revoked = m.revoked;
    s.revoked_by = m.revoked_by;
    s.cutoff = m.cutoff;
    a.devices[m.device] = std::move(s);
  }
  return a;
}

const char* Article(Role r) { return r == Role::kAdmin || r == Role::kOwner ? "an" : "a"; }

std::string RoleOf(const Authority& a, const std::string& device) {
  const Standing* s = a.Find(device);
  if (!s) return "not a member";
  if (s->revoked) return "revoked";
  return s->founder ? "the founder" : std::string(Article(s->role)) + " " + RoleName(s->role);
}

// Why `self` may not act on `device` (rank `subject`), or Ok.
Status MayActOn(const Authority& a, const std::string& self, const std::string& device,
                const char* verb) {
  const int rank = a.Rank(self);
  if (rank < static_cast<int>(Role::kAdmin))
    return Status::Unauthorized("this device is " + RoleOf(a, self) + " of the group: only " +
                                "admins and owners can " + verb + " devices");
  if (device == self) return Status::Invalid(std::string("a device cannot ") + verb + " itself");
  if (const int subject = a.Rank(device); subject >= rank)
    return Status::Unauthorized(
        "device " + device + " is " + RoleOf(a, device) +
        (subject > rank ? ", above" : ", as high as") + " this device (" + RoleOf(a, self) + "): " +
        (subject == kFounderRank ? "nobody" : "only a higher role") + " can " + verb + " it");
  return Status::Ok();
}

// The replicas of every device in `devices` (ReplicasByDevice).
Result<std::vector<engine::ReplicaId>> ReplicasOf(engine::Replica& r,
                                                  const std::set<std::string>& devices) {
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r));
  std::vector<engine::ReplicaId> out;
  for (const auto& [device, ids] : replicas)
    if (devices.count(device)) out.insert(out.end(), ids.begin(), ids.end());
  return out;
}

// The unsigned revocation of a group from before statements (and for members that
// still run a version from then).
Status WriteLegacyRevocation(engine::Replica& r, const std::string& device, const std::string& by,
                             uint64_t now_ms, const std::map<engine::ReplicaId, uint64_t>& cutoff) {
  // Entries of a set: a second or concurrent revocation adds its own, and the smallest
  // per replica holds (RevocationCutoffs), so a cutoff never rises.
  return r.Write([&](engine::Batch& b) -> Status {
    TANDEM_RETURN_IF_ERROR(b.Put(kDevicesCollection, device, "revoked", Value(true)));
    TANDEM_RETURN_IF_ERROR(b.Put(kDevicesCollection, device, "revoked_by", Value(by)));
    TANDEM_RETURN_IF_ERROR(
        b.Put(kDevicesCollection, device, "revoked_ms", Value(static_cast<int64_t>(now_ms))));
    for (const auto& [id, n] : cutoff)
      TANDEM_RETURN_IF_ERROR(
          b.Add(kDevicesCollection, device, "cutoff", Value(id.Hex() + ":" + std::to_string(n))));
    return Status::Ok();
  });
}

}  // namespace

Status ComputeCutoff(engine::Replica& r, const std::vector<engine::ReplicaId>& replicas,
                     std::map<engine::ReplicaId, uint64_t>* cutoff) {
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  // The cutoff is the last event of each of the device's replicas that this replica
  // holds: its version vector may lag what it has applied (a filtered or interrupted
  // sync), so the field states themselves are read too.
  for (const auto& id : replicas)
    if (id != meta.id) (*cutoff)[id] = meta.vv.Get(id);
  if (cutoff->empty()) return Status::Ok();
  uint64_t cursor = 0;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(auto page, r.CollectDeltas(cursor, 4096, nullptr));
    for (const auto& d : page.deltas)
      for (auto& [id, n] : *cutoff) n = std::max(n, d.state.ctx.Get(id));
    cursor = page.next_cursor;
    if (page.done) break;
  }
  return Status::Ok();
}

namespace {
// A statement that gives write permission back records, for each of the device's
// replicas, at least what that replica showed this one it had issued (PeerState::vv's
// own entry: its last CaughtUp, or the states it sent since): this replica may have
// refused those writes, and
// holds nothing of them, yet they were made while the permission was away
// (Standing::write_windows). Only the replica's word on itself is taken: one that
// inflates it has its own later writes refused, no one else's.
Status RaiseToWhatTheyIssued(engine::Replica& r, const std::vector<engine::ReplicaId>& replicas,
                             std::map<engine::ReplicaId, uint64_t>* cutoff) {
  for (const auto& id : replicas) {
    auto peer = r.Peer(id);
    if (!peer.ok() && peer.status().code() == Code::kNotFound) continue;
    TANDEM_RETURN_IF_ERROR(peer.status());
    const uint64_t issued = peer->vv.Get(id);
    if (auto it = cutoff->find(id); it != cutoff->end()) it->second = std::max(it->second, issued);
  }
  return Status::Ok();
}

// Whether `device`, given `role`, may write a collection it may not write now (gives),
// and whether it may no longer write one it may (takes).
struct WriteChange {
  bool gives = false;
  bool takes = false;
};
WriteChange WriteChangeOf(const Authority& a, const std::string& device, Role role) {
  WriteChange out;
  Authority as = a;
  auto it = as.devices.find(device);
  if (it == as.devices.end()) return out;
  it->second.role = role;
  std::set<std::string> names{kAnyCollection, kSchemasCollection};
  for (const auto& p : a.permits) names.insert(p.collection);
  for (const auto& c : names) {
    const bool now = a.LevelOf(device, c) == Level::kWrite;
    const bool then = as.LevelOf(device, c) == Level::kWrite;
    out.gives |= then && !now;
    out.takes |= now && !then;
  }
  return out;
}

// A write cutoff for a statement: its zero entries say what absence says (unlike a
// revocation's, where absence leaves another revocation's cutoff alone), and past
// kMaxStatementCutoffs replicas the last are left out (a device that made that many
// replicas loses, at the replicas left out, what it wrote before: it cannot keep
// itself from being limited so).
void FitWriteCutoff(std::map<engine::ReplicaId, uint64_t>* cutoff) {
  std::erase_if(*cutoff, [](const auto& e) { return e.second == 0; });
  while (cutoff->size() > kMaxStatementCutoffs) cutoff->erase(std::prev(cutoff->end()));
}

// Signed statements and no founder in the unsigned records: a group founded with
// statements, whose root was lost. Who founded it cannot be told from what members
// wrote (any of them could sign a rival chain), and the unsigned rules would let any
// member act on any other.
Status RootLost(bool missing, const Member* founder, const std::vector<std::string>& statements,
                const GroupPaths& files) {
  if (!missing || founder || statements.empty()) return Status::Ok();
  return Status(Code::kUnauthorized,
                files.root +
                    " is missing, and this replica's group is signed: it cannot tell who "
                    "may do what. Copy group.root from another member's directory (it is "
                    "the same on every member) or from a backup of this device");
}
}  // namespace

Status RootIntact(engine::Replica& r, const GroupPaths& files) {
  bool missing = false;
  TANDEM_ASSIGN_OR_RETURN(auto root, LoadRoot(files, &missing));
  if (root || !missing) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(auto statements, ReadStatements(r));
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r));
  return RootLost(missing, LegacyFounder(records), statements, files);
}

Result<Authority> ReadAuthority(engine::Replica& r, const GroupPaths& files,
                                std::set<StatementId>* verified) {
  bool missing = false;
  TANDEM_ASSIGN_OR_RETURN(auto root, LoadRoot(files, &missing));
  TANDEM_ASSIGN_OR_RETURN(auto statements, ReadStatements(r));
  if (root) return Evaluate(*root, statements, verified);
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r));
  const Member* founder = LegacyFounder(records);
  TANDEM_RETURN_IF_ERROR(RootLost(missing, founder, statements, files));
  if (founder && !statements.empty()) {
    // Every statement that counts chains back to the founder: once one does, the group
    // is signed from now on.
    Authority a = Evaluate(founder->key, statements, verified);
    if (a.counted > 0) {
      // Pinned for good; on a read-only medium (a backup read) it is found again so.
      if (Status st = SaveRoot(files, founder->key);
          !st.ok() && !tandem::files::OnReadOnlyFilesystem(files.root))
        return st;
      return a;
    }
  }
  return LegacyAuthority(records, founder);
}

Result<std::vector<Member>> Members(engine::Replica& r, const GroupPaths& files) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  std::map<engine::ReplicaId, std::string> bound;
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasByDevice(r, &bound));
  std::vector<Member> out;
  for (const auto& [device, s] : a.devices) {
    Member m;
    m.device = device;
    m.key = s.key;
    m.role = s.role;
    m.founder = s.founder;
    m.added_by = s.granted_by;
    m.added_ms = s.granted_ms;
    m.revoked = s.revoked;
    m.revoked_by = s.revoked_by;
    m.replicas = replicas[device];
    for (const auto& id : m.replicas)
      if (auto b = bound.find(id); b != bound.end() && b->second == device) m.bound.insert(id);
    m.cutoff = s.cutoff;
    out.push_back(std::move(m));
  }
  return out;
}

Trust TrustOf(const Authority& a, const Key32& key) {
  const Standing* s = a.Find(DeviceId(key));
  if (!s || s->key != key) return Trust::kUnknown;
  return s->revoked ? Trust::kRevoked : Trust::kMember;
}

Status MayInvite(const Authority& a, const Key32& self, Role role) {
  const std::string me = DeviceId(self);
  const int rank = a.Rank(me);
  if (a.legacy) return Status::Ok();  // as before statements: any member
  if (rank < static_cast<int>(Role::kAdmin))
    return Status::Unauthorized("this device is " + RoleOf(a, me) +
                                " of the group: only admins and owners can invite");
  if (static_cast<int>(role) >= rank)
    return Status::Unauthorized(std::string("this device is ") + RoleOf(a, me) +
                                ": it can invite only roles below its own, not " + Article(role) +
                                " " + RoleName(role));
  return Status::Ok();
}

Status Grant(engine::Replica& r, const GroupPaths& files, const Identity& self, const Key32& key,
             Role role, uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  const std::string me = DeviceId(self.public_key);
  const std::string device = DeviceId(key);
  // The unsigned record names the device's replicas, and is the trust set of members
  // that still run a version from before statements.
  TANDEM_RETURN_IF_ERROR(AddMember(r, key, me, now_ms));
  if (a.legacy) return Status::Ok();
  if (const Standing* s = a.Find(device); s && s->revoked)
    return Status::Unauthorized("device " + device + " was revoked");
  TANDEM_RETURN_IF_ERROR(MayInvite(a, self.public_key, role));
  if (const int subject = a.Rank(device), mine = a.Rank(me); subject >= mine)
    return Status::Unauthorized("device " + device + " is " + RoleOf(a, device) +
                                (subject > mine ? ", above" : ", as high as") + " this device");
  Statement s;
  s.kind = StatementKind::kAdd;
  s.subject = key;
  s.role = role;
  TANDEM_RETURN_IF_ERROR(Sign(r, self, a, s, now_ms));
  // The device is added whatever happens next: the requirement is only tried (the
  // founder tries again when the new device's binding arrives).
  (void)RequireBindings(r, files, self, now_ms);
  return Status::Ok();
}

Status SetRole(engine::Replica& r, const GroupPaths& files, const Identity& self,
               const std::string& device, Role role, uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  const std::string me = DeviceId(self.public_key);
  if (a.legacy)
    return Status::Unsupported(
        "this group has no roles yet: its founder (" + DeviceId(a.root) +
        ") signs the trust set when it first runs this version (serve, sync or any command "
        "that changes the trust set)");
  const Standing* s = a.Find(device);
  if (!s || s->revoked)
    return Status::NotFound("device " + device + " is " + (s ? "revoked" : "not a member"));
  TANDEM_RETURN_IF_ERROR(MayActOn(a, me, device, "change the role of"));
  if (static_cast<int>(role) >= a.Rank(me))
    return Status::Unauthorized("this device is " + RoleOf(a, me) +
                                ": it can give only roles below its own, not " + Article(role) +
                                " " + RoleName(role));
  // Signed again it would change nothing, and every statement is kept for good.
  if (s->role == role)
    return Status::NotFound("device " + device + " is " + Article(role) + " " + RoleName(role) +
                            " already: nothing to do");
  Statement st;
  st.kind = StatementKind::kRole;
  st.subject = s->key;
  st.role = role;
  // Where its events stop counting in collections the new role may not write (or, raised,
  // up to where what it wrote while it could not stays refused).
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(r, {device}));
  TANDEM_RETURN_IF_ERROR(ComputeCutoff(r, replicas, &st.cutoff));
  // Raised only where nothing is taken away by the same cutoff: what a replica says it
  // issued would also count as written while it could.
  const WriteChange change = WriteChangeOf(a, device, role);
  if (change.gives && !change.takes)
    TANDEM_RETURN_IF_ERROR(RaiseToWhatTheyIssued(r, replicas, &st.cutoff));
  FitWriteCutoff(&st.cutoff);
  return Sign(r, self, a, st, now_ms);
}

Status Revoke(engine::Replica& r, const GroupPaths& files, const Identity& self,
              const std::string& device, uint64_t now_ms) {
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  const std::string me = DeviceId(self.public_key);
  TANDEM_ASSIGN_OR_RETURN(auto records, Records(r));
  const Member* record = nullptr;
  for (const auto& m : records)
    if (m.device == device) record = &m;
  const Standing* s = a.Find(device);
  if (!s && !record) return Status::NotFound("device " + device + " is not a member of this group");
  // Again would sign another revocation and rotate the key once more for nothing: each
  // rotation pushes an older key out of what offline members may still connect with.
  if (a.legacy ? record && record->revoked : s && s->revoked)
    return Status::NotFound("device " + device + " is already revoked" +
                            (s && !s->revoked_by.empty() ? " (by " + s->revoked_by + ")" : "") +
                            ": nothing to do");
  if (!a.legacy) TANDEM_RETURN_IF_ERROR(MayActOn(a, me, device, "revoke"));
  std::map<engine::ReplicaId, uint64_t> cutoff;
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(r, {device}));
  TANDEM_RETURN_IF_ERROR(ComputeCutoff(r, replicas, &cutoff));
  if (record) TANDEM_RETURN_IF_ERROR(WriteLegacyRevocation(r, device, me, now_ms, cutoff));
  if (a.legacy) return Status::Ok();
  Statement st;
  st.kind = StatementKind::kRevoke;
  st.subject = s ? s->key : record->key;
  while (cutoff.size() > kMaxStatementCutoffs) cutoff.erase(std::prev(cutoff.end()));
  st.cutoff = std::move(cutoff);
  TANDEM_RETURN_IF_ERROR(Sign(r, self, a, st, now_ms));
  // The revoked device keeps the old key: the others get a new one.
  return RotateGroupKey(r, files, self, now_ms);
}

Status SetPermit(engine::Replica& r, const GroupPaths& files, const Identity& self,
                 const std::string& collection, const std::string& who, Level level,
                 uint64_t now_ms) {
  if (collection.empty() || collection.size() > 255)
    return Status::Invalid("a collection name is 1 to 255 bytes");
  // As a write would take it ("*" aside): a permit for a name no write can use binds nothing.
  if (collection != kAnyCollection) TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(collection));
  if (IsSystemCollection(collection))
    return Status::Invalid("collection " + collection + " is tandem's own: no permits");
  TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(r, files));
  const std::string me = DeviceId(self.public_key);
  if (a.legacy)
    return Status::Unsupported("this group has no permissions yet: its founder (" +
                               DeviceId(a.root) + ") signs the trust set first");
  const int rank = a.Rank(me);
  if (rank < static_cast<int>(Role::kAdmin))
    return Status::Unauthorized("this device is " + RoleOf(a, me) +
                                " of the group: only admins and owners set permissions");
  Statement st;
  st.kind = StatementKind::kPermit;
  st.collection = collection;
  st.level = level;
  std::set<std::string> concerned;
  if (auto role = ParseRole(who)) {
    if (static_cast<int>(*role) >= rank)
      return Status::Unauthorized("this device is " + RoleOf(a, me) + ": it sets permissions " +
                                  "only for roles below its own, not " + who + "s");
    st.role = *role;
    for (const auto& [device, d] : a.devices)
      if (!d.revoked && !d.founder && d.role == *role) concerned.insert(device);
  } else {
    if (!IsValidDeviceId(who))
      return Status::Invalid("not a role (reader, member, admin, owner) or a device id: " + who);
    const Standing* d = a.Find(who);
    if (!d || d->revoked)
      return Status::NotFound("device " + who + " is " + (d ? "revoked" : "not a member"));
    TANDEM_RETURN_IF_ERROR(MayActOn(a, me, who, "set permissions of"));
    st.subject = d->key;
    concerned.insert(who);
  }
  // Signed again it would change nothing (the permit in force says the same, under this
  // device's name, and a new one replaces every permit it descends from), and every
  // statement is kept for good.
  for (const auto& p : a.permits)
    if (p.collection == collection && p.level == level && p.granted_by == me &&
        (st.ForRole() ? p.device.empty() && p.role == st.role : p.device == DeviceId(st.subject)))
      return Status::NotFound("the permit in force for " + who + " on " + collection + " is " +
                              LevelName(level) + " already, signed by this device: nothing to do");
  TANDEM_ASSIGN_OR_RETURN(auto replicas, ReplicasOf(r, concerned));
  TANDEM_RETURN_IF_ERROR(ComputeCutoff(r, replicas, &st.cutoff));
  if (level == Level::kWrite)
    TANDEM_RETURN_IF_ERROR(RaiseToWhatTheyIssued(r, replicas, &st.cutoff));
  std::erase_if(st.cutoff, [](const auto& e) { return e.second == 0; });
  if (st.cutoff.size() > kMaxStatementCutoffs)
    return Status::Invalid("too many replicas for one permit (at most " +
                           std::to_string(kMaxStatementCutoffs) + ")");
  return Sign(r, self, a, st, now_ms);
}

}  // namespace tandem::net
