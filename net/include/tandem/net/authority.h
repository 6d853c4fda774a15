// Who may do what in a group: signed statements and the roles they establish.
//
// A group's authority is its founding device's Ed25519 key (the root, a file in the
// replica directory) and the statements its devices sign: add a device with a role,
// change a device's role, revoke a device. Each statement names the statements its
// signer had seen (its parents, by hash), so every device can tell which statements
// came before which, and judges each one against what its signer could do then. The
// result is the same on every device that holds the same statements, whichever device
// or relay delivered them. See docs/protocol.md, "Authority".
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/ids.h"
#include "tandem/engine/status.h"
#include "tandem/net/identity.h"

namespace tandem::net {

using StatementId = std::array<uint8_t, 32>;  // BLAKE2b-256 of the encoded statement

// Roles, lowest first. The founding device ranks above every owner.
enum class Role : uint8_t { kReader = 0, kMember = 1, kAdmin = 2, kOwner = 3 };
inline constexpr int kFounderRank = 4;
const char* RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

enum class StatementKind : uint8_t {
  kAdd = 1,
  kRole = 2,
  kRevoke = 3,
  kPermit = 4,
  kRekey = 5,
  // An extension (below) with an empty payload: the founder requires every event to
  // come from a replica bound to a device (binding.h); a receiver holds the others.
  kRequireBindings = 64,
};
// Kinds from kFirstExtension on are extensions: signer, time and parents as every
// statement has, then an opaque payload. A build that does not know one still decodes,
// verifies and orders it (it never counts there), so the statements made after it
// count as they would without it: a later version can add a kind that this one skips.
inline constexpr uint8_t kFirstExtension = 64;
inline bool IsExtension(StatementKind k) { return static_cast<uint8_t>(k) >= kFirstExtension; }

// A new group key sealed to one member (crypto_box_seal to its X25519 key, derived from
// its Ed25519 key): only that member can open it.
inline constexpr size_t kSealedKeyBytes = 32 + 48;
struct SealedKey {
  std::array<uint8_t, 32> device{};  // the member's Ed25519 public key
  std::array<uint8_t, kSealedKeyBytes> sealed{};
  bool operator==(const SealedKey&) const = default;
};

// What a device may do with a collection's records.
enum class Level : uint8_t { kNone = 0, kRead = 1, kWrite = 2 };  // write implies read
const char* LevelName(Level l);
std::optional<Level> ParseLevel(std::string_view s);
// The collection a permit names for every collection no other permit names.
inline constexpr char kAnyCollection[] = "*";
// Why no data collection may be named so (a local write there is refused with it).
inline constexpr char kAnyCollectionIsNoName[] =
    "\"*\" is not a collection name: in permits it stands for every collection no permit "
    "names";
// Collection schemas and conflict rules (one record per collection; see
// bindings/data/schema.h): written only by admins and above.
inline constexpr char kSchemasCollection[] = "_tandem_schemas";

struct Statement {
  StatementKind kind = StatementKind::kAdd;
  std::array<uint8_t, 32> signer{};
  uint64_t time_ms = 0;  // the signer's clock: shown, never judged
  std::vector<StatementId> parents;
  std::array<uint8_t, 32> subject{};  // the device's public key (zero: a permit for a role)
  Role role = Role::kMember;          // kAdd, kRole; kPermit for a role
  // kPermit: the collection (or kAnyCollection) and the level granted.
  std::string collection;
  Level level = Level::kWrite;
  // The last event of each replica of the devices concerned that the signer had
  // accepted: a revoked device's events after it are refused, and so are the events
  // after it of a device that loses write permission on a collection.
  std::map<engine::ReplicaId, uint64_t> cutoff;
  // kRekey: the new group key, sealed to each member in good standing.
  std::vector<SealedKey> sealed;
  // An extension (IsExtension): what its kind says, opaque to builds that do not know it.
  std::string payload;
  bool ForRole() const;  // a kPermit whose subject is zero
  std::array<uint8_t, 64> signature{};
};

inline constexpr size_t kMaxStatementParents = 32;
inline constexpr size_t kMaxStatementCutoffs = 4096;
inline constexpr size_t kMaxSealedKeys = 4096;
inline constexpr size_t kMaxStatementBytes = 512 * 1024;  // a value's bound

// The encoding is the statement's identity: its id is the hash of these bytes.
std::string EncodeStatement(const Statement& s);
// kInvalidArgument for anything but a canonical encoding (the signature is not checked).
Result<Statement> DecodeStatement(std::string_view bytes);
StatementId IdOf(std::string_view encoded);
std::string HexId(const StatementId& id);
// Signs `s` as `self` for the group whose founder is `root` (s.signer is set).
void SignStatement(Statement* s, const Identity& self, const std::array<uint8_t, 32>& root);
// True if the signature is the signer's, for this group.
bool VerifyStatement(const Statement& s, const std::array<uint8_t, 32>& root);

// Events of one replica numbered in (after, upto]: what a device wrote while a
// permission it has back was away.
struct EventWindow {
  uint64_t after = 0;
  uint64_t upto = 0;
  // The permission was taken from the device while it could write: it may have written
  // then, offline, believing it could (a device that never could, a reader promoted, did
  // not, unless a build of its own).
  bool taken = false;
  bool operator==(const EventWindow&) const = default;
};
// Adds `w` to `windows` (ascending, none overlapping), joined with those it overlaps or
// meets: (a, b] and (b, c] are (a, c]; windows apart stay apart.
void AddEventWindow(std::vector<EventWindow>* windows, EventWindow w);

// One device's standing, as the statements establish it.
struct Standing {
  std::array<uint8_t, 32> key{};
  std::string device;  // DeviceId(key)
  Role role = Role::kMember;
  bool founder = false;
  bool revoked = false;
  std::string granted_by;  // device id; empty for the founder
  uint64_t granted_ms = 0;
  std::string revoked_by;
  uint64_t revoked_ms = 0;
  std::map<engine::ReplicaId, uint64_t> cutoff;  // smallest over its revocations
  // For each collection it may not write (kAnyCollection: the collections no permit
  // names), where its replicas' events stop counting: the cutoff of the statement that
  // took its write permission there away (or added it without one; 0 where a cutoff
  // does not name a replica). Kept while the permission stays away.
  std::map<std::string, std::map<engine::ReplicaId, uint64_t>> write_cutoffs;
  const std::map<engine::ReplicaId, uint64_t>& WriteCutoff(const std::string& collection) const;
  // For each collection whose write permission it lost and got back, per replica, the
  // events it made meanwhile: from the write cutoff to what the statement that gave the
  // permission back recorded of that replica. They stay refused for good, so that a
  // replica judging them after the permission came back decides as one that judged them
  // before. Kept once the permission is back, and through every later change.
  std::map<std::string, std::map<engine::ReplicaId, std::vector<EventWindow>>> write_windows;
  const std::map<engine::ReplicaId, std::vector<EventWindow>>& WriteWindows(
      const std::string& collection) const;
  // The collections whose write permission was taken from it while it could write, and
  // is still away (EventWindow::taken).
  std::set<std::string> write_taken;
  // True if a window in `collection` opened when the permission was taken from it: what
  // it removed then (offline, say) is refused, so its own removals there are not the
  // group's (Authority::CountsEveryWrite).
  bool WroteWhileTaken(const std::string& collection) const;
};

// One permit in force: for `collection` (or kAnyCollection), a device or a role.
struct Permit {
  std::string collection;
  std::string device;  // empty: the permit is for `role`
  Role role = Role::kMember;
  Level level = Level::kWrite;
  std::string granted_by;
};

// A statement that does not count, and why.
struct Refused {
  std::string id;      // hex
  std::string signer;  // device id
  std::string what;    // "revoke k3x9-..." etc.
  std::string why;
};

struct Authority {
  std::array<uint8_t, 32> root{};
  // A group from before statements whose founder has not signed any yet: membership is
  // read from the unsigned trust records, as it was then (see group.h).
  bool legacy = false;
  std::map<std::string, Standing> devices;  // by device id; the founder included
  std::vector<Refused> refused;
  size_t counted = 0;  // statements that count
  size_t waiting = 0;  // statements whose parents have not arrived yet
  // The counted statements no other counted statement descends from: a new statement's
  // parents.
  std::vector<StatementId> heads;
  std::vector<Permit> permits;
  // The group key of the last rekey that counts (in an order that respects ancestry),
  // sealed to each member it names; none before the first rotation.
  std::optional<StatementId> rekey;
  std::vector<SealedKey> rekey_copies;
  // A rekey that does not count is held (its signer demoted or revoked concurrently):
  // devices that took it before they knew may be using its key.
  bool void_rekey = false;
  // The founder required bound replicas (kRequireBindings counts).
  bool bindings_required = false;

  const Standing* Find(const std::string& device) const;
  // The founder ranks kFounderRank; a revoked or unknown device -1.
  int Rank(const std::string& device) const;
  // What `device` may do with `collection`: the founder everything, a revoked or unknown
  // device nothing; else the first that applies of a permit for the device and the
  // collection, for its role and the collection, for the device and kAnyCollection, for
  // its role and kAnyCollection; else write for members and above, read for readers.
  // kSchemasCollection: write for admins and above, read for the others.
  Level LevelOf(const std::string& device, const std::string& collection) const;
  // True if `device` may write `collection` and every write it made there counts (no
  // write permission taken from it there came back: Standing::WroteWhileTaken): what its
  // own writes removed there, every member takes as removed.
  bool CountsEveryWrite(const std::string& device, const std::string& collection) const;
  // True if `device` may write every collection (the schemas aside, as LevelOf) and no
  // withdrawal of a write permission of it is in force or was ever lifted: what its own
  // writes removed, every member takes as removed.
  bool WritesEverywhere(const std::string& device) const;
};

// Seals `key` to the member whose Ed25519 public key is `member`; opens a copy sealed to
// `self` (nullopt if it is not for self, or damaged).
SealedKey SealGroupKey(const std::array<uint8_t, 32>& key, const std::array<uint8_t, 32>& member);
std::optional<std::array<uint8_t, 32>> OpenGroupKey(const SealedKey& copy, const Identity& self);

// Judges every statement (encoded; duplicates and malformed ones allowed) for the
// group founded by `root`. Deterministic in the set of statements.
//
// A statement counts if it is well formed and signed by its signer for this group, all
// of its ancestors have arrived, its signer could make it in the state its ancestors
// establish (below), and no counted statement concurrent with it (neither an ancestor
// nor a descendant) revokes its signer or lowers its signer's role.
//   add:    signer admin or above; the role below the signer's rank; a device that was
//           revoked is never added back.
//   role:   the subject is a member ranking below the signer, the new role below the
//           signer's rank; nobody acts on itself.
//   revoke: signer admin or above, the subject ranking below it (an unknown key too).
//   permit: signer admin or above; for a device ranking below it, or for a role below
//           its rank.
//   rekey:  signer admin or above.
//   require bindings: signed by the founder.
// Effects apply in an order that respects ancestry; a revocation is for good; of
// concurrent role changes of one device the lower role holds, and of concurrent permits
// for one collection and one device or role the lower level.
//
// `verified` (optional) remembers the statements whose signatures were checked, for
// later calls with the same root.
Authority Evaluate(const std::array<uint8_t, 32>& root, const std::vector<std::string>& statements,
                   std::set<StatementId>* verified = nullptr);

}  // namespace tandem::net
