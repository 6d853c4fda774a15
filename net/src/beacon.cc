#include "tandem/net/beacon.h"

#include <sodium.h>

#include <cstring>

namespace tandem::net {

namespace {
constexpr size_t kBody = 32 + 2 + 4;
static_assert(kBeaconBytes == 4 + crypto_secretbox_NONCEBYTES + kBody + crypto_secretbox_MACBYTES);
}  // namespace

Key32 BeaconKey(const Key32& group_key) { return DeriveKey(group_key, "tandem discovery"); }

std::string SealBeacon(const Key32& beacon_key, const Beacon& b) {
  uint8_t nonce[crypto_secretbox_NONCEBYTES];
  randombytes_buf(nonce, sizeof nonce);
  uint8_t msg[kBody];
  std::memcpy(msg, b.public_key.data(), 32);
  msg[32] = static_cast<uint8_t>(b.port >> 8);
  msg[33] = static_cast<uint8_t>(b.port);
  std::memcpy(msg + 34, b.ipv4.data(), 4);
  uint8_t box[kBody + crypto_secretbox_MACBYTES];
  crypto_secretbox_easy(box, msg, sizeof msg, nonce, beacon_key.data());
  std::string pkt = "TDB1";
  pkt.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
  pkt.append(reinterpret_cast<const char*>(box), sizeof box);
  return pkt;
}

std::optional<Beacon> OpenBeacon(const Key32& beacon_key, std::string_view packet) {
  if (packet.size() != kBeaconBytes || packet.substr(0, 4) != "TDB1") return std::nullopt;
  const auto* p = reinterpret_cast<const uint8_t*>(packet.data());
  uint8_t msg[kBody];
  if (crypto_secretbox_open_easy(msg, p + 4 + crypto_secretbox_NONCEBYTES,
                                 kBody + crypto_secretbox_MACBYTES, p + 4, beacon_key.data()) != 0)
    return std::nullopt;
  Beacon b;
  std::memcpy(b.public_key.data(), msg, 32);
  b.port = static_cast<uint16_t>((msg[32] << 8) | msg[33]);
  std::memcpy(b.ipv4.data(), msg + 34, 4);
  return b;
}

}  // namespace tandem::net
