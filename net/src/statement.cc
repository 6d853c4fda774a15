// Statements as bytes: their encoding, identity and signature (authority.h). What they
// establish, once verified, is judged in authority.cc.
#include <sodium.h>

#include <cstring>

#include "tandem/net/authority.h"

namespace tandem::net {
namespace {

using Key = std::array<uint8_t, 32>;

constexpr uint8_t kStatementVersion = 1;
constexpr char kSigningDomain[] = "tandem statement 1";

void PutU64(std::string* b, uint64_t v) {
  for (int i = 7; i >= 0; --i) b->push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}
void PutBytes(std::string* b, const uint8_t* p, size_t n) {
  b->append(reinterpret_cast<const char*>(p), n);
}

// Everything but the signature.
std::string EncodeBody(const Statement& s) {
  std::string b;
  b.push_back(static_cast<char>(kStatementVersion));
  b.push_back(static_cast<char>(s.kind));
  PutBytes(&b, s.signer.data(), 32);
  PutU64(&b, s.time_ms);
  b.push_back(static_cast<char>(s.parents.size()));
  for (const auto& p : s.parents) PutBytes(&b, p.data(), 32);
  if (IsExtension(s.kind)) {
    for (int shift = 24; shift >= 0; shift -= 8)
      b.push_back(static_cast<char>(s.payload.size() >> shift));
    b += s.payload;
    return b;
  }
  PutBytes(&b, s.subject.data(), 32);
  b.push_back(static_cast<char>(s.role));
  if (s.kind == StatementKind::kPermit) {
    b.push_back(static_cast<char>(s.level));
    b.push_back(static_cast<char>(s.collection.size()));
    b += s.collection;
  }
  b.push_back(static_cast<char>(s.cutoff.size() >> 8));
  b.push_back(static_cast<char>(s.cutoff.size()));
  for (const auto& [r, n] : s.cutoff) {
    PutBytes(&b, r.bytes.data(), r.bytes.size());
    PutU64(&b, n);
  }
  if (s.kind == StatementKind::kRekey) {
    b.push_back(static_cast<char>(s.sealed.size() >> 8));
    b.push_back(static_cast<char>(s.sealed.size()));
    for (const auto& k : s.sealed) {
      PutBytes(&b, k.device.data(), k.device.size());
      PutBytes(&b, k.sealed.data(), k.sealed.size());
    }
  }
  return b;
}

std::string SigningInput(const Statement& s, const Key& root) {
  std::string m(kSigningDomain, sizeof kSigningDomain);  // with its NUL: a separator
  PutBytes(&m, root.data(), root.size());
  m += EncodeBody(s);
  return m;
}

}  // namespace

std::string EncodeStatement(const Statement& s) {
  std::string b = EncodeBody(s);
  PutBytes(&b, s.signature.data(), s.signature.size());
  return b;
}

Result<Statement> DecodeStatement(std::string_view bytes) {
  auto bad = [](const std::string& why) { return Status::Invalid("statement: " + why); };
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n > kMaxStatementBytes) return bad("too long");
  if (n < 2 + 32 + 8 + 1 + 4 + 64) return bad("too short");
  if (p[0] != kStatementVersion) return bad("an unknown version");
  Statement s;
  if (p[1] < 1 || (p[1] > 5 && p[1] < kFirstExtension)) return bad("an unknown kind");
  s.kind = static_cast<StatementKind>(p[1]);
  size_t at = 2;
  std::memcpy(s.signer.data(), p + at, 32);
  at += 32;
  s.time_ms = GetU64(p + at);
  at += 8;
  const size_t parents = p[at++];
  if (parents > kMaxStatementParents) return bad("too many parents");
  auto need = [&](size_t k) { return at + k + 64 <= n; };
  if (!need(32 * parents)) return bad("truncated");
  for (size_t i = 0; i < parents; ++i) {
    StatementId id;
    std::memcpy(id.data(), p + at, 32);
    at += 32;
    if (!s.parents.empty() && id <= s.parents.back()) return bad("parents out of order");
    s.parents.push_back(id);
  }
  if (IsExtension(s.kind)) {
    if (!need(4)) return bad("truncated");
    const size_t len =
        size_t{p[at]} << 24 | size_t{p[at + 1]} << 16 | size_t{p[at + 2]} << 8 | size_t{p[at + 3]};
    at += 4;
    if (!need(len)) return bad("truncated");
    s.payload.assign(reinterpret_cast<const char*>(p + at), len);
    at += len;
    if (at + 64 != n) return bad("trailing bytes");
    std::memcpy(s.signature.data(), p + at, 64);
    return s;
  }
  if (!need(32 + 1)) return bad("truncated");
  std::memcpy(s.subject.data(), p + at, 32);
  at += 32;
  if (p[at] > static_cast<uint8_t>(Role::kOwner)) return bad("an unknown role");
  s.role = static_cast<Role>(p[at++]);
  if (s.kind == StatementKind::kPermit) {
    if (!need(2)) return bad("truncated");
    if (p[at] > static_cast<uint8_t>(Level::kWrite)) return bad("an unknown level");
    s.level = static_cast<Level>(p[at++]);
    const size_t len = p[at++];
    if (len == 0) return bad("no collection");
    if (!need(len)) return bad("truncated");
    s.collection.assign(reinterpret_cast<const char*>(p + at), len);
    at += len;
    if (s.collection.rfind("_tandem", 0) == 0) return bad("a permit for a system collection");
  }
  if (!need(2)) return bad("truncated");
  const size_t count = (size_t{p[at]} << 8) | p[at + 1];
  at += 2;
  if (count > kMaxStatementCutoffs) return bad("too many cutoffs");
  if (!need(24 * count)) return bad("truncated");
  for (size_t i = 0; i < count; ++i) {
    auto r = engine::ReplicaId::FromBytes(p + at);
    if (!s.cutoff.empty() && r <= s.cutoff.rbegin()->first) return bad("cutoffs out of order");
    s.cutoff.emplace(r, GetU64(p + at + 16));
    at += 24;
  }
  if (s.kind == StatementKind::kRekey) {
    if (!need(2)) return bad("truncated");
    const size_t copies = (size_t{p[at]} << 8) | p[at + 1];
    at += 2;
    if (copies == 0 || copies > kMaxSealedKeys) return bad("a rekey with no or too many keys");
    if (!need((32 + kSealedKeyBytes) * copies)) return bad("truncated");
    for (size_t i = 0; i < copies; ++i) {
      SealedKey k;
      std::memcpy(k.device.data(), p + at, 32);
      std::memcpy(k.sealed.data(), p + at + 32, kSealedKeyBytes);
      at += 32 + kSealedKeyBytes;
      if (!s.sealed.empty() && k.device <= s.sealed.back().device)
        return bad("sealed keys out of order");
      s.sealed.push_back(k);
    }
  }
  if (at + 64 != n) return bad("trailing bytes");
  std::memcpy(s.signature.data(), p + at, 64);
  return s;
}

StatementId IdOf(std::string_view encoded) {
  StatementId id;
  crypto_generichash(id.data(), id.size(), reinterpret_cast<const uint8_t*>(encoded.data()),
                     encoded.size(), nullptr, 0);
  return id;
}

void SignStatement(Statement* s, const Identity& self, const Key& root) {
  s->signer = self.public_key;
  const std::string m = SigningInput(*s, root);
  crypto_sign_detached(s->signature.data(), nullptr, reinterpret_cast<const uint8_t*>(m.data()),
                       m.size(), self.secret_key.data());
}

bool VerifyStatement(const Statement& s, const Key& root) {
  const std::string m = SigningInput(s, root);
  return crypto_sign_verify_detached(s.signature.data(), reinterpret_cast<const uint8_t*>(m.data()),
                                     m.size(), s.signer.data()) == 0;
}

}  // namespace tandem::net
