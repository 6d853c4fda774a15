// Replica bindings: which device a replica belongs to, provable by anyone.
//
// A replica id made by a device is derived from the device's public key and a random
// salt, id = BLAKE2b-128("tandem replica 1\0" || key || salt), and the device signs it
// (Ed25519, over "tandem bind 1\0" || id). That binding (key, salt, signature) is kept
// in kBindingsCollection under the replica's id and travels like any record; every
// device checks each one it receives. Nobody but the device can bind a replica to it
// (the signature), and no device can bind another device's replica to itself (the id
// is derived from the key), so a bound replica's events are judged by its device's
// standing whatever the unsigned hints of the trust set say. See docs/protocol.md,
// "Replica bindings".
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/ids.h"
#include "tandem/engine/replica.h"
#include "tandem/engine/status.h"
#include "tandem/net/identity.h"

namespace tandem::net {

// One record per bound replica (id = the replica id in hex), one register field holding
// the encoded binding. Grow-only: a state that removes it, or holds anything but a
// binding of that replica, is refused.
inline constexpr char kBindingsCollection[] = "_tandem_bindings";
inline constexpr char kBindingField[] = "b";

struct Binding {
  std::array<uint8_t, 32> device{};  // the device's Ed25519 public key
  std::array<uint8_t, 16> salt{};
  std::array<uint8_t, 64> signature{};
  bool operator==(const Binding&) const = default;
};

// version:u8(1) device:32 salt:16 signature:64
inline constexpr size_t kBindingBytes = 1 + 32 + 16 + 64;
std::string EncodeBinding(const Binding& b);
// kInvalidArgument for anything but a canonical encoding (nothing is verified).
Result<Binding> DecodeBinding(std::string_view bytes);

engine::ReplicaId DerivedReplicaId(const std::array<uint8_t, 32>& device,
                                   const std::array<uint8_t, 16>& salt);
// A fresh replica id of `self` (never zero), and its binding.
Binding NewBinding(const Identity& self, engine::ReplicaId* id);
// True if `b` binds `replica`: the id is derived from b's key and salt, and b's key
// signed it.
bool VerifyBinding(const Binding& b, const engine::ReplicaId& replica);

// What a receiver does with a field state of kBindingsCollection (kAccept for others).
engine::Admission AdmitBinding(const engine::FieldDelta& d);

// Stores `b` (which must bind `replica`) unless the replica holds it already.
Status StoreBinding(engine::Replica& r, const engine::ReplicaId& replica, const Binding& b);
// The device id of every replica a verified binding in `r` binds.
Result<std::map<engine::ReplicaId, std::string>> ReadBindings(engine::Replica& r);
// The binding of `replica` held by `r`, if it holds a verified one.
Result<std::optional<Binding>> FindBinding(engine::Replica& r, const engine::ReplicaId& replica);

// --- This device's own bindings --------------------------------------------------
// Kept in a file of the replica directory (one binding in hex per line), written before
// the id is used, so that its binding can always be published.
Result<std::vector<Binding>> LoadOwnBindings(const std::string& path);
// Replica ids for the store and the engine (storage::Options::new_ids): each derived from
// `self`'s key and bound, its binding saved to `path` first. If it cannot be saved (a
// full disk), an unbound random id, as replicas had before bindings.
std::function<engine::ReplicaId()> BoundIds(Identity self, std::string path);
// Stores the bindings in `path` of r's replica id and of every earlier id of this device
// that issued events, unless r holds them already. False if r's current id is not bound
// (an id from before bindings, or from BoundIds' fallback).
Result<bool> PublishOwnBinding(engine::Replica& r, const std::string& path);

}  // namespace tandem::net
