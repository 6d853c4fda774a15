// A sync group: its 32-byte key (a file in the replica directory), its trust set and
// revocation list (replicated records, so they spread through sync), and pairing
// (one-time invites). See docs/protocol.md, "Groups and pairing".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/net/handshake.h"

namespace tandem::net {

// The collection that holds the trust set: one record per device, id = device id,
// fields key (hex Ed25519 public key), added_by, added_ms, replicas (a set of the hex
// replica ids the device syncs as), and revoked/revoked_by/revoked_ms/cutoff (a set of
// "hex:n", one entry per replica per revocation) once revoked. Every session sends and accepts it
// whatever the filters.
inline constexpr char kDevicesCollection[] = "_tandem_devices";
// Collection schemas (one record per collection; see bindings/data/schema.h): sent and
// accepted by every session whatever the filters, as the trust set is.
inline constexpr char kSchemasCollection[] = "_tandem_schemas";
// Collections whose names start with this are the system's; apps may not write them.
inline constexpr char kSystemPrefix[] = "_tandem";
inline bool IsSystemCollection(std::string_view c) { return c.rfind(kSystemPrefix, 0) == 0; }

// Where a device's group files are. The replica directory's layout belongs to the device
// module (bindings/device); net reads and writes only the paths it is given.
struct GroupPaths {
  std::string group_key;    // the 32-byte group key
  std::string invites_dir;  // one file per open invite
  std::string join_code;    // a pending join's invite code
};

void InitCrypto();  // sodium_init, once; aborts if the OS has no randomness

// --- The group key ---------------------------------------------------------------
Key32 NewGroupKey();
// Replaces the file atomically (readable by the owner only).
Status SaveGroupKey(const GroupPaths& files, const Key32& key);
Result<Key32> LoadGroupKey(const GroupPaths& files);

// --- The trust set ---------------------------------------------------------------
struct Member {
  std::string device;  // device id
  Key32 key{};
  std::string added_by;
  uint64_t added_ms = 0;
  bool revoked = false;
  std::string revoked_by;
  std::vector<engine::ReplicaId> replicas;
  // For a revoked device: the last event of each of its replicas the revoker had
  // accepted. Its later events are refused by every member that knows the revocation.
  std::map<engine::ReplicaId, uint64_t> cutoff;
};
enum class Trust { kUnknown, kMember, kRevoked };

Status AddMember(engine::Replica& r, const Key32& key, const std::string& added_by,
                 uint64_t now_ms);
// Records that `device` syncs as `replica` (a no-op if known or not a member), so a
// revocation can name a cutoff for each of its replicas. kUnauthorized if the replica is
// already listed under another device (a Hello naming someone else's replica).
Status NoteReplica(engine::Replica& r, const std::string& device, const engine::ReplicaId& replica);
// Every revoked replica with its cutoff: the smallest any revocation recorded, 0 for a
// revoked device's replica no revocation named; never this replica's own id or one
// listed under a member in good standing.
Result<std::map<engine::ReplicaId, uint64_t>> RevocationCutoffs(engine::Replica& r);
// Fails with kNotFound if `device` was never a member. The cutoff, per replica of the
// device, is the last of its events this replica holds (version vector and field states).
Status RevokeMember(engine::Replica& r, const std::string& device, const std::string& by,
                    uint64_t now_ms);
Result<std::vector<Member>> Members(engine::Replica& r);
Result<Trust> TrustOf(engine::Replica& r, const Key32& key);

// --- Invites ---------------------------------------------------------------------
struct Invite {
  Key32 inviter{};  // the inviter's Ed25519 public key
  Key32 secret{};   // one-time
  uint64_t expires_ms = 0;
  std::vector<std::string> addresses;  // HOST:PORT hints
};
// "tandem-invite-" followed by URL-safe base64 of a versioned, checksummed encoding.
std::string EncodeInvite(const Invite& inv);
Result<Invite> DecodeInvite(std::string_view code);

// Inviter side: one file per open invite in files.invites_dir.
Status StoreInvite(const GroupPaths& files, const Invite& inv);
// The secret of an open, unexpired invite with this id; kNotFound if there is none
// (never issued or already used), kUnauthorized if it expired (and removes it).
Result<Key32> FindInvite(const GroupPaths& files, const InviteId& id, uint64_t now_ms);
// Uses the invite up: exactly one caller, in any process, gets Ok.
Status BurnInvite(const GroupPaths& files, const InviteId& id);

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
