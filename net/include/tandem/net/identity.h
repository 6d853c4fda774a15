// A device's long-term identity: an Ed25519 key pair kept in the replica directory
// (identity.key, mode 0600), and the device id people compare.
//
// Device id: BLAKE2b-160 of the public key in base32 (RFC 4648 alphabet, lowercase),
// followed by two check characters, grouped by four: "k3x9-...-7q". A typo in a
// compared id is caught by the check characters.
#pragma once

#include <array>
#include <optional>
#include <string>

#include "tandem/engine/status.h"

namespace tandem::net {

struct Identity {
  std::array<uint8_t, 32> public_key{};
  std::array<uint8_t, 64> secret_key{};  // libsodium layout: seed || public key
};

// Makes a new key pair.
Identity GenerateIdentity();
// Writes it to `path` (which must not exist), readable by the owner only.
Status SaveIdentity(const Identity& id, const std::string& path);
Result<Identity> LoadIdentity(const std::string& path);

std::string DeviceId(const std::array<uint8_t, 32>& public_key);
// The device id `s` names, as DeviceId writes it (groups of four joined by dashes), if its
// characters are a device id's whose check characters match, dashes anywhere or none (as
// a user may type or paste it); nullopt otherwise.
std::optional<std::string> CanonicalDeviceId(const std::string& s);
// True if `s` is a device id exactly as DeviceId writes it.
bool IsValidDeviceId(const std::string& s);

}  // namespace tandem::net
