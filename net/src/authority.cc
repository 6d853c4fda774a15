#include "tandem/net/authority.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <queue>
#include <set>
#include <tuple>

#include "tandem/net/group.h"  // Hex

namespace tandem::net {
namespace {

using Key = std::array<uint8_t, 32>;

std::string Describe(const Statement& s) {
  switch (s.kind) {
    case StatementKind::kAdd:
      return std::string("add ") + DeviceId(s.subject) + " as " + RoleName(s.role);
    case StatementKind::kRole:
      return std::string("make ") + DeviceId(s.subject) + " " + RoleName(s.role);
    case StatementKind::kRevoke:
      return "revoke " + DeviceId(s.subject);
    case StatementKind::kPermit:
      return std::string("permit ") + LevelName(s.level) + " on " + s.collection + " to " +
             (s.ForRole() ? std::string(RoleName(s.role)) + "s" : DeviceId(s.subject));
    case StatementKind::kRekey:
      return "a new group key for " + std::to_string(s.sealed.size()) + " devices";
    case StatementKind::kRequireBindings:
      if (s.payload.empty()) return "require bound replicas";
      break;
  }
  if (IsExtension(s.kind)) return "a statement of kind " + std::to_string(static_cast<int>(s.kind));
  return "?";
}

// The precedence Authority::LevelOf states, over `find(collection, for_device)`.
template <typename Find>
Level ResolveLevel(Role role, const std::string& collection, Find find) {
  for (const std::string& c : {collection, std::string(kAnyCollection)})
    for (bool for_device : {true, false})
      if (std::optional<Level> l = find(c, for_device)) return *l;
  return role == Role::kReader ? Level::kRead : Level::kWrite;
}

// The standing of every device a sequence of statements establishes.
struct State {
  const Key* root = nullptr;
  std::map<Key, Standing> by_key;
  std::map<Key, size_t> last_role;  // the statement that last set a device's role
  // Permits by (collection, device key or zero, role if for a role): those no later one
  // replaced (concurrent permits: each a head), each with its level, signer, index, and
  // the signer's rank when it signed. A permit on a device binds it only while the device
  // ranks below that: promoted as high, it is out of the signer's reach, as it is for
  // every other action of the signer.
  struct Head {
    Level level;
    std::string by;
    size_t index;
    int rank;
  };
  using Held = std::vector<Head>;
  bool Binds(const Head& h, const Key& subject) const { return h.rank > Rank(subject); }
  // The permit in force: of the heads that bind the device (for a role's permit, all),
  // the lowest level; of equal ones, the highest-ranked signer's (it binds the longest),
  // then the one applied last. None if none binds.
  const Head* InForce(const Held& held, const Key* device) const {
    const Head* out = nullptr;
    for (const Head& h : held) {
      if (device && !Binds(h, *device)) continue;
      if (!out || h.level < out->level || (h.level == out->level && h.rank >= out->rank)) out = &h;
    }
    return out;
  }
  std::map<std::tuple<std::string, Key, int>, Held> permits;
  std::set<std::string> names;  // the collections permits name, kAnyCollection included
  std::optional<size_t> rekey;  // the last rekey applied
  bool bindings = false;        // a kRequireBindings applied

  Level LevelIn(const Key& k, const std::string& collection) const {
    if (k == *root) return Level::kWrite;
    auto it = by_key.find(k);
    if (it == by_key.end() || it->second.revoked) return Level::kNone;
    const Role role = it->second.role;
    if (collection == kSchemasCollection)
      return role >= Role::kAdmin ? Level::kWrite : Level::kRead;
    return ResolveLevel(role, collection, [&](const std::string& c, bool for_device) {
      auto p = permits.find(for_device ? std::make_tuple(c, k, -1)
                                       : std::make_tuple(c, Key{}, static_cast<int>(role)));
      const Head* h = p == permits.end() ? nullptr : InForce(p->second, for_device ? &k : nullptr);
      if (!h) return std::optional<Level>();
      return std::optional<Level>(h->level);
    });
  }

  int Rank(const Key& k) const {
    if (k == *root) return kFounderRank;
    auto it = by_key.find(k);
    if (it == by_key.end() || it->second.revoked) return -1;
    return static_cast<int>(it->second.role);
  }
};

class Judge {
 public:
  Judge(const Key& root, std::vector<Statement> st, std::vector<StatementId> ids)
      : root_(root), st_(std::move(st)), ids_(std::move(ids)) {}

  // Indexes of the statements in an order that respects ancestry (ties by id), the rest
  // (an ancestor missing) left out; fills past_.
  void Order() {
    std::map<StatementId, size_t> index;
    for (size_t i = 0; i < ids_.size(); ++i) index.emplace(ids_[i], i);
    const size_t n = st_.size();
    std::vector<std::vector<size_t>> children(n);
    std::vector<size_t> missing(n, 0);
    std::vector<bool> orphan(n, false);
    parents_.assign(n, {});
    for (size_t i = 0; i < n; ++i)
      for (const auto& p : st_[i].parents) {
        auto it = index.find(p);
        if (it == index.end()) {
          orphan[i] = true;
          continue;
        }
        parents_[i].push_back(it->second);
        children[it->second].push_back(i);
        ++missing[i];
      }
    // Kahn's algorithm, smallest id first among the ready.
    auto later = [&](size_t a, size_t b) { return ids_[a] > ids_[b]; };
    std::priority_queue<size_t, std::vector<size_t>, decltype(later)> ready(later);
    for (size_t i = 0; i < n; ++i)
      if (missing[i] == 0 && !orphan[i]) ready.push(i);
    while (!ready.empty()) {
      size_t i = ready.top();
      ready.pop();
      order_.push_back(i);
      for (size_t c : children[i])
        if (--missing[c] == 0 && !orphan[c]) ready.push(c);
    }
    words_ = (n + 63) / 64;
    past_.assign(n, std::vector<uint64_t>(words_, 0));
    for (size_t i : order_)
      for (size_t p : parents_[i]) {
        for (size_t w = 0; w < words_; ++w) past_[i][w] |= past_[p][w];
        past_[i][p / 64] |= uint64_t{1} << (p % 64);
      }
  }

  const std::vector<size_t>& order() const { return order_; }

  bool Before(size_t a, size_t b) const { return (past_[b][a / 64] >> (a % 64)) & 1; }
  bool Concurrent(size_t a, size_t b) const { return a != b && !Before(a, b) && !Before(b, a); }

  void Apply(State* s, size_t i) const {
    const Statement& x = st_[i];
    // The devices whose permissions it may change, and their levels before it.
    std::vector<Key> concerned;
    if (x.kind == StatementKind::kPermit && x.ForRole()) {
      for (const auto& [k, d] : s->by_key)
        if (!d.revoked && d.role == x.role) concerned.push_back(k);
    } else if (x.kind != StatementKind::kRevoke && x.kind != StatementKind::kRekey &&
               !IsExtension(x.kind)) {
      concerned.push_back(x.subject);
    }
    // A collection named for the first time had the history of those no permit names:
    // where their write permission is away, and what was written while it was.
    if (x.kind == StatementKind::kPermit && s->names.insert(x.collection).second)
      for (auto& [k, d] : s->by_key) {
        if (auto any = d.write_cutoffs.find(kAnyCollection); any != d.write_cutoffs.end())
          d.write_cutoffs[x.collection] = any->second;
        if (d.write_taken.count(kAnyCollection)) d.write_taken.insert(x.collection);
        if (auto any = d.write_windows.find(kAnyCollection); any != d.write_windows.end())
          d.write_windows[x.collection] = any->second;
      }
    s->names.insert(kAnyCollection);
    s->names.insert(kSchemasCollection);
    std::map<Key, std::map<std::string, Level>> before;
    std::set<Key> added;  // new: had all, as far as cutoffs go, but never wrote
    for (const Key& k : concerned) {
      if (!s->by_key.count(k)) added.insert(k);
      for (const auto& c : s->names)
        before[k][c] = added.count(k) ? Level::kWrite : s->LevelIn(k, c);
    }
    Effect(s, i);
    for (const Key& k : concerned) {
      auto it = s->by_key.find(k);
      if (it == s->by_key.end() || it->second.revoked) continue;
      Standing& d = it->second;
      auto& starts = d.write_cutoffs;
      for (const auto& c : s->names) {
        if (s->LevelIn(k, c) == Level::kWrite) {
          auto away = starts.find(c);
          if (away == starts.end()) continue;
          // Back: what it wrote from the cutoff to what this statement recorded of it
          // stays refused (0 where either does not name a replica; the statement may name
          // other devices' replicas too, which WriteLimitsOf leaves out).
          std::map<engine::ReplicaId, uint64_t> bounds = away->second;
          for (const auto& [r, n] : x.cutoff) bounds.try_emplace(r, 0);
          const bool taken = d.write_taken.erase(c) > 0;
          auto& windows = d.write_windows[c];
          for (const auto& [r, after] : bounds) {
            auto upto = x.cutoff.find(r);
            if (upto == x.cutoff.end() || upto->second <= after) continue;
            AddEventWindow(&windows[r], {after, upto->second, taken});
          }
          starts.erase(away);
        } else if (before[k][c] == Level::kWrite) {
          starts[c] = x.cutoff;  // taken away now
          if (!added.count(k)) d.write_taken.insert(c);
        } else if (!starts.count(c)) {
          // Away all along, under the permission of the collections no permit named.
          auto any = starts.find(kAnyCollection);
          starts[c] = any == starts.end() ? std::map<engine::ReplicaId, uint64_t>{} : any->second;
          if (d.write_taken.count(kAnyCollection)) d.write_taken.insert(c);
        }
      }
      // Each named collection keeps its own windows (none, if its permission never came
      // back), so that only the collections no permit names read those of kAnyCollection.
      if (!d.write_windows.empty())
        for (const auto& c : s->names) d.write_windows.try_emplace(c);
    }
  }

  void Effect(State* s, size_t i) const {
    const Statement& x = st_[i];
    const std::string by = DeviceId(x.signer);
    if (x.kind == StatementKind::kPermit) {
      const auto key = std::make_tuple(x.collection, x.ForRole() ? Key{} : x.subject,
                                       x.ForRole() ? static_cast<int>(x.role) : -1);
      // It replaces those it descends from; concurrent ones stay beside it (the lower
      // level is in force: State::InForce).
      State::Held& held = s->permits[key];
      std::erase_if(held, [&](const State::Head& h) { return Before(h.index, i); });
      held.push_back({x.level, by, i, s->Rank(x.signer)});
      return;
    }
    if (x.kind == StatementKind::kRekey) {
      s->rekey = i;
      return;
    }
    if (x.kind == StatementKind::kRequireBindings) {
      s->bindings = true;
      return;
    }
    auto [it, fresh] = s->by_key.try_emplace(x.subject);
    Standing& d = it->second;
    if (fresh) {
      d.key = x.subject;
      d.device = DeviceId(x.subject);
    }
    switch (x.kind) {
      case StatementKind::kAdd:
      case StatementKind::kRole: {
        if (d.revoked) break;  // for good
        if (x.kind == StatementKind::kRole && fresh) {
          s->by_key.erase(it);
          break;
        }
        Role role = x.role;
        auto last = s->last_role.find(x.subject);
        if (last != s->last_role.end() && Concurrent(last->second, i))
          role = std::min(role, d.role);  // of concurrent changes, the lower role holds
        d.role = role;
        d.granted_by = by;
        d.granted_ms = x.time_ms;
        s->last_role[x.subject] = i;
        break;
      }
      case StatementKind::kRevoke:
        if (!d.revoked) {
          d.revoked = true;
          d.revoked_by = by;
          d.revoked_ms = x.time_ms;
        }
        for (const auto& [r, n] : x.cutoff) {
          auto c = d.cutoff.find(r);
          d.cutoff[r] = c == d.cutoff.end() ? n : std::min(c->second, n);
        }
        break;
      case StatementKind::kPermit:
      case StatementKind::kRekey:
      case StatementKind::kRequireBindings:
        break;  // above
    }
  }

  // What the counted ancestors of statement i establish.
  State Past(size_t i, const std::vector<bool>& counted) const {
    State s;
    s.root = &root_;
    for (size_t j : order_) {
      if (j == i) break;
      if (counted[j] && Before(j, i)) Apply(&s, j);
    }
    return s;
  }

  // Why statement i may not be made in `s`, or empty.
  std::string Unauthorized(size_t i, const State& s) const {
    const Statement& x = st_[i];
    // Ordered all the same, so that what came after it counts.
    if (IsExtension(x.kind) && !(x.kind == StatementKind::kRequireBindings && x.payload.empty()))
      return "this version of tandem does not know its kind: it has no effect here (upgrade to "
             "apply it)";
    const int rank = s.Rank(x.signer);
    if (rank < 0)
      return s.by_key.count(x.signer) ? "its signer had been revoked"
                                      : "its signer was not a member";
    if (x.kind == StatementKind::kRekey)
      return rank < static_cast<int>(Role::kAdmin) ? "only admins and owners change the group key"
                                                   : "";
    if (x.kind == StatementKind::kRequireBindings)
      return rank < kFounderRank ? "only the group's founder requires bound replicas" : "";
    if (x.subject == x.signer) return "a device cannot act on itself";
    const int subject = s.Rank(x.subject);
    auto known = s.by_key.find(x.subject);
    switch (x.kind) {
      case StatementKind::kAdd:
        if (rank < static_cast<int>(Role::kAdmin)) return "only admins and owners add devices";
        if (known != s.by_key.end() && known->second.revoked) return "the device was revoked";
        if (static_cast<int>(x.role) >= rank) return "it grants a role as high as its signer's";
        if (subject >= rank) return "the device's role is as high as its signer's";
        return {};
      case StatementKind::kRole:
        if (subject < 0) return "the device is not a member";
        if (subject >= rank) return "the device's role is as high as its signer's";
        if (static_cast<int>(x.role) >= rank) return "it grants a role as high as its signer's";
        return {};
      case StatementKind::kRevoke:
        if (rank < static_cast<int>(Role::kAdmin)) return "only admins and owners revoke";
        if (subject >= rank) return "the device's role is as high as its signer's";
        return {};
      case StatementKind::kPermit:
        if (rank < static_cast<int>(Role::kAdmin)) return "only admins and owners set permissions";
        if (x.ForRole())
          return static_cast<int>(x.role) >= rank ? "it sets permissions of a role as high as "
                                                    "its signer's"
                                                  : "";
        if (subject < 0) return "the device is not a member";
        if (subject >= rank) return "the device's role is as high as its signer's";
        return {};
      case StatementKind::kRekey:
      case StatementKind::kRequireBindings:
        return {};
    }
    return "unknown kind";
  }

  // Why a counted statement concurrent with i voids it, or empty.
  std::string Voided(size_t i, const State& s, const std::vector<bool>& counted) const {
    const Statement& x = st_[i];
    const int rank = s.Rank(x.signer);
    for (size_t j : order_) {
      if (!counted[j] || !Concurrent(i, j)) continue;
      const Statement& y = st_[j];
      if (y.subject != x.signer || y.kind == StatementKind::kPermit ||
          y.kind == StatementKind::kRekey || IsExtension(y.kind))
        continue;
      if (y.kind == StatementKind::kRevoke)
        return "its signer was revoked concurrently (by " + DeviceId(y.signer) + ")";
      if (static_cast<int>(y.role) < rank)
        return "its signer was demoted concurrently (by " + DeviceId(y.signer) + ")";
    }
    return {};
  }

  Authority Run(std::vector<Refused> malformed) {
    Order();
    const size_t n = st_.size();
    std::vector<bool> counted(n, false);
    for (size_t i : order_) counted[i] = true;
    std::vector<std::string> why(n);
    // First what its signer could not do; then, once every statement left was allowed
    // when it was made, what a concurrent revocation or demotion voids (only allowed
    // statements void others). Each round removes at least one statement, or ends.
    for (;;) {
      bool changed = false;
      for (size_t i : order_) {
        if (!counted[i]) continue;
        std::string w = Unauthorized(i, Past(i, counted));
        if (!w.empty()) {
          counted[i] = false;
          why[i] = std::move(w);
          changed = true;
        }
      }
      if (changed) continue;
      std::vector<bool> next = counted;
      for (size_t i : order_) {
        if (!counted[i]) continue;
        std::string w = Voided(i, Past(i, counted), counted);
        if (!w.empty()) {
          next[i] = false;
          why[i] = std::move(w);
          changed = true;
        }
      }
      counted = std::move(next);
      if (!changed) break;
    }
    Authority a;
    a.root = root_;
    a.refused = std::move(malformed);
    State s;
    s.root = &root_;
    for (size_t i : order_) {
      if (counted[i]) {
        Apply(&s, i);
        ++a.counted;
      } else {
        a.refused.push_back({HexId(ids_[i]), DeviceId(st_[i].signer), Describe(st_[i]), why[i]});
        a.void_rekey |= st_[i].kind == StatementKind::kRekey;
      }
    }
    a.waiting = n - order_.size();
    Standing founder;
    founder.key = root_;
    founder.device = DeviceId(root_);
    founder.role = Role::kOwner;
    founder.founder = true;
    // Founded no later than the first statement counted (the founder signs it): so that
    // the founder, like any member, holds collection back until it reports, rather than
    // counting as silent since 1970.
    for (size_t i : order_)
      if (counted[i] && st_[i].time_ms &&
          (!founder.granted_ms || st_[i].time_ms < founder.granted_ms))
        founder.granted_ms = st_[i].time_ms;
    a.devices[founder.device] = founder;
    for (auto& [k, d] : s.by_key)
      if (k != root_) a.devices[d.device] = std::move(d);
    a.bindings_required = s.bindings;
    if (s.rekey) {
      a.rekey = ids_[*s.rekey];
      a.rekey_copies = st_[*s.rekey].sealed;
    }
    for (const auto& [key, held] : s.permits) {
      const auto& [collection, subject, role] = key;
      const State::Head* h = s.InForce(held, role < 0 ? &subject : nullptr);
      if (!h) continue;  // none binds (State::Held)
      Permit p;
      p.collection = collection;
      if (role < 0) p.device = DeviceId(subject);
      p.role = role < 0 ? Role::kMember : static_cast<Role>(role);
      p.level = h->level;
      p.granted_by = h->by;
      a.permits.push_back(std::move(p));
    }
    // Heads among the counted only (those no other counted statement descends from): a
    // statement that does not count has no effect, so nothing need come after it, and one
    // that older versions cannot read (an extension, even one this version counts) must
    // not become an ancestor of what an honest device signs next, nor keep its own parents
    // from being heads.
    std::vector<uint64_t> before_counted(words_, 0);  // ancestors of counted statements
    for (size_t i : order_)
      if (counted[i] && !IsExtension(st_[i].kind))
        for (size_t w = 0; w < words_; ++w) before_counted[w] |= past_[i][w];
    for (size_t i : order_)
      if (counted[i] && !IsExtension(st_[i].kind) && !((before_counted[i / 64] >> (i % 64)) & 1))
        a.heads.push_back(ids_[i]);
    std::sort(a.heads.begin(), a.heads.end());
    return a;
  }

 private:
  const Key& root_;
  std::vector<Statement> st_;
  std::vector<StatementId> ids_;
  std::vector<std::vector<size_t>> parents_;
  std::vector<size_t> order_;
  size_t words_ = 0;
  std::vector<std::vector<uint64_t>> past_;
};

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kReader:
      return "reader";
    case Role::kMember:
      return "member";
    case Role::kAdmin:
      return "admin";
    case Role::kOwner:
      return "owner";
  }
  return "?";
}

SealedKey SealGroupKey(const Key& key, const Key& member) {
  SealedKey out;
  out.device = member;
  Key x;
  if (crypto_sign_ed25519_pk_to_curve25519(x.data(), member.data()) != 0) {
    out.sealed.fill(0);  // not a valid key: a copy nobody opens
    return out;
  }
  crypto_box_seal(out.sealed.data(), key.data(), key.size(), x.data());
  return out;
}

std::optional<Key> OpenGroupKey(const SealedKey& copy, const Identity& self) {
  if (copy.device != self.public_key) return std::nullopt;
  Key xpk;
  std::array<uint8_t, 32> xsk;
  if (crypto_sign_ed25519_pk_to_curve25519(xpk.data(), self.public_key.data()) != 0 ||
      crypto_sign_ed25519_sk_to_curve25519(xsk.data(), self.secret_key.data()) != 0)
    return std::nullopt;
  Key key;
  const int rc = crypto_box_seal_open(key.data(), copy.sealed.data(), copy.sealed.size(),
                                      xpk.data(), xsk.data());
  sodium_memzero(xsk.data(), xsk.size());
  if (rc != 0) return std::nullopt;
  return key;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kNone:
      return "none";
    case Level::kRead:
      return "read";
    case Level::kWrite:
      return "write";
  }
  return "?";
}

std::optional<Level> ParseLevel(std::string_view s) {
  for (Level l : {Level::kNone, Level::kRead, Level::kWrite})
    if (s == LevelName(l)) return l;
  return std::nullopt;
}

bool Statement::ForRole() const {
  return kind == StatementKind::kPermit &&
         std::all_of(subject.begin(), subject.end(), [](uint8_t b) { return b == 0; });
}

std::optional<Role> ParseRole(std::string_view s) {
  for (Role r : {Role::kReader, Role::kMember, Role::kAdmin, Role::kOwner})
    if (s == RoleName(r)) return r;
  return std::nullopt;
}

std::string HexId(const StatementId& id) { return Hex(id); }

const Standing* Authority::Find(const std::string& device) const {
  auto it = devices.find(device);
  return it == devices.end() ? nullptr : &it->second;
}

int Authority::Rank(const std::string& device) const {
  const Standing* s = Find(device);
  if (!s || s->revoked) return -1;
  return s->founder ? kFounderRank : static_cast<int>(s->role);
}

Level Authority::LevelOf(const std::string& device, const std::string& collection) const {
  const Standing* s = Find(device);
  if (!s || s->revoked) return Level::kNone;
  if (s->founder) return Level::kWrite;
  if (collection == kSchemasCollection)
    return s->role >= Role::kAdmin ? Level::kWrite : Level::kRead;
  return ResolveLevel(s->role, collection, [&](const std::string& c, bool for_device) {
    for (const auto& p : permits)
      if (p.collection == c &&
          (for_device ? p.device == device : p.device.empty() && p.role == s->role))
        return std::optional<Level>(p.level);
    return std::optional<Level>();
  });
}

bool Authority::CountsEveryWrite(const std::string& device, const std::string& collection) const {
  const Standing* s = Find(device);
  return LevelOf(device, collection) == Level::kWrite && s && !s->WroteWhileTaken(collection);
}

bool Authority::WritesEverywhere(const std::string& device) const {
  const Standing* s = Find(device);
  if (!s || s->revoked) return false;
  if (s->founder) return true;
  // Below admin no device writes the schemas; a build that does anyway could as well
  // state a collected vector it never had (docs/design.md#collection).
  for (const auto& [c, cutoff] : s->write_cutoffs)
    if (c != kSchemasCollection) return false;
  for (const auto& [c, windows] : s->write_windows)
    if (c != kSchemasCollection && s->WroteWhileTaken(c)) return false;
  // Every collection a permit names, and the others (kAnyCollection), as LevelOf judges.
  if (LevelOf(device, kAnyCollection) != Level::kWrite) return false;
  for (const auto& p : permits)
    if (p.collection != kSchemasCollection && LevelOf(device, p.collection) != Level::kWrite)
      return false;
  return true;
}

const std::map<engine::ReplicaId, uint64_t>& Standing::WriteCutoff(
    const std::string& collection) const {
  static const std::map<engine::ReplicaId, uint64_t> kNone;
  auto it = write_cutoffs.find(collection);
  if (it == write_cutoffs.end()) it = write_cutoffs.find(kAnyCollection);
  return it == write_cutoffs.end() ? kNone : it->second;
}

const std::map<engine::ReplicaId, std::vector<EventWindow>>& Standing::WriteWindows(
    const std::string& collection) const {
  static const std::map<engine::ReplicaId, std::vector<EventWindow>> kNone;
  auto it = write_windows.find(collection);
  if (it == write_windows.end()) it = write_windows.find(kAnyCollection);
  return it == write_windows.end() ? kNone : it->second;
}

void AddEventWindow(std::vector<EventWindow>* windows, EventWindow w) {
  std::vector<EventWindow> out;
  for (const EventWindow& v : *windows) {
    if (v.upto < w.after || w.upto < v.after) {
      out.push_back(v);
      continue;
    }
    w.after = std::min(w.after, v.after);
    w.upto = std::max(w.upto, v.upto);
    w.taken = w.taken || v.taken;
  }
  out.push_back(w);
  std::sort(out.begin(), out.end(),
            [](const EventWindow& x, const EventWindow& y) { return x.after < y.after; });
  *windows = std::move(out);
}

bool Standing::WroteWhileTaken(const std::string& collection) const {
  for (const auto& [r, windows] : WriteWindows(collection))
    for (const EventWindow& w : windows)
      if (w.taken) return true;
  return false;
}

Authority Evaluate(const Key& root, const std::vector<std::string>& statements,
                   std::set<StatementId>* verified) {
  std::vector<Refused> malformed;
  std::vector<Statement> st;
  std::vector<StatementId> ids;
  std::set<StatementId> seen;
  for (const auto& enc : statements) {
    StatementId id = IdOf(enc);
    if (!seen.insert(id).second) continue;
    auto s = DecodeStatement(enc);
    if (!s.ok()) {
      malformed.push_back({HexId(id), "", "?", s.status().message()});
      continue;
    }
    if ((!verified || !verified->count(id)) && !VerifyStatement(*s, root)) {
      malformed.push_back({HexId(id), DeviceId(s->signer), Describe(*s),
                           "not signed by its signer for this group"});
      continue;
    }
    if (verified) verified->insert(id);
    st.push_back(std::move(s).value());
    ids.push_back(id);
  }
  return Judge(root, std::move(st), std::move(ids)).Run(std::move(malformed));
}

}  // namespace tandem::net
