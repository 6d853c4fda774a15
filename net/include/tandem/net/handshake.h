// The handshake: Noise XXpsk3 (X25519, ChaCha20-Poly1305 IETF, SHA-256) built from
// libsodium primitives, with the devices' Ed25519 identities as static keys and a
// pre-shared key: the group key, or one derived from an invite's one-time secret.
//
//   -> [kind, invite id?] e                 + mac1 (keyed by the PSK)
//   <- e, ee, s, es
//   -> s, se, psk
//
// Mutual authentication, forward secrecy, identities hidden from passive observers.
// As in WireGuard, message 1 carries a MAC keyed by the PSK, so a responder drops a
// stranger's first message with one BLAKE2b call, before any Diffie-Hellman.
// Deviations from plain Noise (docs/protocol.md): the static key sent is the Ed25519
// public key (device ids derive from it); both sides convert it to X25519 for DH.
// The pure state machine: bytes in, bytes out, no I/O.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "tandem/net/identity.h"

namespace tandem::net {

using Key32 = std::array<uint8_t, 32>;

// What the first message says about the PSK the initiator uses.
enum class PskKind : uint8_t { kGroup = 1, kInvite = 2 };
using InviteId = std::array<uint8_t, 16>;

// A subkey for one purpose: BLAKE2b-256 of `label` keyed by `key` (mac1 keys, invite
// PSKs, the discovery key all come from here).
Key32 DeriveKey(const Key32& key, std::string_view label);

// The PSK for an invite's one-time secret, and the id that names the invite in
// message 1 (neither reveals the secret).
Key32 InvitePsk(const Key32& secret);
InviteId InviteIdOf(const Key32& secret);

// Handshake messages are small; anything larger is refused unread.
inline constexpr size_t kMaxHandshakeMessage = 256;

struct FirstMessageHeader {
  PskKind kind;
  InviteId invite{};  // when kind == kInvite
};
// Reads the unauthenticated header of message 1 so the responder can pick the PSK.
Result<FirstMessageHeader> PeekFirstMessage(std::string_view msg1);

struct SessionKeys {
  Key32 send{}, recv{};
  Key32 handshake_hash{};
};

class Handshake {
 public:
  // The initiator knows which PSK it uses; `invite` names it when kind is kInvite.
  static Handshake Initiator(const Identity& self, const Key32& psk, PskKind kind,
                             const InviteId& invite = {});
  static Handshake Responder(const Identity& self, const Key32& psk);
  ~Handshake();
  Handshake(Handshake&&) noexcept;
  Handshake& operator=(Handshake&&) noexcept;

  // Initiator: message 1, then (after reading message 2) message 3.
  // Responder: (after reading message 1) message 2.
  Result<std::string> Write();
  // Any failure (bad MAC, bad DH, failed decryption, wrong size) is kUnauthorized and
  // leaves the handshake unusable.
  Status Read(std::string_view msg);

  // The peer's Ed25519 public key, known to the initiator after message 2 and to the
  // responder after message 3.
  const std::optional<Key32>& peer_key() const { return peer_key_; }
  bool done() const { return step_ == 3; }
  // Both transport keys; only once done().
  SessionKeys Split() const;

 private:
  Handshake() = default;
  struct State;
  State* s_ = nullptr;
  bool initiator_ = false;
  int step_ = 0;  // messages processed so far
  std::optional<Key32> peer_key_;
};

}  // namespace tandem::net
