#include "tandem/net/group.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "tandem/files/files.h"

namespace tandem::net {
namespace {

namespace fs = std::filesystem;
using engine::Value;

constexpr char kInvitePrefix[] = "tandem-invite-";
constexpr uint8_t kInviteVersion = 1;

const Value* Register(const engine::Record& r, const char* field) {
  auto it = r.fields.find(field);
  if (it == r.fields.end() || it->second.kind != engine::Kind::kRegister) return nullptr;
  return &it->second.scalar;
}
std::string StringField(const engine::Record& r, const char* field) {
  auto* v = Register(r, field);
  if (!v) return {};
  auto* s = std::get_if<std::string>(v);
  return s ? *s : std::string();
}

bool ParseHex32(const std::string& s, Key32* out) {
  size_t bin_len = 0;
  return s.size() == 64 &&
         sodium_hex2bin(out->data(), out->size(), s.data(), s.size(), nullptr, &bin_len, nullptr) ==
             0 &&
         bin_len == 32;
}

// "hex:n" (or several, comma-separated) -> a map; malformed entries are skipped.
std::map<engine::ReplicaId, uint64_t> ParseCutoff(const std::string& s) {
  std::map<engine::ReplicaId, uint64_t> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t end = s.find(',', at);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(at, end - at);
    size_t colon = item.find(':');
    if (colon != std::string::npos) {
      auto id = engine::ReplicaId::FromHex(item.substr(0, colon));
      std::string n = item.substr(colon + 1);
      if (id.ok() && !n.empty() && n.size() <= 19 &&
          n.find_first_not_of("0123456789") == std::string::npos)
        out[*id] = std::stoull(n);
    }
    at = end + 1;
  }
  return out;
}

std::optional<Member> ToMember(const engine::Record& r) {
  Member m;
  m.device = r.id;
  if (!ParseHex32(StringField(r, "key"), &m.key) || DeviceId(m.key) != r.id) return std::nullopt;
  m.added_by = StringField(r, "added_by");
  if (auto* v = Register(r, "added_ms"); v && std::holds_alternative<int64_t>(*v))
    m.added_ms = static_cast<uint64_t>(std::get<int64_t>(*v));
  // Revocation is sticky: any write of "revoked" (even a concurrent sibling) revokes.
  m.revoked = r.fields.count("revoked") > 0;
  m.revoked_by = StringField(r, "revoked_by");
  if (auto it = r.fields.find("replicas");
      it != r.fields.end() && it->second.kind == engine::Kind::kSet)
    for (const auto& v : it->second.set)
      if (auto* h = std::get_if<std::string>(&v))
        if (auto id = engine::ReplicaId::FromHex(*h); id.ok()) m.replicas.push_back(*id);
  // "cutoff": a set of "hex:n" entries (one per revocation); the smallest per replica.
  if (auto it = r.fields.find("cutoff");
      it != r.fields.end() && it->second.kind == engine::Kind::kSet)
    for (const auto& v : it->second.set)
      if (auto* e = std::get_if<std::string>(&v))
        for (const auto& [id, n] : ParseCutoff(*e)) {
          auto c = m.cutoff.find(id);
          m.cutoff[id] = c == m.cutoff.end() ? n : std::min(c->second, n);
        }
  return m;
}

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

Result<Key32> LoadGroupKey(const GroupPaths& files) {
  auto data = tandem::files::ReadSmall(files.group_key, 64);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound)
      return Status::NotFound("no group key at " + files.group_key +
                              " (was the replica made by `tandem init`?)");
    return data.status();
  }
  if (data->size() != 32) return Status::Corrupt(files.group_key + " is damaged");
  Key32 k;
  std::memcpy(k.data(), data->data(), 32);
  return k;
}

Status AddMember(engine::Replica& r, const Key32& key, const std::string& added_by,
                 uint64_t now_ms) {
  return r.Put(kDevicesCollection, DeviceId(key),
               {{"key", Value(Hex(key))},
                {"added_by", Value(added_by)},
                {"added_ms", Value(static_cast<int64_t>(now_ms))}});
}

Status RevokeMember(engine::Replica& r, const std::string& device, const std::string& by,
                    uint64_t now_ms) {
  auto rec = r.Get(kDevicesCollection, device);
  if (!rec.ok()) {
    if (rec.status().code() == Code::kNotFound)
      return Status::NotFound("device " + device + " is not a member of this group");
    return rec.status();
  }
  auto m = ToMember(*rec);
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  // The cutoff is the last event of each of the device's replicas that this replica
  // holds: its version vector may lag what it has applied (a filtered or interrupted
  // sync), so the field states themselves are read too.
  std::map<engine::ReplicaId, uint64_t> cutoff;
  if (m)
    for (const auto& id : m->replicas)
      if (id != meta.id) cutoff[id] = meta.vv.Get(id);
  if (!cutoff.empty()) {
    uint64_t cursor = 0;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(auto page, r.CollectDeltas(cursor, 4096, nullptr));
      for (const auto& d : page.deltas)
        for (auto& [id, n] : cutoff) n = std::max(n, d.state.ctx.Get(id));
      cursor = page.next_cursor;
      if (page.done) break;
    }
  }
  // Entries of a set: a second or concurrent revocation adds its own, and the smallest
  // per replica holds (RevocationCutoffs), so a cutoff never rises.
  return r.Write([&](engine::Batch& b) -> Status {
    TANDEM_RETURN_IF_ERROR(b.Put(kDevicesCollection, device, "revoked", Value(true)));
    TANDEM_RETURN_IF_ERROR(b.Put(kDevicesCollection, device, "revoked_by", Value(by)));
    TANDEM_RETURN_IF_ERROR(
        b.Put(kDevicesCollection, device, "revoked_ms", Value(static_cast<int64_t>(now_ms))));
    for (const auto& [id, n] : cutoff)
      TANDEM_RETURN_IF_ERROR(
          b.Add(kDevicesCollection, device, "cutoff", Value(id.Hex() + ":" + std::to_string(n))));
    return Status::Ok();
  });
}

Status NoteReplica(engine::Replica& r, const std::string& device,
                   const engine::ReplicaId& replica) {
  TANDEM_ASSIGN_OR_RETURN(auto members, Members(r));
  const Member* self = nullptr;
  for (const auto& m : members) {
    for (const auto& id : m.replicas)
      if (id == replica) {
        if (m.device == device) return Status::Ok();  // known
        // A Hello naming another device's replica: not recorded (a revocation of this
        // device must never cut off that one).
        return Status::Unauthorized("replica " + replica.Hex() + " belongs to device " + m.device +
                                    ", not " + device);
      }
    if (m.device == device) self = &m;
  }
  if (!self) return Status::Ok();  // not a member: nothing to note
  return r.Add(kDevicesCollection, device, "replicas", Value(replica.Hex()));
}

Result<std::map<engine::ReplicaId, uint64_t>> RevocationCutoffs(engine::Replica& r) {
  std::map<engine::ReplicaId, uint64_t> out;
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  TANDEM_ASSIGN_OR_RETURN(auto members, Members(r));
  std::set<engine::ReplicaId> innocent{meta.id};  // ours, and members' in good standing
  for (const auto& m : members)
    if (!m.revoked) innocent.insert(m.replicas.begin(), m.replicas.end());
  for (const auto& m : members) {
    if (!m.revoked) continue;
    // A replica of the device with no cutoff (noted after the revocation was made, a
    // restore for instance) has no accepted events at all: cutoff 0.
    for (const auto& id : m.replicas)
      if (!m.cutoff.count(id) && !innocent.count(id)) out.emplace(id, 0);
    for (const auto& [id, n] : m.cutoff) {
      if (innocent.count(id)) continue;
      auto it = out.find(id);
      out[id] = it == out.end() ? n : std::min(it->second, n);
    }
  }
  return out;
}

Result<std::vector<Member>> Members(engine::Replica& r) {
  std::vector<Member> out;
  TANDEM_RETURN_IF_ERROR(r.Scan(kDevicesCollection, "", [&](const engine::Record& rec) {
    if (auto m = ToMember(rec)) out.push_back(std::move(*m));
    return true;
  }));
  return out;
}

Result<Trust> TrustOf(engine::Replica& r, const Key32& key) {
  auto rec = r.Get(kDevicesCollection, DeviceId(key));
  if (!rec.ok()) {
    if (rec.status().code() == Code::kNotFound) return Trust::kUnknown;
    return rec.status();
  }
  if (rec->fields.count("revoked")) return Trust::kRevoked;  // whatever else it says
  auto m = ToMember(*rec);
  if (!m || m->key != key) return Trust::kUnknown;
  return Trust::kMember;
}

std::string EncodeInvite(const Invite& inv) {
  std::string b;
  b.push_back(static_cast<char>(kInviteVersion));
  b.append(reinterpret_cast<const char*>(inv.inviter.data()), 32);
  b.append(reinterpret_cast<const char*>(inv.secret.data()), 32);
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<char>(inv.expires_ms >> (8 * i)));
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
  if (static_cast<uint8_t>(b[0]) != kInviteVersion)
    return Status::Unsupported("invite code from a newer version of tandem");
  Invite inv;
  size_t at = 1;
  std::memcpy(inv.inviter.data(), b.data() + at, 32);
  at += 32;
  std::memcpy(inv.secret.data(), b.data() + at, 32);
  at += 32;
  for (int i = 0; i < 8; ++i)
    inv.expires_ms = (inv.expires_ms << 8) | static_cast<uint8_t>(b[at++]);
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
  return tandem::files::WriteAtomic(InvitePath(files, InviteIdOf(inv.secret)), data);
}

Result<Key32> FindInvite(const GroupPaths& files, const InviteId& id, uint64_t now_ms) {
  auto data = tandem::files::ReadSmall(InvitePath(files, id), 64);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound)
      return Status::NotFound("no open invite with this id (never issued, or already used)");
    return data.status();
  }
  if (data->size() != 40)
    return Status::Corrupt("invite file " + InvitePath(files, id) + " is damaged");
  Key32 secret;
  std::memcpy(secret.data(), data->data(), 32);
  uint64_t expires = 0;
  for (int i = 0; i < 8; ++i) expires = (expires << 8) | static_cast<uint8_t>((*data)[32 + i]);
  if (InviteIdOf(secret) != id) return Status::Corrupt("invite file does not match its name");
  if (now_ms > expires) {
    ::unlink(InvitePath(files, id).c_str());
    return Status::Unauthorized("the invite has expired");
  }
  return secret;
}

Status BurnInvite(const GroupPaths& files, const InviteId& id) {
  if (::unlink(InvitePath(files, id).c_str()) == 0)
    return tandem::files::SyncParent(InvitePath(files, id));
  if (errno == ENOENT) return Status::Unauthorized("the invite was already used");
  return Status::Io("remove invite: " + std::string(std::strerror(errno)));
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
