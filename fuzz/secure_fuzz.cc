// libFuzzer target: everything a stranger's bytes reach before and after the handshake.
// The first byte picks the decoder:
//   0: a responder reading message 1 (fixed identity and PSK) and, if it passes,
//      message 3 from the rest;
//   1: the frame opener on a stream (24-byte header, then length-prefixed frames);
//   2: an invite code.
// None may crash, read out of bounds or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "tandem/net/group.h"
#include "tandem/net/handshake.h"
#include "tandem/net/secure_frame.h"

using namespace tandem::net;

namespace {

const Identity& Self() {
  static const Identity id = [] {
    InitCrypto();
    Identity i;
    // A fixed key: seed 0x01.. so seeds in the corpus stay meaningful.
    uint8_t seed[32];
    std::memset(seed, 1, sizeof seed);
    crypto_sign_seed_keypair(i.public_key.data(), i.secret_key.data(), seed);
    return i;
  }();
  return id;
}

Key32 Fixed(uint8_t b) {
  Key32 k;
  k.fill(b);
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto hs = Handshake::Responder(Self(), Fixed(7));
      size_t n1 = in.size() < 2 ? in.size() : (static_cast<uint8_t>(in[0]) % 128);
      std::string_view m1 = in.substr(in.empty() ? 0 : 1, n1);
      if (!hs.Read(m1).ok()) return 0;
      if (!hs.Write().ok()) return 0;
      (void)hs.Read(in.substr(std::min(in.size(), 1 + n1)));
      break;
    }
    case 1: {
      if (in.size() < kStreamHeaderBytes) return 0;
      FrameOpener op(Fixed(9), in.substr(0, kStreamHeaderBytes));
      std::string_view rest = in.substr(kStreamHeaderBytes);
      std::string pt;
      while (rest.size() >= kFrameLengthBytes) {
        auto n = op.BodyLength(rest.substr(0, kFrameLengthBytes));
        if (!n.ok() || rest.size() - kFrameLengthBytes < *n) break;
        bool final = false;
        if (!op.Open(rest.substr(0, kFrameLengthBytes), rest.substr(kFrameLengthBytes, *n), &pt,
                     &final)
                 .ok())
          break;
        rest.remove_prefix(kFrameLengthBytes + *n);
      }
      break;
    }
    case 2: {
      auto inv = DecodeInvite(in);
      if (inv.ok() && DecodeInvite(EncodeInvite(*inv)).value().secret != inv->secret) abort();
      break;
    }
  }
  return 0;
}
