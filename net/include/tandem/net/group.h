// A sync group: its 32-byte key (a file in the replica directory), its trust set and
// revocation list (replicated records, so they spread through sync), and pairing
// (one-time invites). See docs/protocol.md, "Groups and pairing".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/net/authority.h"
#include "tandem/net/handshake.h"

namespace tandem::net {

// The collection that holds the trust set: one record per device, id = device id,
// fields key (hex Ed25519 public key), added_by, added_ms, replicas (a set of the hex
// replica ids the device syncs as), and revoked/revoked_by/revoked_ms/cutoff (a set of
// "hex:n", one entry per replica per revocation) once revoked. Every session sends and accepts it
// whatever the filters.
inline constexpr char kDevicesCollection[] = "_tandem_devices";
// Collection schemas (kSchemasCollection, authority.h) are sent and accepted by every
// session whatever the filters, as the trust set is.
// Collections whose names start with this are the system's; apps may not write them.
inline constexpr char kSystemPrefix[] = "_tandem";
inline bool IsSystemCollection(std::string_view c) { return c.rfind(kSystemPrefix, 0) == 0; }

// Where a device's group files are. The replica directory's layout belongs to the device
// module (bindings/device); net reads and writes only the paths it is given.
struct GroupPaths {
  std::string group_key;    // the 32-byte group key
  std::string invites_dir;  // one file per open invite
  std::string join_code;    // a pending join's invite code
  std::string root;         // the founder's public key (SaveRoot)
  std::string bindings;     // this device's replica bindings (binding.h)
  // When this replica first held each member's newest report (collect.h); none: the
  // reports' own clocks are taken instead.
  std::string heard;
};

void InitCrypto();  // sodium_init, once; aborts if the OS has no randomness

// --- The group key ---------------------------------------------------------------
Key32 NewGroupKey();
// Replaces the file atomically (readable by the owner only).
Status SaveGroupKey(const GroupPaths& files, const Key32& key);
Result<Key32> LoadGroupKey(const GroupPaths& files);  // the current key

// A rotated group key keeps the keys it replaced for a grace period, so that members
// that have not heard of the rotation yet can still connect and hear of it. The file:
// 32 bytes (never rotated), or "TNDMGK02", the current key (32), a count (1) and, newest
// first, each retired key (32) with when it was retired (8, big-endian Unix ms).
// Enough for every rotation of a grace period in practice (each revocation rotates): a
// member offline through more than this many still needs a new invite.
inline constexpr size_t kMaxRetiredKeys = 32;
inline constexpr uint64_t kDefaultKeyGraceMs = 7ull * 24 * 3600 * 1000;
struct GroupKeys {
  Key32 current{};
  struct Retired {
    Key32 key{};
    uint64_t retired_ms = 0;
  };
  std::vector<Retired> previous;
  // What a responder accepts at the first gate: the current key, then each retired less
  // than grace_ms ago.
  std::vector<Key32> Accepted(uint64_t now_ms, uint64_t grace_ms) const;
};
Status SaveGroupKeys(const GroupPaths& files, const GroupKeys& keys);
Result<GroupKeys> LoadGroupKeys(const GroupPaths& files);

// --- The trust set ---------------------------------------------------------------
// Membership, roles and revocations are signed statements (authority.h), one record
// each in kStatementsCollection: id = the statement id in hex, one register field
// kStatementField holding the encoded statement (bytes). Receivers accept nothing else
// there (AdmitStatement): no other field, no deletion, no statement not signed for the
// group. The root (the founder's key) is a file of the replica directory.
//
// kDevicesCollection keeps, per device, the replica ids it syncs as (unsigned hints,
// used to find a revoked device's replicas) and, for groups made before statements,
// the unsigned trust records that were the trust set then.
inline constexpr char kStatementsCollection[] = "_tandem_statements";
inline constexpr char kStatementField[] = "s";

struct Member {
  std::string device;  // device id
  Key32 key{};
  Role role = Role::kMember;
  bool founder = false;
  std::string added_by;  // who granted its current role (empty for the founder)
  uint64_t added_ms = 0;
  bool revoked = false;
  std::string revoked_by;
  std::vector<engine::ReplicaId> replicas;
  std::set<engine::ReplicaId> bound;  // those of `replicas` bound to it (binding.h)
  // For a revoked device: the last event of each of its replicas the revoker had
  // accepted. Its later events are refused by every member that knows the revocation.
  std::map<engine::ReplicaId, uint64_t> cutoff;
};
enum class Trust { kUnknown, kMember, kRevoked };

// The founder's public key: DIR/group.root (64 hex digits). Absent in a replica made
// before statements, until its founder's first statement arrives (ReadAuthority).
// Saving nullopt writes "legacy" there: a group from before statements (joined so), which
// loads as nullopt; *missing (if not null) says the file is absent.
Status SaveRoot(const GroupPaths& files, const std::optional<Key32>& root);
Result<std::optional<Key32>> LoadRoot(const GroupPaths& files, bool* missing = nullptr);

// Judges the statements the replica holds. Without a root file, the founder is the
// device whose trust record says it added itself (the earliest such, then the smallest
// id); once a statement it signed is found, its key is saved as the root. Until then
// the authority is `legacy`: every device of the unsigned trust records a member, the
// founder the owner, revocations as those records say. A replica that holds statements
// but neither a root file nor such a founder lost its root: kUnauthorized, saying so.
Result<Authority> ReadAuthority(engine::Replica& r, const GroupPaths& files,
                                std::set<StatementId>* verified = nullptr);
// ReadAuthority's kUnauthorized for a lost root, without judging anything (and without
// pinning a legacy founder's key): for `check`.
Status RootIntact(engine::Replica& r, const GroupPaths& files);
Result<std::vector<Member>> Members(engine::Replica& r, const GroupPaths& files);
Trust TrustOf(const Authority& a, const Key32& key);

// The encoded statements the replica holds, and storing ones received out of band (a
// joiner's welcome); each is checked as AdmitStatement checks a received one.
Result<std::vector<std::string>> ReadStatements(engine::Replica& r);
Result<std::vector<std::string>> ReadStatements(engine::ReadTxn& txn);
Status StoreStatements(engine::Replica& r, const std::vector<std::string>& encoded,
                       const Key32& root);
// What a receiver does with a field state of kStatementsCollection (kAccept for others).
// Without a root (a group from before statements) signatures are checked later, by
// ReadAuthority.
engine::Admission AdmitStatement(const engine::FieldDelta& d, const std::optional<Key32>& root);

// Acting on the trust set as `self`. Each fails with kUnauthorized, saying why, when
// `self` lacks the authority (authority.h), and writes a signed statement otherwise
// (in a legacy group only its founder signs; the others write the unsigned records).
Status Grant(engine::Replica& r, const GroupPaths& files, const Identity& self, const Key32& key,
             Role role, uint64_t now_ms);
Status SetRole(engine::Replica& r, const GroupPaths& files, const Identity& self,
               const std::string& device, Role role, uint64_t now_ms);
// kNotFound if `device` was never a member. The cutoff, per replica of the device, is the
// last of its events this replica holds (version vector and field states).
Status Revoke(engine::Replica& r, const GroupPaths& files, const Identity& self,
              const std::string& device, uint64_t now_ms);
// Grants `who` (a device id, or a role name for every device with that role) `level` on
// `collection` (or kAnyCollection). kUnauthorized as SetRole; kInvalidArgument for a
// system collection or an unknown `who`.
Status SetPermit(engine::Replica& r, const GroupPaths& files, const Identity& self,
                 const std::string& collection, const std::string& who, Level level,
                 uint64_t now_ms);
// A new group key, sealed in a signed rekey statement to every member in good standing
// (kUnauthorized below admin), and saved here (the old one retired). Revoke does it.
Status RotateGroupKey(engine::Replica& r, const GroupPaths& files, const Identity& self,
                      uint64_t now_ms);
// Why the group key in force may be known beyond the members in good standing, or
// empty: the last rekey that counts was sealed to a device revoked since (two admins
// revoking two devices at once each seal their key to the other's), or none counts and
// one that does not (its signer demoted or revoked concurrently) may have been taken.
// An admin or the owner then rotates the key again (a node does, RotateGroupKey).
std::string KeyInDoubt(const Authority& a);
// Takes the key of the last rekey that counts, if it is sealed to `self` and new here;
// true if the group key file changed.
Result<bool> AdoptGroupKey(const Authority& a, const GroupPaths& files, const Identity& self,
                           uint64_t now_ms);
// Why `self` may not invite a device with `role`, or Ok.
Status MayInvite(const Authority& a, const Key32& self, Role role);
// In a legacy group, run by its founder: signs what the unsigned records say (every
// member a `member`, revocations with their cutoffs) and saves the root. A no-op
// otherwise.
Status SignLegacyTrust(engine::Replica& r, const GroupPaths& files, const Identity& self,
                       uint64_t now_ms);
// Run by the founder of a group of more than one device that does not require bound
// replicas yet: if every member in good standing has a replica and every replica of
// each is bound (binding.h), and so is every replica whose events `r` holds, this one
// included, signs the statement that requires them (StatementKind::kRequireBindings).
// True if it signed. (Grant tries it after adding a device, a node when bindings
// arrive.)
Result<bool> RequireBindings(engine::Replica& r, const GroupPaths& files, const Identity& self,
                             uint64_t now_ms);
// The same, judged by `a` (r's authority, read already), and counting as held what the
// vectors `in_sessions` name (peers whose sessions have not delivered it yet).
Result<bool> RequireBindings(engine::Replica& r, const Authority& a, const Identity& self,
                             uint64_t now_ms,
                             const std::vector<engine::VersionVector>& in_sessions = {});
// What the founder signs when it can, before acting on the group: SignLegacyTrust, then
// RequireBindings. A no-op on any other device.
Status FounderUpkeep(engine::Replica& r, const GroupPaths& files, const Identity& self,
                     uint64_t now_ms);

// The unsigned record of a device (kDevicesCollection): its key and who added it.
Status AddMember(engine::Replica& r, const Key32& key, const std::string& added_by,
                 uint64_t now_ms);
// Records that `device` syncs as `replica` (a no-op if known or not recorded), so a
// revocation can name a cutoff for each of its replicas. kUnauthorized if the replica is
// already listed under another device (a Hello naming someone else's replica).
Status NoteReplica(engine::Replica& r, const std::string& device, const engine::ReplicaId& replica);
// The replicas known to be the device's: noted from its sessions, or bound to it.
Result<std::vector<engine::ReplicaId>> ReplicasOf(engine::Replica& r, const std::string& device);
// Every revoked replica with its cutoff: the smallest any revocation recorded, 0 for a
// revoked device's replica no revocation named; never this replica's own id or one
// listed under a member in good standing.
Result<std::map<engine::ReplicaId, uint64_t>> RevocationCutoffs(engine::Replica& r,
                                                                const Authority& a);
// The cutoff a statement about a device records for each of `replicas` (this replica's
// own id left out): the last of its events this replica holds, by its version vector
// and by the field states themselves (the vector may lag what was applied).
Status ComputeCutoff(engine::Replica& r, const std::vector<engine::ReplicaId>& replicas,
                     std::map<engine::ReplicaId, uint64_t>* cutoff);

// Whose events a receiver refuses, per collection: for each device that may not write a
// collection, its replicas (by the unsigned hints) with the write cutoff of its
// standing (0 where none names the replica). System collections have none.
// In a group that requires bound replicas, also whose events it holds: those of every
// replica that no binding it has verified names.
struct WriteLimits {
  std::map<std::string, std::map<engine::ReplicaId, uint64_t>> named;  // collections permits name
  std::map<engine::ReplicaId, uint64_t> others;                        // every other collection
  // What devices that may write again wrote while they could not (Standing::write_windows),
  // by the same split: refused as a cutoff's later events are.
  using Windows = std::map<engine::ReplicaId, std::vector<EventWindow>>;
  std::map<std::string, Windows> named_windows;
  Windows other_windows;
  bool hold_unbound = false;  // the group requires bound replicas
  // The replicas bound to a device the statements name, and this replica's id: when
  // hold_unbound, only their events are judged; the others' are held.
  std::set<engine::ReplicaId> bound;
  const std::map<engine::ReplicaId, uint64_t>& For(const std::string& collection) const {
    auto it = named.find(collection);
    return it == named.end() ? others : it->second;
  }
  const Windows& WindowsFor(const std::string& collection) const {
    auto it = named_windows.find(collection);
    return it == named_windows.end() ? other_windows : it->second;
  }
};
Result<WriteLimits> WriteLimitsOf(engine::Replica& r, const Authority& a);
// What a receiver does with a field state of a data collection, given the limits:
// kRefuse for a write of a device that may not make it, kHold for one of a replica
// that no binding names yet (in a group that requires them), else kAccept.
engine::Admission AdmitWrite(const engine::FieldDelta& d, const engine::FieldState* ours,
                             const WriteLimits& limits);
// Judges the changes held for their writers' bindings again, as a session would now:
// revoked replicas' cutoffs and the write limits, read from `r` (whose bindings may have
// just arrived) under `a`. A change in a collection `receive` leaves out stays held, to
// be applied once a wider filter takes it (its peer will not send it again).
Result<engine::Replica::Judged> JudgeHeldChanges(engine::Replica& r, const Authority& a,
                                                 const engine::CollectionFilter& receive);
// The same with the cutoffs and limits already read (RevocationCutoffs, WriteLimitsOf).
Result<engine::Replica::Judged> JudgeHeldChanges(
    engine::Replica& r, const std::map<engine::ReplicaId, uint64_t>& cutoffs,
    const WriteLimits& limits, const engine::CollectionFilter& receive);

// --- Invites ---------------------------------------------------------------------
struct Invite {
  Key32 inviter{};  // the inviter's Ed25519 public key
  Key32 secret{};   // one-time
  uint64_t expires_ms = 0;
  std::vector<std::string> addresses;  // HOST:PORT hints
  Role role = Role::kMember;           // what the joiner is added as
};
// "tandem-invite-" followed by URL-safe base64 of a versioned, checksummed encoding.
std::string EncodeInvite(const Invite& inv);
Result<Invite> DecodeInvite(std::string_view code);

// Inviter side: one file per open invite in files.invites_dir.
Status StoreInvite(const GroupPaths& files, const Invite& inv);
// The secret and role of an open, unexpired invite with this id; kNotFound if there is
// none (never issued or already used), kUnauthorized if it expired (and removes it).
struct OpenInvite {
  Key32 secret{};
  Role role = Role::kMember;
};
Result<OpenInvite> FindInvite(const GroupPaths& files, const InviteId& id, uint64_t now_ms);
// Uses the invite up: exactly one caller, in any process, gets Ok.
Status BurnInvite(const GroupPaths& files, const InviteId& id);
// Removes every open invite: a copy of the replica's directory (or a rollback of it) must
// not honour codes its original may have burned already.
Status DropInvites(const GroupPaths& files);

// Joiner side: the code waiting to be redeemed by the first connection to the inviter.
Status SaveJoin(const GroupPaths& files, const std::string& code);
Result<std::optional<Invite>> LoadJoin(const GroupPaths& files);
Status ClearJoin(const GroupPaths& files);

std::string Hex(const uint8_t* p, size_t n);
template <size_t N>
std::string Hex(const std::array<uint8_t, N>& a) {
  return Hex(a.data(), N);
}

}  // namespace tandem::net
