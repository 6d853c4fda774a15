#include "tandem/net/handshake.h"

#include <sodium.h>

#include <cstring>

namespace tandem::net {
namespace {

constexpr char kProtocolName[] = "Noise_XXpsk3_25519_ChaChaPoly_SHA256";
constexpr char kPrologue[] = "tandem/1";
constexpr size_t kHash = 32, kTag = crypto_aead_chacha20poly1305_ietf_ABYTES, kMac = 16;

using Hash = std::array<uint8_t, kHash>;

void Sha256(Hash* out, std::string_view a, std::string_view b = {}) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, reinterpret_cast<const uint8_t*>(a.data()), a.size());
  crypto_hash_sha256_update(&st, reinterpret_cast<const uint8_t*>(b.data()), b.size());
  crypto_hash_sha256_final(&st, out->data());
}

void Hmac(Hash* out, const Hash& key, std::string_view a, std::string_view b = {}) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const uint8_t*>(a.data()), a.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const uint8_t*>(b.data()), b.size());
  crypto_auth_hmacsha256_final(&st, out->data());
}

std::string_view View(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }
template <size_t N>
std::string_view View(const std::array<uint8_t, N>& a) {
  return View(a.data(), N);
}

// Noise HKDF with HMAC-SHA256: two or three outputs.
void Hkdf(const Hash& ck, std::string_view ikm, Hash* o1, Hash* o2, Hash* o3 = nullptr) {
  Hash temp;
  Hmac(&temp, ck, ikm);
  const uint8_t one = 1, two = 2, three = 3;
  Hmac(o1, temp, View(&one, 1));
  Hmac(o2, temp, View(*o1), View(&two, 1));
  if (o3) Hmac(o3, temp, View(*o2), View(&three, 1));
  sodium_memzero(temp.data(), temp.size());
}

// BLAKE2b of `data` keyed by `key`, N bytes.
template <size_t N>
std::array<uint8_t, N> KeyedHash(std::string_view data, const Key32& key) {
  std::array<uint8_t, N> out;
  crypto_generichash(out.data(), N, reinterpret_cast<const uint8_t*>(data.data()), data.size(),
                     key.data(), key.size());
  return out;
}

std::array<uint8_t, kMac> Mac1(const Key32& psk, std::string_view body) {
  return KeyedHash<kMac>(body, DeriveKey(psk, "tandem mac1 key"));
}

Status HandshakeRefused(const char* why) {
  return Status::Unauthorized(std::string("handshake: ") + why);
}

}  // namespace

Key32 DeriveKey(const Key32& key, std::string_view label) { return KeyedHash<32>(label, key); }

Key32 InvitePsk(const Key32& secret) { return DeriveKey(secret, "tandem invite psk"); }

InviteId InviteIdOf(const Key32& secret) { return KeyedHash<16>("tandem invite id", secret); }

// Message 1 layout: kind (1) [invite id (16)] e (32) payload tag (16) mac1 (16).
Result<FirstMessageHeader> PeekFirstMessage(std::string_view m) {
  if (m.empty()) return HandshakeRefused("empty first message");
  FirstMessageHeader h{static_cast<PskKind>(static_cast<uint8_t>(m[0]))};
  size_t want = 1 + 32 + kTag + kMac;
  if (h.kind == PskKind::kInvite) {
    want += 16;
    if (m.size() == want) std::memcpy(h.invite.data(), m.data() + 1, 16);
  } else if (h.kind != PskKind::kGroup) {
    return HandshakeRefused("first message of an unknown kind (not a tandem peer?)");
  }
  if (m.size() != want) return HandshakeRefused("first message has the wrong size");
  return h;
}

struct Handshake::State {
  Hash h{}, ck{};
  Key32 k{};
  bool has_k = false;
  uint64_t n = 0;
  Identity self;
  Key32 psk{};
  Key32 s_x_pub{}, s_x_sec{};  // our static key as X25519
  Key32 e_pub{}, e_sec{};
  Key32 re{};                 // the peer's ephemeral
  Key32 rs_x{};               // the peer's static as X25519
  bool bad_identity = false;  // our Ed25519 key did not convert to X25519
  PskKind kind = PskKind::kGroup;
  InviteId invite{};

  ~State() { sodium_memzero(this, sizeof *this); }

  void Init() {
    Hash name;
    static_assert(sizeof kProtocolName - 1 > kHash);
    Sha256(&name, kProtocolName);
    h = name;
    ck = name;
    // The prologue binds the unauthenticated header of message 1 (kind, invite id).
    std::string prologue(kPrologue);
    prologue.push_back(static_cast<char>(kind));
    if (kind == PskKind::kInvite) prologue.append(View(invite));
    MixHash(prologue);
    // A key from GenerateIdentity always converts; a damaged identity file may not.
    bad_identity =
        crypto_sign_ed25519_pk_to_curve25519(s_x_pub.data(), self.public_key.data()) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(s_x_sec.data(), self.secret_key.data()) != 0;
  }
  void MixHash(std::string_view data) {
    Hash next;
    Sha256(&next, View(h), data);
    h = next;
  }
  void MixKey(std::string_view ikm) {
    Hash k2;
    Hkdf(ck, ikm, &ck, &k2);
    k = k2;
    has_k = true;
    n = 0;
  }
  void MixKeyAndHash(std::string_view ikm) {
    Hash th, tk;
    Hkdf(ck, ikm, &ck, &th, &tk);
    MixHash(View(th));
    k = tk;
    has_k = true;
    n = 0;
  }
  void Nonce(uint8_t out[12]) const {
    std::memset(out, 0, 4);
    for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<uint8_t>(n >> (8 * i));
  }
  void EncryptAndHash(std::string_view pt, std::string* out) {
    size_t at = out->size();
    out->resize(at + pt.size() + kTag);
    uint8_t nonce[12];
    Nonce(nonce);
    unsigned long long clen = 0;
    crypto_aead_chacha20poly1305_ietf_encrypt(reinterpret_cast<uint8_t*>(out->data() + at), &clen,
                                              reinterpret_cast<const uint8_t*>(pt.data()),
                                              pt.size(), h.data(), h.size(), nullptr, nonce,
                                              k.data());
    ++n;
    MixHash(std::string_view(out->data() + at, clen));
  }
  bool DecryptAndHash(std::string_view ct, std::string* pt) {
    if (ct.size() < kTag) return false;
    pt->resize(ct.size() - kTag);
    uint8_t nonce[12];
    Nonce(nonce);
    unsigned long long plen = 0;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(
            reinterpret_cast<uint8_t*>(pt->data()), &plen, nullptr,
            reinterpret_cast<const uint8_t*>(ct.data()), ct.size(), h.data(), h.size(), nonce,
            k.data()) != 0)
      return false;
    ++n;
    MixHash(ct);
    return true;
  }
  // DH into the chaining key; refuses an all-zero result (a low-order point).
  bool MixDh(const Key32& sec, const Key32& pub) {
    Key32 shared;
    if (crypto_scalarmult(shared.data(), sec.data(), pub.data()) != 0) return false;
    MixKey(View(shared));
    sodium_memzero(shared.data(), shared.size());
    return true;
  }
  void GenerateEphemeral() {
    randombytes_buf(e_sec.data(), e_sec.size());
    crypto_scalarmult_base(e_pub.data(), e_sec.data());
  }
};

Handshake::~Handshake() { delete s_; }
Handshake::Handshake(Handshake&& o) noexcept
    : s_(o.s_), initiator_(o.initiator_), step_(o.step_), peer_key_(o.peer_key_) {
  o.s_ = nullptr;
}
Handshake& Handshake::operator=(Handshake&& o) noexcept {
  if (this != &o) {
    delete s_;
    s_ = o.s_;
    o.s_ = nullptr;
    initiator_ = o.initiator_;
    step_ = o.step_;
    peer_key_ = o.peer_key_;
  }
  return *this;
}

Handshake Handshake::Initiator(const Identity& self, const Key32& psk, PskKind kind,
                               const InviteId& invite) {
  Handshake hs;
  hs.s_ = new State;
  hs.s_->self = self;
  hs.s_->psk = psk;
  hs.s_->kind = kind;
  hs.s_->invite = invite;
  hs.s_->Init();
  hs.initiator_ = true;
  return hs;
}

Handshake Handshake::Responder(const Identity& self, const Key32& psk) {
  Handshake hs;
  hs.s_ = new State;
  hs.s_->self = self;
  hs.s_->psk = psk;
  hs.initiator_ = false;
  return hs;  // Init() runs once message 1 names the kind.
}

Result<std::string> Handshake::Write() {
  if (!s_) return HandshakeRefused("the handshake failed earlier");
  State& s = *s_;
  if (s.bad_identity) return Status::Corrupt("this device's identity key is not usable");
  std::string out;
  if (initiator_ && step_ == 0) {
    // -> e (with a PSK, e is also mixed into the key), empty payload, mac1.
    out.push_back(static_cast<char>(s.kind));
    if (s.kind == PskKind::kInvite) out.append(View(s.invite));
    s.GenerateEphemeral();
    out.append(View(s.e_pub));
    s.MixHash(View(s.e_pub));
    s.MixKey(View(s.e_pub));
    s.EncryptAndHash({}, &out);
    auto mac = Mac1(s.psk, out);
    out.append(View(mac));
  } else if (!initiator_ && step_ == 1) {
    // <- e, ee, s, es
    s.GenerateEphemeral();
    out.append(View(s.e_pub));
    s.MixHash(View(s.e_pub));
    s.MixKey(View(s.e_pub));
    if (!s.MixDh(s.e_sec, s.re)) return HandshakeRefused("bad ephemeral key");
    s.EncryptAndHash(View(s.self.public_key), &out);
    if (!s.MixDh(s.s_x_sec, s.re)) return HandshakeRefused("bad ephemeral key");
    s.EncryptAndHash({}, &out);
  } else if (initiator_ && step_ == 2) {
    // -> s, se, psk
    s.EncryptAndHash(View(s.self.public_key), &out);
    if (!s.MixDh(s.s_x_sec, s.re)) return HandshakeRefused("bad ephemeral key");
    s.MixKeyAndHash(View(s.psk));
    s.EncryptAndHash({}, &out);
  } else {
    return Status::Invalid("handshake: no message to write at this step");
  }
  ++step_;
  return out;
}

Status Handshake::Read(std::string_view m) {
  if (!s_) return HandshakeRefused("the handshake failed earlier");
  auto fail = [&](const char* why) {
    delete s_;
    s_ = nullptr;
    return HandshakeRefused(why);
  };
  if (m.size() > kMaxHandshakeMessage) return fail("message too large");
  State& s = *s_;
  std::string pt;
  if (!initiator_ && step_ == 0) {
    auto hdr = PeekFirstMessage(m);
    if (!hdr.ok()) return fail("malformed first message");
    // The cheap check first: does the sender know the PSK?
    auto mac = Mac1(s.psk, m.substr(0, m.size() - kMac));
    if (sodium_memcmp(mac.data(), m.data() + m.size() - kMac, kMac) != 0)
      return fail("first message does not prove the pre-shared key (wrong group key?)");
    s.kind = hdr->kind;
    s.invite = hdr->invite;
    s.Init();
    size_t at = hdr->kind == PskKind::kInvite ? 17 : 1;
    std::memcpy(s.re.data(), m.data() + at, 32);
    s.MixHash(View(s.re));
    s.MixKey(View(s.re));
    if (!s.DecryptAndHash(m.substr(at + 32, kTag), &pt)) return fail("bad first message");
  } else if (initiator_ && step_ == 1) {
    if (m.size() != 32 + 32 + kTag + kTag) return fail("second message has the wrong size");
    std::memcpy(s.re.data(), m.data(), 32);
    s.MixHash(View(s.re));
    s.MixKey(View(s.re));
    if (!s.MixDh(s.e_sec, s.re)) return fail("bad ephemeral key");
    if (!s.DecryptAndHash(m.substr(32, 32 + kTag), &pt)) return fail("bad second message");
    Key32 rs;
    std::memcpy(rs.data(), pt.data(), 32);
    if (crypto_sign_ed25519_pk_to_curve25519(s.rs_x.data(), rs.data()) != 0)
      return fail("peer's static key is not a valid Ed25519 key");
    if (!s.MixDh(s.e_sec, s.rs_x)) return fail("bad static key");
    if (!s.DecryptAndHash(m.substr(32 + 32 + kTag), &pt)) return fail("bad second message");
    peer_key_ = rs;
  } else if (!initiator_ && step_ == 2) {
    if (m.size() != 32 + kTag + kTag) return fail("third message has the wrong size");
    if (!s.DecryptAndHash(m.substr(0, 32 + kTag), &pt)) return fail("bad third message");
    Key32 rs;
    std::memcpy(rs.data(), pt.data(), 32);
    if (crypto_sign_ed25519_pk_to_curve25519(s.rs_x.data(), rs.data()) != 0)
      return fail("peer's static key is not a valid Ed25519 key");
    if (!s.MixDh(s.e_sec, s.rs_x)) return fail("bad static key");
    s.MixKeyAndHash(View(s.psk));
    if (!s.DecryptAndHash(m.substr(32 + kTag), &pt))
      return fail("third message does not prove the pre-shared key");
    peer_key_ = rs;
  } else {
    return Status::Invalid("handshake: no message to read at this step");
  }
  ++step_;
  return Status::Ok();
}

SessionKeys Handshake::Split() const {
  SessionKeys keys;
  if (!s_ || step_ != 3) return keys;
  Hash k1, k2;
  Hkdf(s_->ck, {}, &k1, &k2);
  keys.send = initiator_ ? k1 : k2;
  keys.recv = initiator_ ? k2 : k1;
  keys.handshake_hash = s_->h;
  sodium_memzero(k1.data(), k1.size());
  sodium_memzero(k2.data(), k2.size());
  return keys;
}

}  // namespace tandem::net
