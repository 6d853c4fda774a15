#include "tandem/net/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tandem/files/files.h"

namespace tandem::net {

namespace {

constexpr char kMagic[8] = {'T', 'N', 'D', 'M', 'I', 'D', '0', '1'};
constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";

void InitSodium() {
  if (sodium_init() < 0) abort();  // no usable randomness: nothing safe to do
}

std::string Base32(const uint8_t* p, size_t n) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    buf = (buf << 8) | p[i];
    bits += 8;
    while (bits >= 5) {
      out.push_back(kBase32[(buf >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kBase32[(buf << (5 - bits)) & 31]);
  return out;
}

std::string Check(const std::string& body) {
  uint8_t h[16];
  crypto_generichash(h, sizeof h, reinterpret_cast<const uint8_t*>(body.data()), body.size(),
                     nullptr, 0);
  return std::string{kBase32[h[0] & 31], kBase32[h[1] & 31]};
}

}  // namespace

Identity GenerateIdentity() {
  InitSodium();
  Identity id;
  crypto_sign_keypair(id.public_key.data(), id.secret_key.data());
  return id;
}

Status SaveIdentity(const Identity& id, const std::string& path) {
  std::string data(kMagic, sizeof kMagic);
  data.append(reinterpret_cast<const char*>(id.secret_key.data()), id.secret_key.size());
  // Never replaces a key: a device's identity is written once, whole or not at all.
  Status st = tandem::files::CreateAtomic(path, data);
  sodium_memzero(data.data(), data.size());
  return st;
}

Result<Identity> LoadIdentity(const std::string& path) {
  InitSodium();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("open " + path + ": " + std::strerror(errno));
  char buf[sizeof kMagic + 64 + 1];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof kMagic + 64) || std::memcmp(buf, kMagic, sizeof kMagic))
    return Status::Corrupt(path + " is not a Tandem identity key");
  Identity id;
  std::memcpy(id.secret_key.data(), buf + sizeof kMagic, 64);
  sodium_memzero(buf, sizeof buf);
  crypto_sign_ed25519_sk_to_pk(id.public_key.data(), id.secret_key.data());
  // The stored public half must match the seed, or the file is damaged.
  uint8_t pk[32], sk[64];
  crypto_sign_seed_keypair(pk, sk, id.secret_key.data());
  bool match = std::memcmp(pk, id.public_key.data(), 32) == 0;
  sodium_memzero(sk, sizeof sk);
  if (!match) return Status::Corrupt(path + " is damaged (key halves disagree)");
  return id;
}

namespace {
// A device id's 34 characters in groups of four joined by dashes.
std::string Grouped(const std::string& all) {
  std::string out;
  for (size_t i = 0; i < all.size(); ++i) {
    if (i && i % 4 == 0) out.push_back('-');
    out.push_back(all[i]);
  }
  return out;
}
}  // namespace

std::string DeviceId(const std::array<uint8_t, 32>& public_key) {
  InitSodium();
  uint8_t h[20];
  crypto_generichash(h, sizeof h, public_key.data(), public_key.size(), nullptr, 0);
  std::string body = Base32(h, sizeof h);  // 32 characters
  return Grouped(body + Check(body));
}

std::optional<std::string> CanonicalDeviceId(const std::string& s) {
  InitSodium();
  std::string all;
  for (char c : s)
    if (c != '-') all.push_back(c);
  if (all.size() != 34) return std::nullopt;
  for (char c : all)
    if (!std::strchr(kBase32, c) || c == '\0') return std::nullopt;
  if (Check(all.substr(0, 32)) != all.substr(32)) return std::nullopt;
  return Grouped(all);
}

bool IsValidDeviceId(const std::string& s) {
  auto c = CanonicalDeviceId(s);
  return c && *c == s;
}

}  // namespace tandem::net
