#include "tandem/net/group.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "tandem/files/files.h"

namespace tandem::net {
namespace {

namespace fs = std::filesystem;

constexpr char kInvitePrefix[] = "tandem-invite-";
constexpr uint8_t kInviteVersion = 2;  // 1: no role byte (a member)

std::string InvitePath(const GroupPaths& files, const InviteId& id) {
  return files.invites_dir + "/" + Hex(id);
}

}  // namespace

void InitCrypto() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) abort();
}

std::string Hex(const uint8_t* p, size_t n) {
  std::string s(2 * n + 1, '\0');
  sodium_bin2hex(s.data(), s.size(), p, n);
  s.pop_back();
  return s;
}

Key32 NewGroupKey() {
  InitCrypto();
  Key32 k;
  randombytes_buf(k.data(), k.size());
  return k;
}

Status SaveGroupKey(const GroupPaths& files, const Key32& key) {
  return tandem::files::WriteAtomic(
      files.group_key, std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
}

namespace {
constexpr char kKeysMagic[] = "TNDMGK02";
constexpr size_t kKeysMagicBytes = 8;
}  // namespace

Status SaveGroupKeys(const GroupPaths& files, const GroupKeys& keys) {
  if (keys.previous.empty()) return SaveGroupKey(files, keys.current);
  std::string b(kKeysMagic, kKeysMagicBytes);
  b.append(reinterpret_cast<const char*>(keys.current.data()), 32);
  const size_t n = std::min(keys.previous.size(), kMaxRetiredKeys);
  b.push_back(static_cast<char>(n));
  for (size_t i = 0; i < n; ++i) {
    b.append(reinterpret_cast<const char*>(keys.previous[i].key.data()), 32);
    for (int k = 7; k >= 0; --k)
      b.push_back(static_cast<char>(keys.previous[i].retired_ms >> (8 * k)));
  }
  return tandem::files::WriteAtomic(files.group_key, b);
}

Result<GroupKeys> LoadGroupKeys(const GroupPaths& files) {
  auto data = tandem::files::ReadSmall(files.group_key, 4096);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound)
      return Status::NotFound("no group key at " + files.group_key +
                              " (was the replica made by `tandem init`?)");
    return data.status();
  }
  const std::string& d = *data;
  GroupKeys keys;
  if (d.size() == 32) {  // one key, never rotated
    std::memcpy(keys.current.data(), d.data(), 32);
    return keys;
  }
  const auto damaged = [&] { return Status::Corrupt(files.group_key + " is damaged"); };
  if (d.size() < kKeysMagicBytes + 33 || d.compare(0, kKeysMagicBytes, kKeysMagic) != 0)
    return damaged();
  std::memcpy(keys.current.data(), d.data() + kKeysMagicBytes, 32);
  size_t at = kKeysMagicBytes + 32;
  const size_t n = static_cast<uint8_t>(d[at++]);
  if (n > kMaxRetiredKeys || d.size() != at + n * 40) return damaged();
  for (size_t i = 0; i < n; ++i) {
    GroupKeys::Retired r;
    std::memcpy(r.key.data(), d.data() + at, 32);
    for (int k = 0; k < 8; ++k)
      r.retired_ms = (r.retired_ms << 8) | static_cast<uint8_t>(d[at + 32 + k]);
    at += 40;
    keys.previous.push_back(r);
  }
  return keys;
}

Result<Key32> LoadGroupKey(const GroupPaths& files) {
  TANDEM_ASSIGN_OR_RETURN(auto keys, LoadGroupKeys(files));
  return keys.current;
}

std::vector<Key32> GroupKeys::Accepted(uint64_t now_ms, uint64_t grace_ms) const {
  std::vector<Key32> out{current};
  for (const auto& r : previous)
    if (now_ms < r.retired_ms + grace_ms) out.push_back(r.key);
  return out;
}

std::string EncodeInvite(const Invite& inv) {
  std::string b;
  b.push_back(static_cast<char>(kInviteVersion));
  b.append(reinterpret_cast<const char*>(inv.inviter.data()), 32);
  b.append(reinterpret_cast<const char*>(inv.secret.data()), 32);
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<char>(inv.expires_ms >> (8 * i)));
  b.push_back(static_cast<char>(inv.role));
  size_t n = std::min<size_t>(inv.addresses.size(), 8);
  b.push_back(static_cast<char>(n));
  for (size_t i = 0; i < n; ++i) {
    const auto& a = inv.addresses[i];
    size_t len = std::min<size_t>(a.size(), 255);
    b.push_back(static_cast<char>(len));
    b.append(a.data(), len);
  }
  uint8_t check[4];
  crypto_generichash(check, sizeof check, reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                     nullptr, 0);
  b.append(reinterpret_cast<const char*>(check), sizeof check);
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(b.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                    variant);
  out.resize(std::strlen(out.c_str()));
  return kInvitePrefix + out;
}

Result<Invite> DecodeInvite(std::string_view code) {
  auto bad = [](const char* why) { return Status::Invalid(std::string("invite code: ") + why); };
  while (!code.empty() && std::isspace(static_cast<unsigned char>(code.back())))
    code.remove_suffix(1);
  if (code.substr(0, sizeof kInvitePrefix - 1) != kInvitePrefix)
    return bad("does not start with \"tandem-invite-\"");
  code.remove_prefix(sizeof kInvitePrefix - 1);
  if (code.size() > 4096) return bad("too long");
  std::string b(code.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<uint8_t*>(b.data()), b.size(), code.data(), code.size(),
                        nullptr, &len, nullptr, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return bad("not valid base64url (was it copied whole?)");
  b.resize(len);
  if (b.size() < 1 + 32 + 32 + 8 + 1 + 4) return bad("too short (was it copied whole?)");
  uint8_t check[4];
  crypto_generichash(check, sizeof check, reinterpret_cast<const uint8_t*>(b.data()), b.size() - 4,
                     nullptr, 0);
  if (std::memcmp(check, b.data() + b.size() - 4, 4) != 0)
    return bad("checksum mismatch (a typo, or truncated)");
  const uint8_t version = static_cast<uint8_t>(b[0]);
  if (version != 1 && version != kInviteVersion)
    return Status::Unsupported("invite code from a newer version of tandem");
  if (version == kInviteVersion && b.size() < 1 + 32 + 32 + 8 + 1 + 1 + 4)
    return bad("too short (was it copied whole?)");
  Invite inv;
  size_t at = 1;
  std::memcpy(inv.inviter.data(), b.data() + at, 32);
  at += 32;
  std::memcpy(inv.secret.data(), b.data() + at, 32);
  at += 32;
  for (int i = 0; i < 8; ++i)
    inv.expires_ms = (inv.expires_ms << 8) | static_cast<uint8_t>(b[at++]);
  if (version == kInviteVersion) {
    const uint8_t role = static_cast<uint8_t>(b[at++]);
    if (role > static_cast<uint8_t>(Role::kAdmin)) return bad("an unknown role");
    inv.role = static_cast<Role>(role);
  }
  size_t n = static_cast<uint8_t>(b[at++]);
  const size_t end = b.size() - 4;
  for (size_t i = 0; i < n; ++i) {
    if (at >= end) return bad("truncated address list");
    size_t l = static_cast<uint8_t>(b[at++]);
    if (at + l > end) return bad("truncated address");
    inv.addresses.emplace_back(b.data() + at, l);
    at += l;
  }
  if (at != end) return bad("trailing bytes");
  return inv;
}

Status StoreInvite(const GroupPaths& files, const Invite& inv) {
  std::error_code ec;
  fs::create_directories(files.invites_dir, ec);
  if (ec) return Status::Io("create " + files.invites_dir + ": " + ec.message());
  std::string data(reinterpret_cast<const char*>(inv.secret.data()), 32);
  for (int i = 7; i >= 0; --i) data.push_back(static_cast<char>(inv.expires_ms >> (8 * i)));
  data.push_back(static_cast<char>(inv.role));
  return tandem::files::WriteAtomic(InvitePath(files, InviteIdOf(inv.secret)), data);
}

Result<OpenInvite> FindInvite(const GroupPaths& files, const InviteId& id, uint64_t now_ms) {
  auto data = tandem::files::ReadSmall(InvitePath(files, id), 64);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound)
      return Status::NotFound("no open invite with this id (never issued, or already used)");
    return data.status();
  }
  // 40 bytes: made before roles (a member).
  if ((data->size() != 40 && data->size() != 41) ||
      (data->size() == 41 &&
       static_cast<uint8_t>((*data)[40]) > static_cast<uint8_t>(Role::kAdmin)))
    return Status::Corrupt("invite file " + InvitePath(files, id) + " is damaged");
  OpenInvite open;
  Key32& secret = open.secret;
  std::memcpy(secret.data(), data->data(), 32);
  if (data->size() == 41) open.role = static_cast<Role>((*data)[40]);
  uint64_t expires = 0;
  for (int i = 0; i < 8; ++i) expires = (expires << 8) | static_cast<uint8_t>((*data)[32 + i]);
  if (InviteIdOf(secret) != id) return Status::Corrupt("invite file does not match its name");
  if (now_ms > expires) {
    ::unlink(InvitePath(files, id).c_str());
    return Status::Unauthorized("the invite has expired");
  }
  return open;
}

Status BurnInvite(const GroupPaths& files, const InviteId& id) {
  if (::unlink(InvitePath(files, id).c_str()) == 0)
    return tandem::files::SyncParent(InvitePath(files, id));
  if (errno == ENOENT) return Status::Unauthorized("the invite was already used");
  return Status::Io("remove invite: " + std::string(std::strerror(errno)));
}

Status DropInvites(const GroupPaths& files) {
  std::error_code ec;
  fs::directory_iterator it(files.invites_dir, ec), end;
  if (ec)
    return ec == std::errc::no_such_file_or_directory
               ? Status::Ok()
               : Status::Io("read " + files.invites_dir + ": " + ec.message());
  bool removed = false;
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    if (fs::remove(it->path(), ec)) removed = true;
    if (ec) break;
  }
  if (ec) return Status::Io("remove the invites in " + files.invites_dir + ": " + ec.message());
  return removed ? tandem::files::SyncParent(files.invites_dir + "/x") : Status::Ok();
}

Status SaveJoin(const GroupPaths& files, const std::string& code) {
  return tandem::files::WriteAtomic(files.join_code, code);
}

Result<std::optional<Invite>> LoadJoin(const GroupPaths& files) {
  auto data = tandem::files::ReadSmall(files.join_code, 8192);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound) return std::optional<Invite>();
    return data.status();
  }
  auto inv = DecodeInvite(*data);
  if (!inv.ok()) return Status::Corrupt(files.join_code + ": " + inv.status().message());
  return std::optional<Invite>(std::move(*inv));
}

Status ClearJoin(const GroupPaths& files) {
  if (::unlink(files.join_code.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  return Status::Io("remove " + files.join_code + ": " + std::strerror(errno));
}

}  // namespace tandem::net
