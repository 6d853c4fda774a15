// LAN discovery beacons: sealing and opening, as pure functions over bytes (no sockets),
// so that the decoder can be fuzzed and tested on its own.
//
// A beacon is magic "TDB1", a 24-byte nonce, and crypto_secretbox of (Ed25519 public key
// (32), port (2, big-endian), IPv4 address or zeros (4)) under a key derived from the
// group key: strangers see random bytes, members learn a device's key and where it
// listens. See docs/protocol.md, "Discovery".
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tandem/net/handshake.h"

namespace tandem::net {

inline constexpr size_t kBeaconBytes = 4 + 24 + (32 + 2 + 4) + 16;

struct Beacon {
  Key32 public_key{};
  uint16_t port = 0;
  std::array<uint8_t, 4> ipv4{};  // zeros: dial the address the beacon came from
};

// The key beacons are sealed with, derived from the group key.
Key32 BeaconKey(const Key32& group_key);
// A beacon with a fresh random nonce.
std::string SealBeacon(const Key32& beacon_key, const Beacon& b);
// nullopt for anything that is not a beacon of this group (noise, another group,
// a damaged or truncated packet).
std::optional<Beacon> OpenBeacon(const Key32& beacon_key, std::string_view packet);

}  // namespace tandem::net
