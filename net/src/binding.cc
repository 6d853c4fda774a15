// Replica bindings (binding.h).
#include "tandem/net/binding.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>

#include "tandem/files/files.h"

namespace tandem::net {
namespace {

constexpr char kIdDomain[] = "tandem replica 1";  // with its NUL: 17 bytes
constexpr char kSignDomain[] = "tandem bind 1";   // with its NUL: 14 bytes

std::string SignedMessage(const engine::ReplicaId& replica) {
  std::string m(kSignDomain, sizeof kSignDomain);
  m.append(reinterpret_cast<const char*>(replica.bytes.data()), replica.bytes.size());
  return m;
}

// VerifyBinding, remembering what verified (bindings only grow, and the trust set reads
// them all at every change): one signature check per binding per process.
bool Verified(const Binding& b, const engine::ReplicaId& replica) {
  static std::mutex mu;
  static std::set<std::string> good;
  std::string key(reinterpret_cast<const char*>(replica.bytes.data()), replica.bytes.size());
  key += EncodeBinding(b);
  {
    std::lock_guard lock(mu);
    if (good.count(key)) return true;
  }
  if (!VerifyBinding(b, replica)) return false;
  std::lock_guard lock(mu);
  if (good.size() >= 65536) good.clear();  // bounded; what is dropped is checked again
  good.insert(std::move(key));
  return true;
}

// The binding a register field of kBindingsCollection holds, if it is one.
std::optional<Binding> BindingOf(const engine::Record& rec) {
  auto it = rec.fields.find(kBindingField);
  if (it == rec.fields.end() || it->second.kind != engine::Kind::kRegister) return std::nullopt;
  auto* b = std::get_if<engine::Bytes>(&it->second.scalar);
  if (!b) return std::nullopt;
  auto d = DecodeBinding(b->data);
  if (!d.ok()) return std::nullopt;
  return *d;
}

// One line of a device's own bindings file: the binding in hex.
std::string BindingLine(const Binding& b) {
  const std::string e = EncodeBinding(b);
  std::string hex(e.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(e.data()),
                 e.size());
  hex.pop_back();
  return hex + "\n";
}

}  // namespace

std::string EncodeBinding(const Binding& b) {
  std::string out;
  out.reserve(kBindingBytes);
  out.push_back(1);
  out.append(reinterpret_cast<const char*>(b.device.data()), b.device.size());
  out.append(reinterpret_cast<const char*>(b.salt.data()), b.salt.size());
  out.append(reinterpret_cast<const char*>(b.signature.data()), b.signature.size());
  return out;
}

Result<Binding> DecodeBinding(std::string_view bytes) {
  if (bytes.size() != kBindingBytes) return Status::Invalid("a replica binding has 113 bytes");
  if (bytes[0] != 1) return Status::Invalid("unknown replica binding version");
  Binding b;
  const char* p = bytes.data() + 1;
  std::memcpy(b.device.data(), p, 32);
  std::memcpy(b.salt.data(), p + 32, 16);
  std::memcpy(b.signature.data(), p + 48, 64);
  return b;
}

engine::ReplicaId DerivedReplicaId(const std::array<uint8_t, 32>& device,
                                   const std::array<uint8_t, 16>& salt) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 16);
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(kIdDomain),
                            sizeof kIdDomain);
  crypto_generichash_update(&st, device.data(), device.size());
  crypto_generichash_update(&st, salt.data(), salt.size());
  engine::ReplicaId id;
  crypto_generichash_final(&st, id.bytes.data(), id.bytes.size());
  return id;
}

Binding NewBinding(const Identity& self, engine::ReplicaId* id) {
  Binding b;
  b.device = self.public_key;
  do {
    randombytes_buf(b.salt.data(), b.salt.size());
    *id = DerivedReplicaId(b.device, b.salt);
  } while (id->IsZero());
  const std::string m = SignedMessage(*id);
  crypto_sign_detached(b.signature.data(), nullptr, reinterpret_cast<const uint8_t*>(m.data()),
                       m.size(), self.secret_key.data());
  return b;
}

bool VerifyBinding(const Binding& b, const engine::ReplicaId& replica) {
  if (DerivedReplicaId(b.device, b.salt) != replica) return false;
  const std::string m = SignedMessage(replica);
  return crypto_sign_verify_detached(b.signature.data(), reinterpret_cast<const uint8_t*>(m.data()),
                                     m.size(), b.device.data()) == 0;
}

engine::Admission AdmitBinding(const engine::FieldDelta& d) {
  if (d.key.collection != kBindingsCollection) return engine::Admission::kAccept;
  const engine::FieldState& s = d.state;
  auto replica = engine::ReplicaId::FromHex(d.key.record);
  // Grow-only: one field, never removed, holding bindings of the replica its id names.
  if (!replica.ok() || d.key.field != kBindingField || s.markers.empty() || !s.elements.empty() ||
      !s.counter.empty() || !s.counter_base.empty())
    return engine::Admission::kRefuse;
  for (const auto& [dot, m] : s.markers) {
    auto* bytes = std::get_if<engine::Bytes>(&m.value);
    if (m.kind != engine::Kind::kRegister || !bytes) return engine::Admission::kRefuse;
    auto b = DecodeBinding(bytes->data);
    if (!b.ok() || !Verified(*b, *replica)) return engine::Admission::kRefuse;
  }
  return engine::Admission::kAccept;
}

Status StoreBinding(engine::Replica& r, const engine::ReplicaId& replica, const Binding& b) {
  if (!Verified(b, replica)) return Status::Invalid("not a binding of replica " + replica.Hex());
  TANDEM_ASSIGN_OR_RETURN(auto held, FindBinding(r, replica));
  if (held) return Status::Ok();
  return r.Put(kBindingsCollection, replica.Hex(),
               {{kBindingField, engine::Value(engine::Bytes{EncodeBinding(b)})}});
}

Result<std::map<engine::ReplicaId, std::string>> ReadBindings(engine::Replica& r) {
  std::map<engine::ReplicaId, std::string> out;
  TANDEM_RETURN_IF_ERROR(r.Scan(kBindingsCollection, "", [&](const engine::Record& rec) {
    auto replica = engine::ReplicaId::FromHex(rec.id);
    auto b = BindingOf(rec);
    // Admission checks every binding that arrives; this check also covers what an
    // earlier build stored unchecked, or a damaged store.
    if (replica.ok() && b && Verified(*b, *replica)) out[*replica] = DeviceId(b->device);
    return true;
  }));
  return out;
}

Result<std::optional<Binding>> FindBinding(engine::Replica& r, const engine::ReplicaId& replica) {
  auto rec = r.Get(kBindingsCollection, replica.Hex());
  if (!rec.ok()) {
    if (rec.status().code() == Code::kNotFound) return std::optional<Binding>();
    return rec.status();
  }
  auto b = BindingOf(*rec);
  if (b && Verified(*b, replica)) return b;
  return std::optional<Binding>();
}

Result<std::vector<Binding>> LoadOwnBindings(const std::string& path) {
  std::vector<Binding> out;
  auto data = tandem::files::ReadSmall(path, size_t{1} << 20);
  if (!data.ok()) {
    if (data.status().code() == Code::kNotFound) return out;
    return data.status();
  }
  size_t at = 0;
  while (at < data->size()) {
    size_t end = data->find('\n', at);
    if (end == std::string::npos) end = data->size();
    const std::string line = data->substr(at, end - at);
    at = end + 1;
    if (line.empty()) continue;
    std::string bytes(kBindingBytes, '\0');
    size_t n = 0;
    // A damaged line (a torn write cannot make one: the file is replaced whole) is
    // skipped: its replica is then as unbound as one from before bindings.
    if (sodium_hex2bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), line.data(),
                       line.size(), nullptr, &n, nullptr) != 0 ||
        n != kBindingBytes)
      continue;
    if (auto b = DecodeBinding(bytes); b.ok()) out.push_back(*b);
  }
  return out;
}

std::function<engine::ReplicaId()> BoundIds(Identity self, std::string path) {
  return [self = std::move(self), path = std::move(path)] {
    engine::ReplicaId id;
    const Binding b = NewBinding(self, &id);
    // The file is rewritten whole (atomically, durably) with the new line at the end.
    auto held = tandem::files::ReadSmall(path, size_t{1} << 20);
    if (held.ok() || held.status().code() == Code::kNotFound) {
      std::string text = held.ok() ? std::move(held).value() : std::string();
      if (!text.empty() && text.back() != '\n') text += '\n';
      if (tandem::files::WriteAtomic(path, text + BindingLine(b)).ok()) return id;
    }
    do randombytes_buf(id.bytes.data(), id.bytes.size());
    while (id.IsZero());
    return id;
  };
}

namespace {

// Whether the id `b` binds is one r uses: its current id, or one that issued events.
bool Used(const Binding& b, const engine::ReplicaMeta& meta) {
  const engine::ReplicaId id = DerivedReplicaId(b.device, b.salt);
  return id == meta.id || meta.vv.Get(id) > 0;
}

// Rewrites `path` without the bindings of ids r never used (taken by a store transaction
// that was then retried or abandoned), so the file does not grow with every retry. Under
// r's write lock, which every store transaction taking an id holds while it saves it:
// no id being taken meanwhile is lost.
Status PruneOwnBindings(engine::Replica& r, const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(auto lock, r.store().BeginWrite());
  engine::ReplicaMeta meta;
  TANDEM_RETURN_IF_ERROR(lock->GetMeta(&meta));
  TANDEM_ASSIGN_OR_RETURN(auto own, LoadOwnBindings(path));
  std::string kept;
  for (const auto& b : own)
    if (Used(b, meta)) kept += BindingLine(b);
  return tandem::files::WriteAtomic(path, kept);  // the transaction, never committed, ends
}

}  // namespace

Result<bool> PublishOwnBinding(engine::Replica& r, const std::string& path) {
  if (path.empty()) return false;
  TANDEM_ASSIGN_OR_RETURN(auto meta, r.Meta());
  TANDEM_ASSIGN_OR_RETURN(auto own, LoadOwnBindings(path));
  if (!std::all_of(own.begin(), own.end(), [&](const Binding& b) { return Used(b, meta); })) {
    TANDEM_RETURN_IF_ERROR(PruneOwnBindings(r, path));
    TANDEM_ASSIGN_OR_RETURN(meta, r.Meta());
    TANDEM_ASSIGN_OR_RETURN(own, LoadOwnBindings(path));
  }
  // The current id, and every earlier one that issued events (an id replaced before
  // its binding went out: two rekeys between publications, say).
  for (const auto& b : own) {
    const engine::ReplicaId id = DerivedReplicaId(b.device, b.salt);
    if ((id != meta.id && meta.vv.Get(id) == 0) || !Verified(b, id)) continue;
    TANDEM_RETURN_IF_ERROR(StoreBinding(r, id, b));
  }
  TANDEM_ASSIGN_OR_RETURN(auto held, FindBinding(r, meta.id));
  return held.has_value();
}

}  // namespace tandem::net
