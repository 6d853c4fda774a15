// libFuzzer target: LAN discovery beacons (net/beacon.h), which anyone on the network
// can send. The first byte picks what the rest is:
//   0: a packet off the wire, opened with a fixed group's key; whatever opens must seal
//      and open again to the same beacon;
//   1: a beacon's fields (key, port, address), sealed then opened: they must survive.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "tandem/net/beacon.h"
#include "tandem/net/group.h"

namespace {

const tandem::net::Key32& FuzzKey() {
  static const tandem::net::Key32 key = [] {
    tandem::net::InitCrypto();
    tandem::net::Key32 group{};
    for (size_t i = 0; i < group.size(); ++i) group[i] = static_cast<uint8_t>(i * 7 + 1);
    return tandem::net::BeaconKey(group);
  }();
  return key;
}

bool Same(const tandem::net::Beacon& a, const tandem::net::Beacon& b) {
  return a.public_key == b.public_key && a.port == b.port && a.ipv4 == b.ipv4;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] == 0) {
    auto b = tandem::net::OpenBeacon(FuzzKey(), rest);
    if (!b) return 0;
    auto again = tandem::net::OpenBeacon(FuzzKey(), tandem::net::SealBeacon(FuzzKey(), *b));
    if (!again || !Same(*again, *b)) std::abort();
  } else if (data[0] == 1 && rest.size() >= 38) {
    tandem::net::Beacon b;
    std::memcpy(b.public_key.data(), rest.data(), 32);
    b.port = static_cast<uint16_t>((static_cast<uint8_t>(rest[32]) << 8) |
                                   static_cast<uint8_t>(rest[33]));
    std::memcpy(b.ipv4.data(), rest.data() + 34, 4);
    const std::string sealed = tandem::net::SealBeacon(FuzzKey(), b);
    if (sealed.size() != tandem::net::kBeaconBytes) std::abort();
    auto opened = tandem::net::OpenBeacon(FuzzKey(), sealed);
    if (!opened || !Same(*opened, b)) std::abort();
    // Any change to the sealed packet makes it fail to open.
    std::string flipped = sealed;
    flipped[rest.size() % flipped.size()] ^= 1;
    if (tandem::net::OpenBeacon(FuzzKey(), flipped)) std::abort();
  }
  return 0;
}
