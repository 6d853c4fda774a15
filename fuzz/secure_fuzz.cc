// libFuzzer target: everything a stranger's bytes reach before and after the handshake.
// The first byte picks the decoder:
//   0: a responder reading message 1 (fixed identity and PSK) and, if it passes,
//      message 3 from the rest;
//   1: the frame opener on a stream (24-byte header, then length-prefixed frames);
//   2: an invite code;
//   3: statements (u16 length-prefixed), decoded and judged;
//   4: a small group's statements (every kind) built from the bytes and signed by four
//      fixed devices, judged in two arrival orders that must agree;
//   0xf0 and above (before the others): a replica id (16 bytes) and a replica binding,
//      decoded, verified, and admitted as a binding record's field.
// None may crash, read out of bounds or allocate without bound.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/field.h"
#include "tandem/net/authority.h"
#include "tandem/net/binding.h"
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

const Identity& Device(size_t i) {
  static const std::vector<Identity> ids = [] {
    InitCrypto();
    std::vector<Identity> v(4);
    for (size_t k = 0; k < v.size(); ++k) {
      uint8_t seed[32];
      std::memset(seed, static_cast<int>(0x10 + k), sizeof seed);
      crypto_sign_seed_keypair(v[k].public_key.data(), v[k].secret_key.data(), seed);
    }
    return v;
  }();
  return ids[i % ids.size()];
}

std::string Summary(const Authority& a) {
  std::string k;
  for (const auto& [id, s] : a.devices)
    k += id + RoleName(s.role) + (s.revoked ? "R" : "") + s.granted_by + ";";
  std::vector<std::string> refused;
  for (const auto& r : a.refused) refused.push_back(r.id);
  std::sort(refused.begin(), refused.end());
  for (const auto& r : refused) k += r + ",";
  for (const auto& p : a.permits)
    k += p.collection + p.device + RoleName(p.role) + LevelName(p.level) + ";";
  if (a.rekey) k += HexId(*a.rekey);
  return k + std::to_string(a.counted) + "/" + std::to_string(a.waiting);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] >= 0xf0) {
    if (in.size() < 16) return 0;
    tandem::engine::ReplicaId id;
    std::memcpy(id.bytes.data(), in.data(), 16);
    const std::string_view rest = in.substr(16);
    auto b = DecodeBinding(rest);
    if (b.ok() && EncodeBinding(*b) != rest) abort();  // only the canonical encoding
    if (b.ok() && VerifyBinding(*b, id) && DerivedReplicaId(b->device, b->salt) != id) abort();
    tandem::engine::FieldState f;
    tandem::engine::ApplyPut(f, tandem::engine::Dot{id, 1}, tandem::engine::MakeHlc(1, 0),
                             tandem::engine::Value{tandem::engine::Bytes{std::string(rest)}});
    const auto verdict = AdmitBinding({{kBindingsCollection, id.Hex(), kBindingField}, f});
    if (verdict == tandem::engine::Admission::kAccept && !(b.ok() && VerifyBinding(*b, id)))
      abort();  // admitted without being a binding of that replica
    return 0;
  }
  switch (data[0] % 5) {
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
    case 3: {
      std::vector<std::string> all;
      while (in.size() >= 2 && all.size() < 64) {
        size_t n = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
        in.remove_prefix(2);
        n = std::min(n, in.size());
        std::string e(in.substr(0, n));
        in.remove_prefix(n);
        auto st = DecodeStatement(e);
        if (st.ok() && EncodeStatement(*st) != e) abort();  // only the canonical encoding
        all.push_back(std::move(e));
      }
      (void)Evaluate(Device(0).public_key, all);
      break;
    }
    case 4: {
      // Five bytes a statement: signer, kind, subject, role, parents (a mask over the
      // eight statements before it). A kind byte of 5 modulo 6 makes an extension.
      std::vector<std::string> all;
      for (size_t at = 0; at + 5 <= in.size() && all.size() < 16; at += 5) {
        Statement st;
        const uint8_t kind = static_cast<uint8_t>(in[at + 1]);
        st.kind = kind % 6 == 5 ? static_cast<StatementKind>(kFirstExtension + (kind >> 3) % 8)
                                : static_cast<StatementKind>(1 + kind % 6);
        st.subject = Device(static_cast<uint8_t>(in[at + 2])).public_key;
        if (IsExtension(st.kind)) {
          st.subject = {};
          st.payload = std::string(kind % 3, 'p');
        }
        st.role = static_cast<Role>(static_cast<uint8_t>(in[at + 3]) % 4);
        if (st.kind == StatementKind::kPermit) {
          st.collection = (kind & 0x80) ? "*" : "orders";
          st.level = static_cast<Level>((kind >> 3) % 3);
          if (kind & 0x40) st.subject = {};  // for a role
        } else if (st.kind == StatementKind::kRekey) {
          st.subject = {};
          for (size_t d = 0; d < 4; ++d)
            st.sealed.push_back(SealGroupKey(Fixed(static_cast<uint8_t>(d)), Device(d).public_key));
          std::sort(st.sealed.begin(), st.sealed.end(),
                    [](const SealedKey& x, const SealedKey& y) { return x.device < y.device; });
        }
        const uint8_t mask = static_cast<uint8_t>(in[at + 4]);
        for (size_t b = 0; b < 8 && b < all.size(); ++b)
          if (mask & (1u << b)) st.parents.push_back(IdOf(all[all.size() - 1 - b]));
        std::sort(st.parents.begin(), st.parents.end());
        st.parents.erase(std::unique(st.parents.begin(), st.parents.end()), st.parents.end());
        SignStatement(&st, Device(static_cast<uint8_t>(in[at])), Device(0).public_key);
        all.push_back(EncodeStatement(st));
      }
      const std::string forward = Summary(Evaluate(Device(0).public_key, all));
      std::reverse(all.begin(), all.end());
      if (Summary(Evaluate(Device(0).public_key, all)) != forward) abort();
      break;
    }
  }
  return 0;
}
