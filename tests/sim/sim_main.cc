// Deterministic network simulation of sync.
//
// N replicas (3-8) with real LMDB storage in temporary directories exchange messages
// through a simulated network: connections deliver in order (as TCP does) but at random
// moments relative to each other, are cut at random (losing what is in flight), suffer
// injected duplication and reordering (which the sessions must detect and refuse), and
// replicas crash and restart (reopening their store, losing every connection). Replicas
// are also copied (a directory copied while in use: the copy must take a new replica id
// when it opens and both go on writing) and rolled back to an earlier snapshot of their
// files, either as a new file (caught when it opens) or in place, same inode (caught at
// its next sync, which must end the session and take a new id before it writes again).
// Every message crosses the Cap'n Proto encoding. Some values are large enough that
// concurrent writes make field states that travel in pieces, and files are attached as
// blobs (a few contents, so that blobs are shared), fetched and collected. Time is simulated and
// everything derives from the seed.
//
// Permissions, as the group's statements set them (every receiver admits through the
// same net::AdmitWrite as a node): in some seeds one device is a reader that writes
// anyway (a modified build: puts, increments and adds, in every collection) and one a
// till whose permission to write "prices" is withdrawn midway, with the write cutoff of
// what a member held of it then, while it may still hold writes nobody has; in half of
// those seeds it is given back later, recording everything the till's replicas had issued
// by then (as a signer that synced with the till first would): what it wrote meanwhile
// stays refused everywhere, whether judged before or after, and what it writes since
// counts; every replica either device takes later (a copy, a rollback) is limited too.
//
// With TANDEM_SIM_LIAR=1, in some seeds one member (never node 0) lies in every CaughtUp
// it sends: it claims to hold every event every other device has issued. Its peers then
// do not send it those events (what it lacks it claimed to hold: its own replica is left
// out of the comparisons); what must hold is that the honest ones still converge. A
// receiver takes a third replica's entry only as far as the contexts of what it holds or
// was delivered bear it out; contexts are version vectors, which cover events that
// touched other fields, so that is a bound, not a proof (docs/design.md, Sync, step 5).
// What the lie made honest replicas skip, comparing states (Digests) finds at equal
// version vectors, and a rebase mends (without it, seeds 6, 71, 118 and 137 diverge).
//
// With TANDEM_SIM_NARROW=1, in most seeds one member (never node 0, the liar or a limited
// device) never takes "files", and takes "inv" in some of its sessions only while the
// faults go on (as when a device's read permission is taken away and given back): its
// sessions narrow and widen, each filtered (its own accept filter naming what it takes, or
// its peer's send filter what it leaves out, or, as between older builds, the list the
// peer's send_older names). Once healing, it takes "inv" in every session
// and must hold all of it, as every other collection but "files", as the others do.
//
// After the faults stop and every pair syncs: all dumps of the replicas of members in
// good standing are identical, their version vectors equal, every session reported
// caught up, and a reference model agrees on the meaning (counter sums, register winners
// among the writes that were allowed, sets: an element is there if one of its allowed
// adds was removed by no removal, deletion or later add of it; what each of those removed
// is read from its replica's state just before), and every blob a field references is on
// every replica, whole and as attached; the limited devices hold everything the others
// have, and no one else holds a write they were refused.
//
//   tandem_sim --seed N                 one seed (replay)
//   tandem_sim --seeds N [--first K]    N seeds from K (default 1)
//   TANDEM_SIM_CHECK_CLAIMS=1 ...       also check after every step that each version
//                                       vector claims only events whose effects the
//                                       replica holds (slow; it found the first bug)
//   TANDEM_SIM_DELETE_TAGS=1 ...        also delete "tags" records, and collect on every
//                                       node at once, more often
//   TANDEM_SIM_NARROW=1 ...             a member whose sessions leave collections out
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tandem/engine/sync.h"
#include "tandem/net/group.h"
#include "tandem/net/wire.h"
#include "tandem/storage/lmdb_store.h"
#include "tandem/storage/replica.h"

namespace {

using namespace tandem;
using namespace tandem::engine;
namespace fs = std::filesystem;

struct Failure {
  std::string what;
};
#define SIM_CHECK(cond, msg)                                                                   \
  do {                                                                                         \
    if (!(cond))                                                                               \
      throw Failure{std::string(msg) + " (" #cond ", line " + std::to_string(__LINE__) + ")"}; \
  } while (0)

// What a device may write: everything; nothing (a reader that writes anyway); or, once
// its permission is withdrawn, everything but "prices" (a till).
enum class Role { kMember, kReader, kTill };

struct Node {
  std::string dir;
  Role role = Role::kMember;
  std::unique_ptr<Replica> replica;
  uint64_t clock_ms = 0;
  int64_t skew = 0;
  std::string snapshot;             // a copy of data.mdb taken earlier; empty if none
  ReplicaId snapshot_id;            // the replica id when it was taken
  std::optional<ReplicaId> frozen;  // rolled back in place: no writes while still this id
};

struct Conn {
  int a = 0, b = 0;
  std::unique_ptr<Session> sa, sb;
  std::deque<std::string> to_a, to_b;
  bool faulted = false;     // duplication or reordering was injected
  net::EncodeOptions wire;  // batch layout: rows or columns, chosen per connection
  bool rebased_a = false, rebased_b = false;  // counted already
  bool differ_a = false, differ_b = false;    // the same for differences of state
  bool limited = false;                       // withholds states needing pieces (Connect)
  Status error;                               // why a session of it ended
  uint64_t* withheld = nullptr;               // where its sessions' withheld fields add up
  uint64_t* joined = nullptr;                 // and their states joined a part at a time
  uint64_t* decoded = nullptr;                // or decoded whole
  ~Conn() {
    if (withheld) *withheld += sa->stats().fields_withheld + sb->stats().fields_withheld;
    if (joined) *joined += sa->stats().pieces_joined + sb->stats().pieces_joined;
    if (decoded) *decoded += sa->stats().pieces_decoded + sb->stats().pieces_decoded;
  }
};

struct PutRecord {
  Hlc hlc;
  ReplicaId replica;
  uint64_t seq;
  Value value;
};

class Sim {
 public:
  explicit Sim(uint64_t seed) : rng_(seed) {
    base_ = fs::temp_directory_path() /
            ("tandem-sim-" + std::to_string(seed) + "-" + std::to_string(::getpid()));
    fs::remove_all(base_);
    fs::create_directories(base_);
    n_ = 3 + static_cast<int>(rng_() % 6);
    for (int i = 0; i < n_; ++i) {
      Node nd;
      nd.dir = (base_ / ("r" + std::to_string(i))).string();
      nd.skew = static_cast<int64_t>(rng_() % 200) - 100;
      storage::Options o = Opts();
      ReplicaId id;
      for (auto& b : id.bytes) b = static_cast<uint8_t>(rng_());
      o.replica_id = id;
      auto created = storage::CreateStore(nd.dir, o);
      SIM_CHECK(created.ok(), created.status().ToString());
      nodes_.push_back(std::move(nd));
      Open(i, std::move(created).value());
    }
    // Roles come from a generator of their own: a seed without them runs as it did.
    std::mt19937_64 roles(seed ^ 0x9e3779b97f4a7c15ull);
    if (roles() % 2) nodes_[1].role = Role::kReader;
    if (roles() % 2) {
      nodes_[2].role = Role::kTill;
      withdraw_fraction_ = 0.25 + 0.5 * static_cast<double>(roles() % 1000) / 1000;
    }
    // The liar is a member, never node 0 (the reference the others are compared with).
    if (roles() % 2 && std::getenv("TANDEM_SIM_LIAR"))
      for (int i = n_ - 1; i > 0 && liar_ < 0; --i)
        if (!Limited(i)) liar_ = i;
    // The narrow member: never node 0, a liar or a limited device (its own generator, so
    // that the rest of the seed runs as it would without it).
    if (roles() % 4 && std::getenv("TANDEM_SIM_NARROW")) {
      narrow_rng_.seed(seed ^ 0x2545f4914f6cdd1dull);
      for (int i = n_ - 1; i > 0 && narrow_ < 0; --i)
        if (!Limited(i) && i != liar_) narrow_ = i;
    }
    // The till's permission given back, in half the seeds that withdraw it.
    if (withdraw_fraction_ > 0 && roles() % 2)
      regrant_fraction_ =
          withdraw_fraction_ +
          (1 - withdraw_fraction_) * (0.2 + 0.6 * static_cast<double>(roles() % 1000) / 1000);
    NoteIds();
  }
  ~Sim() {
    conns_.clear();
    nodes_.clear();
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  void Run() {
    const int steps = 200 + static_cast<int>(rng_() % 400);
    const int withdraw_at =
        withdraw_fraction_ > 0 ? static_cast<int>(steps * withdraw_fraction_) : -1;
    const int regrant_at = regrant_fraction_ > 0 ? static_cast<int>(steps * regrant_fraction_) : -1;
    for (int s = 0; s < steps; ++s) {
      if (s == withdraw_at) Withdraw();
      if (s == regrant_at && regrant_at > withdraw_at) Regrant();
      now_ += rng_() % 20;
      const int pick = static_cast<int>(rng_() % 100);
      if (pick < 30) {
        LocalOp(static_cast<int>(rng_() % n_));
      } else if (pick < 38) {
        Connect(static_cast<int>(rng_() % n_), static_cast<int>(rng_() % n_));
      } else if (pick < 80) {
        DeliverOne();
      } else if (pick < 86) {
        PollOne();
      } else if (pick < 91) {
        CutOne();
      } else if (pick < 95) {
        InjectFault();
      } else if (pick < 96) {
        Crash(static_cast<int>(rng_() % n_));
      } else if (pick < 97) {
        const int i = static_cast<int>(rng_() % n_), what = static_cast<int>(rng_() % 4);
        if (what == 0)
          Clone(i);
        else if (what == 1)
          Snapshot(i);
        else
          Rollback(i);
      } else if (pick < 99) {
        Partition();
      } else {
        side_.clear();  // the partition heals
      }
      if (rng_() % (delete_tags_ ? 6 : 40) == 0) CollectOne(static_cast<int>(rng_() % n_));
      NoteIds();
      if (check_claims_)
        CheckClaims(("step " + std::to_string(s) + " pick " + std::to_string(pick)).c_str());
    }
    Heal();
    if (check_claims_) CheckClaims("heal");
    Verify();
  }

  uint64_t messages() const { return messages_; }
  uint64_t clones() const { return clones_; }
  uint64_t rollbacks() const { return rollbacks_; }
  uint64_t rollbacks_caught() const { return rollbacks_caught_; }
  uint64_t limited_rollbacks() const { return limited_rollbacks_; }
  uint64_t pieces() const { return pieces_; }
  uint64_t out_of_line() const { return out_of_line_; }
  uint64_t withheld() const { return withheld_; }
  uint64_t joined() const { return joined_; }
  uint64_t decoded() const { return decoded_; }
  uint64_t collected() const { return collected_; }
  uint64_t rebases() const { return rebases_; }
  uint64_t differences() const { return differences_; }
  uint64_t blobs_fetched() const { return blobs_fetched_; }
  uint64_t refused() const { return refused_writes_; }
  uint64_t regrants() const { return regranted_ ? 1 : 0; }
  uint64_t lies() const { return lies_; }

 private:
  storage::Options Opts() {
    storage::Options o;
    o.durability = storage::Durability::kRelaxed;  // the simulator crashes processes, not disks
    o.initial_map_bytes = 1 << 20;
    o.new_ids = [this] { return NewId(); };
    o.first_log_seq = [this](uint64_t newest) { return std::max(newest, now_ * 1000) + 1; };
    // Stale log entries removed all the time, a few at a time, wherever sessions stand.
    o.compact_floor = 2;
    o.compact_slice = 3;
    // Field values folded from `fresh` all the time, a few at a time.
    o.fold_floor = 3;
    o.fold_slice = 2;
    return o;
  }

  ReplicaId NewId() {
    ReplicaId id;
    for (auto& b : id.bytes) b = static_cast<uint8_t>(rng_());
    return id;
  }

  void Open(int i, std::unique_ptr<storage::LmdbStore> store) {
    Node& nd = nodes_[i];
    nd.replica = std::make_unique<Replica>(
        std::move(store),
        [this, i] {
          return static_cast<uint64_t>(static_cast<int64_t>(1'700'000'000'000 + now_) +
                                       nodes_[i].skew);
        },
        storage::Blake2b256Parts, [this] { return NewId(); });
  }

  void LocalOp(int i) {
    Replica& r = *nodes_[i].replica;
    if (nodes_[i].frozen) {
      // Rolled back in place: until a sync has shown it and it took a new id, a write
      // would reissue dots its peers hold. (That window is the documented limit.)
      if (r.Meta()->id == *nodes_[i].frozen) return;
      nodes_[i].frozen.reset();
    }
    const std::string rec = "r" + std::to_string(rng_() % 4);
    const int kind = static_cast<int>(rng_() % 8);
    // A reader's writes are all refused, and it only makes ones that bring an operation
    // of its own (a removal or deletion shows only in a context, and a member that relays
    // it with an operation of another member takes it: a documented limit).
    const bool reader = nodes_[i].role == Role::kReader;
    Status st;
    if (kind == 0) {  // counters: only increments, ever
      int64_t by = static_cast<int64_t>(rng_() % 21) - 10;
      st = r.Incr("inv", rec, "stock", by);
      if (st.ok() && !reader) stock_[rec] += by;
    } else if (kind == 1) {  // registers: only puts, ever
      Value v{static_cast<int64_t>(rng_() % 1000)};
      st = r.Put("prices", rec, {{"price", v}});
      if (st.ok()) {
        auto meta = r.Meta();
        SIM_CHECK(meta.ok(), "meta");
        puts_[rec].push_back({meta->clock, meta->id, meta->vv.Get(meta->id), v});
      }
    } else if (kind == 2) {  // sets: "keep-*" elements are never removed
      std::string e = "keep-" + std::to_string(rng_() % 5);
      st = AddTag(r, rec, e);
      if (st.ok() && !reader && !delete_tags_) kept_[rec].insert(e);
    } else if (kind == 3) {
      std::string e = "x" + std::to_string(rng_() % 3);
      const std::set<Dot> seen = TagDots(r, rec, nullptr);
      if (delete_tags_ && !reader && rng_() % 2 == 0) {
        st = r.Delete("tags", rec);
        if (st.ok()) removed_tags_.insert(seen.begin(), seen.end());
        if (st.code() == Code::kNotFound) st = Status::Ok();
      } else if (rng_() % 2 || reader) {
        st = AddTag(r, rec, e);
      } else {
        const std::set<Dot> of_e = TagDots(r, rec, &e);
        st = r.Remove("tags", rec, "t", Value{e});
        if (st.ok()) removed_tags_.insert(of_e.begin(), of_e.end());
      }
    } else if (kind == 7) {  // attachments: a few contents, so that blobs are shared
      const std::string& content = BlobContent(static_cast<int>(rng_() % 4));
      size_t at = 0;
      auto ref = r.Attach(
          "files", rec, "doc",
          [&](char* buf, size_t cap) -> Result<size_t> {
            const size_t n = std::min(cap, content.size() - at);
            std::memcpy(buf, content.data() + at, n);
            at += n;
            return n;
          },
          "");
      st = ref.status();
      if (ref.ok()) blobs_[ref->hash] = &content;
    } else {  // anything goes, including deletes and type conflicts
      const std::string f = (rng_() % 2) ? "a" : "b";
      switch (kind) {
        case 4:
          // Now and then a large value: concurrent ones make a field state larger than
          // any batch, which travels in pieces.
          if (rng_() % 6 == 0)
            st = r.Put("mixed", rec, {{f, Value{std::string(470'000 + rng_() % 50'000, 'L')}}});
          else
            st = r.Put("mixed", rec, {{f, Value{static_cast<int64_t>(rng_() % 9)}}});
          break;
        case 5:
          st = r.Incr("mixed", rec, f, 1);
          break;
        default:
          st = (rng_() % 2 && !reader) ? r.Delete("mixed", rec)
                                       : r.Add("mixed", rec, f, Value{true});
          if (st.code() == Code::kNotFound) st = Status::Ok();
      }
    }
    SIM_CHECK(st.ok(), "local op: " + st.ToString());
    RecordEvents(i);
  }

  // Every replica id a limited device has had, and the limits every receiver applies.
  void NoteIds() {
    for (const auto& nd : nodes_)
      if (nd.role != Role::kMember) limited_ids_[nd.replica->Meta()->id] = nd.role;
    net::WriteLimits l;
    for (const auto& [id, role] : limited_ids_) {
      if (role == Role::kReader) {
        l.others[id] = 0;
        l.named["prices"][id] = 0;
      } else if (withdrawn_) {
        // A replica the statement did not name (taken since) has no accepted write.
        auto c = till_cutoff_.find(id);
        l.named["prices"][id] = c == till_cutoff_.end() ? 0 : c->second;
      }
    }
    if (!till_windows_.empty()) l.named_windows["prices"] = till_windows_;
    limits_ = std::move(l);
  }

  // The till loses its permission to write "prices". The statement records, for each
  // of the till's replicas, the last write members hold (net::ComputeCutoff, as a node
  // does), and every replica learns it at once; the till goes on writing, and what it
  // wrote that no member has yet is refused. (A signer that knows less than another
  // member makes the documented limit: that member keeps what it took, which the
  // others refuse; the oracle could not tell that from a bug.)
  void Withdraw() {
    std::vector<ReplicaId> ids;
    for (const auto& [id, role] : limited_ids_)
      if (role == Role::kTill) ids.push_back(id);
    for (int k = 0; k < n_; ++k) {
      if (nodes_[k].role != Role::kMember) continue;
      std::map<ReplicaId, uint64_t> held;
      Status st = net::ComputeCutoff(*nodes_[k].replica, ids, &held);
      SIM_CHECK(st.ok(), "cutoff: " + st.ToString());
      for (const auto& [id, n] : held) till_cutoff_[id] = std::max(till_cutoff_[id], n);
    }
    withdrawn_ = true;
    NoteIds();
  }

  // The till may write "prices" again. What its replicas wrote from the cutoff up to all
  // they had issued by now (a replica taken since the withdrawal, from 0) stays refused:
  // the statement records, for each, the last event any replica holds of it, and its own
  // last (the signer synced with the till first, so nothing the till wrote meanwhile can
  // reach a member only after the permission is back).
  void Regrant() {
    std::vector<ReplicaId> ids;
    for (const auto& [id, role] : limited_ids_)
      if (role == Role::kTill) ids.push_back(id);
    std::map<ReplicaId, uint64_t> upto;
    for (int k = 0; k < n_; ++k) {
      std::map<ReplicaId, uint64_t> held;
      Status st = net::ComputeCutoff(*nodes_[k].replica, ids, &held);
      SIM_CHECK(st.ok(), "cutoff: " + st.ToString());
      for (const auto& [id, n] : held) upto[id] = std::max(upto[id], n);
      const ReplicaMeta meta = nodes_[k].replica->Meta().value();
      if (auto own = limited_ids_.find(meta.id);
          own != limited_ids_.end() && own->second == Role::kTill)
        upto[meta.id] = std::max(upto[meta.id], meta.vv.Get(meta.id));
    }
    for (const auto& [id, n] : upto) {
      auto c = till_cutoff_.find(id);
      const uint64_t after = c == till_cutoff_.end() ? 0 : c->second;
      if (n > after) till_windows_[id].push_back({after, n});
    }
    withdrawn_ = false;
    regranted_ = true;
    NoteIds();
  }

  // Whether receivers take the write `seq` of `id` in `collection`.
  bool Allowed(const ReplicaId& id, uint64_t seq, const std::string& collection) const {
    const auto& limits = limits_.For(collection);
    auto it = limits.find(id);
    if (it != limits.end() && seq > it->second) return false;
    const auto& windows = limits_.WindowsFor(collection);
    if (auto w = windows.find(id); w != windows.end())
      for (const auto& window : w->second)
        if (seq > window.after && seq <= window.upto) return false;
    return true;
  }

  bool Limited(int i) const { return nodes_[i].role != Role::kMember; }

  // A version vector without the entries of limited devices' replicas. For those a
  // member's entry says what it has judged, not only what it holds: taken or refused
  // for good, as the limited replica's own watermark told it in a session that refused
  // nothing (one that refused something merges no watermark). So members that synced
  // with it directly claim more of its events than those that did not.
  VersionVector Judged(const VersionVector& vv) const {
    VersionVector out;
    for (const auto& [id, n] : vv.entries())
      if (!limited_ids_.count(id)) out.Raise(id, n);
    return out;
  }

  // Collection: the node removes the tombstones that every node it counts holds (by
  // their version vectors now: reports can only lag behind). Each other node is left
  // out now and then, as a member silent past the horizon is: it comes back holding
  // what was deleted and collected meanwhile, and must be rebased, resurrecting nothing
  // and losing none of its own changes.
  // What a node reports it holds (net::Report): its version vector, and what its
  // sessions that left collections out bore out for the ones they took.
  VersionVector Holding(int k) { return nodes_[k].replica->Meta()->Holding(); }

  void CollectOne(int i) {
    VersionVector absorbed = Holding(i);
    for (int k = 0; k < n_; ++k)
      if (k != i && rng_() % 4 != 0) absorbed = VersionVector::Meet(absorbed, Holding(k));
    Replica::CollectStats st;
    Status s = nodes_[i].replica->Collect(absorbed, &st, 1 + rng_() % 64);
    SIM_CHECK(s.ok(), "collect: " + s.ToString());
    collected_ += st.collected;
    // Deleting "tags" too, every node collects at once (what it holds of `absorbed`): a
    // node left out then meets fields written again after collection, never a tombstone
    // of them that someone kept.
    for (int k = 0; k < n_ && delete_tags_; ++k) {
      if (k == i) continue;
      st = {};
      s = nodes_[k].replica->Collect(absorbed, &st);
      SIM_CHECK(s.ok(), "collect: " + s.ToString());
      collected_ += st.collected;
    }
  }

  // What the simulation attaches: empty, small, one chunk and a bit, three chunks.
  static const std::string& BlobContent(int which) {
    static const std::vector<std::string> kContents = [] {
      std::vector<std::string> c;
      for (size_t size : {size_t{0}, size_t{1000}, kBlobChunkBytes + 7, 3 * kBlobChunkBytes}) {
        std::string s(size, '\0');
        for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 131 + size) % 251);
        c.push_back(std::move(s));
      }
      return c;
    }();
    return kContents[static_cast<size_t>(which)];
  }

  // The set oracle: every add to "tags" (its element and dot), and the adds each removal
  // (of one element, or of the whole record) removed: those its replica held just before
  // it. An element is in the set at the end if one of its adds that receivers take was
  // removed by none, whatever was collected and rebased meanwhile. (An add of an element
  // replaces the adds of it its replica held.)
  Status AddTag(Replica& r, const std::string& rec, const std::string& e) {
    const std::set<Dot> of_e = TagDots(r, rec, &e);
    Status st = r.Add("tags", rec, "t", Value{e});
    if (!st.ok()) return st;
    auto meta = r.Meta();
    SIM_CHECK(meta.ok(), "meta");
    const Dot dot{meta->id, meta->vv.Get(meta->id)};
    tag_adds_[rec][e].push_back(dot);
    // A reader's add is refused everywhere, and what it replaced with it.
    if (Allowed(dot.replica, dot.seq, "tags")) removed_tags_.insert(of_e.begin(), of_e.end());
    return st;
  }
  static std::set<Dot> TagDots(Replica& r, const std::string& rec, const std::string* e) {
    std::set<Dot> out;
    auto state = r.GetState("tags", rec);
    if (!state.ok()) return out;
    auto t = state->fields.find("t");
    if (t == state->fields.end()) return out;
    for (const auto& [element, dots] : t->second.elements)
      if (!e || SameValue(element, Value{*e})) out.insert(dots.begin(), dots.end());
    return out;
  }
  std::set<std::string> ExpectedTags(const std::string& rec) const {
    std::set<std::string> out;
    for (const auto& [e, dots] : tag_adds_.at(rec))
      for (const Dot& d : dots)
        if (Allowed(d.replica, d.seq, "tags") && !removed_tags_.count(d)) out.insert(e);
    return out;
  }

  // The oracle: which fields each event touched, read from the node's change log.
  void RecordEvents(int i) {
    Replica& r = *nodes_[i].replica;
    auto meta = r.Meta();
    SIM_CHECK(meta.ok(), "meta");
    if (last_id_[i] != meta->id) last_seq_[i] = 0, last_id_[i] = meta->id;  // a new id
    const uint64_t seq = meta->vv.Get(meta->id);
    auto& seen = log_seen_[i];
    for (;;) {  // pages end early at large states
      auto page = r.CollectDeltas(seen, 1 << 20, nullptr);
      SIM_CHECK(page.ok(), "collect");
      for (const auto& d : page->deltas)
        for (uint64_t k = last_seq_[i] + 1; k <= seq; ++k)
          if (d.state.ctx.Get(meta->id) >= k) touched_[{meta->id, k}].insert(d.key);
      seen = page->next_cursor;
      if (page->done) break;
    }
    last_seq_[i] = seq;
  }

  // Every node's version vector claims only events whose effects it holds.
  void CheckClaims(const char* after) {
    for (int i = 0; i < n_; ++i) {
      Replica& r = *nodes_[i].replica;
      auto meta = r.Meta();
      SIM_CHECK(meta.ok(), "meta");
      std::map<FieldKey, std::optional<VersionVector>> ctx;  // read once per field
      auto collected = r.Collected();
      SIM_CHECK(collected.ok(), "collected");
      for (const auto& [ev, fields] : touched_) {
        if (meta->vv.Get(ev.replica) < ev.seq) continue;
        for (const auto& k : fields) {
          auto [it, added] = ctx.try_emplace(k);
          if (added) {
            std::optional<FieldState> st;
            auto txn = r.store().BeginRead();
            SIM_CHECK(txn.ok() && (*txn)->GetField(k, &st).ok(), "state");
            if (st) it->second = st->ctx;
          }
          // A field may have been collected (and written anew since, its new state's
          // context starting over): the events the collected vector covers are held.
          if (collected->Covers(Dot{ev.replica, ev.seq})) continue;
          // A limited device's events are judged, not held (Judged): a member may have
          // refused them, or have taken its watermark for what it refused.
          if (limited_ids_.count(ev.replica)) continue;
          if (!it->second || it->second->Get(ev.replica) < ev.seq) {
            throw Failure{"node " + std::to_string(i) + " claims " + ev.replica.ShortHex() + ":" +
                          std::to_string(ev.seq) + " but lacks it in " + k.collection + "/" +
                          k.record + "." + k.field + " (after " + after + ")"};
          }
        }
      }
    }
  }

  // Splits the replicas in two groups that cannot reach each other until it heals.
  void Partition() {
    side_.assign(n_, 0);
    for (int i = 0; i < n_; ++i) side_[i] = static_cast<int>(rng_() % 2);
    std::vector<std::unique_ptr<Conn>> keep;
    for (auto& c : conns_)
      if (side_[c->a] == side_[c->b]) keep.push_back(std::move(c));
    conns_ = std::move(keep);
    ++partitions_;
  }

  void Connect(int a, int b, bool limited = false) {
    if (a == b) return;
    if (!side_.empty() && side_[a] != side_[b]) return;  // unreachable
    for (auto& c : conns_)
      if ((c->a == a && c->b == b) || (c->a == b && c->b == a)) return;
    auto c = std::make_unique<Conn>();
    c->a = a;
    c->b = b;
    SessionOptions o;
    o.batch_fields = 1 + rng_() % 8;  // small batches: more interleavings
    o.window = 1 + rng_() % 3;
    o.compare_states = true;  // at every session: what a lie made others skip is found
    // Now and then a connection that withholds every state needing pieces (as towards an
    // older peer): no one may claim such a state without holding it.
    if (limited) o.max_state_bytes = kMaxBatchBodyBound;
    c->limited = limited;
    // Batches in rows, in columns, or in columns with logical clocks as differences.
    const uint32_t layouts[] = {0, net::kFeatureColumns,
                                net::kFeatureColumns | net::kFeatureColumns2};
    c->wire.peer_features = layouts[rng_() % 3] | net::kFeaturePieces | net::kFeatureBlobs |
                            net::kFeatureBlobLater | net::kFeatureDigests;
    // Both sides admit through the node's write check; a rebase on a peer drops what it
    // collected only where the peer's device may write (as a node's may_rebase).
    o.admit = [this](const FieldDelta& d, const FieldState* ours) {
      const Admission verdict = net::AdmitWrite(d, ours, limits_);
      if (verdict == Admission::kRefuse) ++refused_writes_;
      return verdict;
    };
    // A judgement by events alone: a state in pieces for a field that holds nothing is
    // judged on its outline and stored as it came (out of line), as a node's are.
    o.judges_outlines = [](const std::string&) { return true; };
    // The narrow member's sessions: half say what it takes as its accept filter, half have
    // its peer send "every collection but" what it leaves out (and, as toward an older
    // build, the collections it takes).
    std::set<std::string> narrow_takes;
    bool narrow_sent_all_but = false, older = false;
    if (a == narrow_ || b == narrow_) {
      narrow_takes = NarrowTakes();
      narrow_sent_all_but = narrow_rng_() % 2;
      older = narrow_sent_all_but && narrow_rng_() % 3 == 0;  // builds that know no AllBut
    }
    auto with_peer = [&](int peer) {
      SessionOptions po = o;
      if ((peer == a ? b : a) == narrow_ && !narrow_sent_all_but)
        po.accept = CollectionFilter::Only(narrow_takes);
      if (peer == narrow_ && narrow_sent_all_but) {
        std::set<std::string> left_out{"files", "inv"};
        for (const auto& name : narrow_takes) left_out.erase(name);
        po.send = CollectionFilter::AllBut(std::move(left_out));
        po.send_older = CollectionFilter::Only(narrow_takes);
      }
      // Half the sessions send their request with their Hello: made for the peer's
      // replica, for any replica, or for one the peer is not (then it waits its turn).
      if (rng_() % 2) {
        po.early_request = true;
        const int expect = static_cast<int>(rng_() % 3);
        if (expect == 1) po.expect = nodes_[peer].replica->Meta()->id;
        if (expect == 2) po.expect = nodes_[peer == a ? b : a].replica->Meta()->id;
      }
      po.may_rebase = [this, peer](const std::string& coll) {
        const Role role = nodes_[peer].role;
        // Nor where it wrote without permission, once given back (what it deleted then,
        // the others keep).
        return role == Role::kMember ||
               (role == Role::kTill && !((withdrawn_ || regranted_) && coll == "prices"));
      };
      // And takes its collected vector only where it may write everywhere (as a node's
      // peer_writes_everywhere): a reader's own writes removed what members keep.
      po.peer_writes_everywhere = [this, peer] {
        const Role role = nodes_[peer].role;
        return role == Role::kMember || (role == Role::kTill && !withdrawn_ && !regranted_);
      };
      return po;
    };
    c->sa = std::make_unique<Session>(*nodes_[a].replica, with_peer(b));
    c->sb = std::make_unique<Session>(*nodes_[b].replica, with_peer(a));
    c->withheld = &withheld_;
    c->joined = &joined_;
    c->decoded = &decoded_;
    std::vector<Message> out;
    auto as_built = [older](Message& m) {
      if (auto* h = std::get_if<Hello>(&m); h && older) h->send_full.reset();
      return m;
    };
    SIM_CHECK(c->sa->Start(&out).ok(), "start");
    for (auto& m : out) c->to_b.push_back(net::EncodeMessage(as_built(m), c->wire).value());
    out.clear();
    SIM_CHECK(c->sb->Start(&out).ok(), "start");
    for (auto& m : out) c->to_a.push_back(net::EncodeMessage(as_built(m), c->wire).value());
    conns_.push_back(std::move(c));
  }

  // Delivers the head of one direction of a connection. Returns false if it failed.
  bool Deliver(Conn& c, bool to_b) {
    auto& q = to_b ? c.to_b : c.to_a;
    if (q.empty()) return true;
    std::string bytes = std::move(q.front());
    q.pop_front();
    ++messages_;
    auto msg = net::DecodeMessage(bytes);
    SIM_CHECK(msg.ok(), "decode: " + msg.status().ToString());
    if (auto* b = std::get_if<DeltaBatch>(&*msg); b && b->piece) ++pieces_;
    std::vector<Message> out;
    Session& s = to_b ? *c.sb : *c.sa;
    Status st = s.Receive(*msg, &out);
    if (bool& counted = to_b ? c.rebased_b : c.rebased_a; s.stats().rebased && !counted) {
      counted = true;
      ++rebases_;
    }
    if (!st.ok() && s.rolled_back()) {
      ++rollbacks_caught_;
      return false;  // the session ends; the replica took a new id
    }
    if (!st.ok() && s.rebase_due()) return false;  // the session ends; the next rebases
    // The states differed at equal version vectors: the next session repairs them.
    if (bool& counted = to_b ? c.differ_b : c.differ_a; s.repair_due() && !counted) {
      counted = true;
      ++differences_;
    }
    if (!st.ok() && s.repair_due()) return false;
    if (!st.ok()) c.error = st;
    // A limited session ends a rebase that would need a state it withholds.
    if (!st.ok() && c.limited && st.code() == Code::kUnsupported && s.stats().whole_sent)
      return false;
    if (!st.ok()) {
      // Only injected duplication or reordering may make a session refuse a message.
      SIM_CHECK(c.faulted, "session error without an injected fault: " + st.ToString());
      ++refused_;
      return false;
    }
    auto& back = to_b ? c.to_a : c.to_b;
    if ((to_b ? c.b : c.a) == liar_)
      for (auto& m : out)
        if (auto* cu = std::get_if<CaughtUp>(&m)) Lie(&cu->vv, to_b ? c.a : c.b);
    for (auto& m : out) back.push_back(net::EncodeMessage(m, c.wire).value());
    return true;
  }

  // The liar's claim to `peer`: every event each other device has issued.
  void Lie(VersionVector* vv, int peer) {
    for (int k = 0; k < n_; ++k) {
      if (k == liar_ || k == peer) continue;
      const ReplicaMeta meta = nodes_[k].replica->Meta().value();
      if (meta.vv.Get(meta.id) > vv->Get(meta.id)) {
        vv->Raise(meta.id, meta.vv.Get(meta.id));
        ++lies_;
      }
    }
  }

  void DeliverOne() {
    if (conns_.empty()) return;
    size_t k = rng_() % conns_.size();
    Conn& c = *conns_[k];
    bool dir = rng_() % 2;
    if ((dir ? c.to_b : c.to_a).empty()) dir = !dir;
    if (!Deliver(c, dir)) conns_.erase(conns_.begin() + static_cast<long>(k));
  }

  void PollOne() {
    if (conns_.empty()) return;
    Conn& c = *conns_[rng_() % conns_.size()];
    std::vector<Message> out;
    Status st = c.sa->Poll(&out);
    SIM_CHECK(st.ok() || c.sa->sync_again(), "poll: " + st.ToString());
    for (auto& m : out) c.to_b.push_back(net::EncodeMessage(m, c.wire).value());
    out.clear();
    Status st2 = c.sb->Poll(&out);
    SIM_CHECK(st2.ok() || c.sb->sync_again(), "poll: " + st2.ToString());
    for (auto& m : out) c.to_a.push_back(net::EncodeMessage(m, c.wire).value());
    if (!st.ok() || !st2.ok()) {
      for (size_t k = 0; k < conns_.size(); ++k)
        if (conns_[k].get() == &c) conns_.erase(conns_.begin() + static_cast<long>(k));
    }
  }

  void CutOne() {
    if (!conns_.empty()) conns_.erase(conns_.begin() + static_cast<long>(rng_() % conns_.size()));
  }

  void InjectFault() {
    if (conns_.empty()) return;
    Conn& c = *conns_[rng_() % conns_.size()];
    auto& q = (rng_() % 2) ? c.to_a : c.to_b;
    if (q.empty()) return;
    c.faulted = true;
    if (rng_() % 2 || q.size() < 2) {
      q.push_front(q.front());  // duplicate
    } else {
      std::swap(q[0], q[1 + rng_() % (q.size() - 1)]);  // reorder
    }
  }

  void Disconnect(int i) {
    std::vector<std::unique_ptr<Conn>> keep;
    for (auto& c : conns_)
      if (c->a != i && c->b != i) keep.push_back(std::move(c));
    conns_ = std::move(keep);
  }

  void Crash(int i) {
    Disconnect(i);
    nodes_[i].replica.reset();  // in-flight messages are gone; the store closes
    auto store = storage::OpenStore(nodes_[i].dir, Opts());
    SIM_CHECK(store.ok(), "reopen: " + store.status().ToString());
    Open(i, std::move(store).value());
    ++crashes_;
  }

  // The files of a replica in use, copied (no transaction is open between steps).
  void CopyData(const std::string& from, const std::string& to) {
    std::error_code ec;
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
    SIM_CHECK(!ec, "copy " + from + ": " + ec.message());
  }

  // Node i's directory is copied (a VM clone, a phone migration that kept the old one)
  // and the copy goes on as one more replica, writing concurrently with the original.
  void Clone(int i) {
    if (n_ >= 10) return;
    Node nd;
    nd.dir = (base_ / ("r" + std::to_string(n_))).string();
    nd.skew = static_cast<int64_t>(rng_() % 200) - 100;
    nd.role = nodes_[i].role;  // the same device
    fs::create_directories(nd.dir);
    CopyData(nodes_[i].dir + "/data.mdb", nd.dir + "/data.mdb");
    const ReplicaId original = nodes_[i].replica->Meta()->id;
    nodes_.push_back(std::move(nd));
    const int k = n_++;
    if (!side_.empty()) side_.push_back(side_[i]);
    auto store = storage::OpenStore(nodes_[k].dir, Opts());
    SIM_CHECK(store.ok(), "open copy: " + store.status().ToString());
    Open(k, std::move(store).value());
    SIM_CHECK(nodes_[k].replica->Meta()->id != original, "a copied replica kept its id");
    log_seen_[k] = log_seen_[i];
    nodes_[k].frozen = nodes_[i].frozen;
    ++clones_;
  }

  void Snapshot(int i) {
    Node& nd = nodes_[i];
    nd.snapshot = nd.dir + ".snapshot";
    CopyData(nd.dir + "/data.mdb", nd.snapshot);
    nd.snapshot_id = nd.replica->Meta()->id;
  }

  // Node i goes back to its snapshot, as a new file or in place (same inode). Only when
  // another node holds everything it has (its version vector covers i's): what i loses
  // must come back, or the oracle could not tell a loss from a bug.
  void Rollback(int i) {
    Node& nd = nodes_[i];
    // A device never backed up is backed up now, and its next rollback goes back to it.
    if (nd.snapshot.empty()) return Snapshot(i);
    const ReplicaMeta meta = nd.replica->Meta().value();
    if (meta.id != nd.snapshot_id) return;
    // (A limited device's replica does not count: the others refuse part of its data.) A
    // limited device syncs with a member first, which then holds every write of it that
    // members take; what else must be held elsewhere is the rest of its version vector
    // (members claim none of a limited replica's events from a session that refused any).
    const VersionVector need = Limited(i) ? Judged(meta.vv) : meta.vv;
    // A member's entry for a limited replica says what it judged, and it may hold more of
    // that replica's writes (taken in a session that refused others): another member
    // must have seen as much of them.
    auto holds_all = [&](int j) {
      Replica& rj = *nodes_[j].replica;
      if (!rj.Meta()->vv.Covers(need)) return false;
      if (Limited(i)) return true;
      for (const auto& [id, role] : limited_ids_)
        if (rj.Held(id).value() < nodes_[i].replica->Held(id).value()) return false;
      return true;
    };
    bool held = false;
    for (int j = 0; j < n_ && !held && !Limited(i); ++j)
      if (j != i && !Limited(j) && j != narrow_) held = holds_all(j);
    // The partner is the next member in good standing on i's side of any partition that
    // takes everything (not the narrow one, which may not take what i wrote).
    int partner = -1;
    for (int k = 1; k < n_ && partner < 0; ++k) {
      const int j = (i + k) % n_;
      if (!Limited(j) && j != narrow_ && (side_.empty() || side_[i] == side_[j])) partner = j;
    }
    if (!held && partner >= 0) {
      // Usually the device had synced before it was restored: make it so.
      SyncPair(i, partner);
      held = holds_all(partner);
    }
    if (!held) return;
    Disconnect(i);
    nd.replica.reset();
    const bool in_place = rng_() % 2;
    if (!in_place) fs::remove(nd.dir + "/data.mdb");
    CopyData(nd.snapshot, nd.dir + "/data.mdb");
    auto store = storage::OpenStore(nd.dir, Opts());
    SIM_CHECK(store.ok(), "open rolled back: " + store.status().ToString());
    Open(i, std::move(store).value());
    const ReplicaId now = nd.replica->Meta()->id;
    if (in_place) {
      SIM_CHECK(now == meta.id, "an in-place rollback cannot be seen at open");
      nd.frozen = now;
    } else {
      SIM_CHECK(now != meta.id, "a rolled-back copy in a new file kept its id");
    }
    log_seen_[i] = 0;  // the change log went back too: read it again
    ++rollbacks_;
    if (Limited(i)) ++limited_rollbacks_;
  }

  // One complete session between a and b, on a connection of its own (others stay).
  // Returns the fields it applied.
  // A complete session; `limited` withholds states needing pieces (Connect).
  uint64_t SyncPair(int a, int b, bool limited = false) {
    for (size_t k = 0; k < conns_.size(); ++k)
      if ((conns_[k]->a == a && conns_[k]->b == b) || (conns_[k]->a == b && conns_[k]->b == a)) {
        conns_.erase(conns_.begin() + static_cast<long>(k));
        break;
      }
    Connect(a, b, limited);
    std::unique_ptr<Conn> c = std::move(conns_.back());
    conns_.pop_back();
    while (!c->to_a.empty() || !c->to_b.empty()) {
      if (Deliver(*c, !c->to_b.empty())) continue;
      // A limited session ends a peer's rebase at a state it would withhold (the
      // rebase waits for a session that can send everything).
      if (c->limited && c->error.code() == Code::kUnsupported) return Applied(*c);
      // Only a replica rolled back in place may end a complete session, once: it has a
      // new id now, and the next session is the real one. Or one that found a rebase due.
      SIM_CHECK(c->sa->sync_again() || c->sb->sync_again(), "a complete session failed");
      Connect(a, b, limited);
      c = std::move(conns_.back());
      conns_.pop_back();
    }
    SIM_CHECK(c->sa->caught_up() && c->sb->caught_up(), "a complete session did not catch up");
    // Caught up means it: the two hold the same data now (but what was withheld, and a
    // limited device's writes the other refused).
    if (c->sa->stats().fields_withheld + c->sb->stats().fields_withheld) return Applied(*c);
    if (Limited(a) || Limited(b)) return Applied(*c);
    // A liar deprives itself: the peer does not send it what it claimed to hold.
    if (a == liar_ || b == liar_) return Applied(*c);
    // The narrow member has what it takes: once healing, all but "files".
    const bool narrow = a == narrow_ || b == narrow_;
    if (narrow && !healing_) return Applied(*c);
    const std::string da = Dump(*nodes_[a].replica, narrow), db = Dump(*nodes_[b].replica, narrow);
    if (da != db) {
      auto lines = [](const std::string& d) {
        std::set<std::string> out;
        size_t at = 0;
        for (size_t nl; (nl = d.find('\n', at)) != std::string::npos; at = nl + 1)
          out.insert(d.substr(at, std::min<size_t>(nl - at, 160)));
        return out;
      };
      const auto la = lines(da), lb = lines(db);
      for (int k : {a, b}) {
        std::fprintf(stderr, "--- replica %d vv %s collected %s, only here:\n", k,
                     nodes_[k].replica->Meta()->vv.ToString().c_str(),
                     nodes_[k].replica->Collected()->ToString().c_str());
        for (const auto& l : k == a ? la : lb)
          if (!(k == a ? lb : la).count(l)) std::fprintf(stderr, "  %s\n", l.c_str());
      }
    }
    SIM_CHECK(da == db, "a session reported caught up but the two replicas differ");
    return Applied(*c);
  }
  uint64_t Applied(const Conn& c) {
    blobs_fetched_ += c.sa->stats().blobs_received + c.sb->stats().blobs_received;
    return c.sa->stats().fields_applied + c.sb->stats().fields_applied +
           c.sa->stats().blobs_received + c.sb->stats().blobs_received;
  }

  // What the narrow member takes in a session: never "files"; "inv" only now and then
  // while the faults go on (so its sessions widen and narrow again), always once healing.
  std::set<std::string> NarrowTakes() {
    std::set<std::string> out{"prices", "tags", "mixed"};
    if (healing_ || narrow_rng_() % 2) out.insert("inv");
    return out;
  }

  void Heal() {
    conns_.clear();
    side_.clear();
    healing_ = true;
    // Pairwise rounds until a whole round applies nothing.
    for (int round = 0; round < 2 * n_ + 4; ++round) {
      uint64_t applied = 0;
      for (int a = 0; a < n_; ++a)
        for (int b = a + 1; b < n_; ++b) {
          // Collection as members catch up: others left out now and then come back.
          if (round > 0 && rng_() % 3 == 0) CollectOne(static_cast<int>(rng_() % n_));
          // The first round now and then withholds large states: the later ones must
          // still bring them everywhere.
          applied += SyncPair(a, b, round == 0 && rng_() % 3 == 0);
          NoteIds();
          if (check_claims_) CheckClaims("a healing session");
        }
      if (applied == 0 && round > 0) return;
    }
    throw Failure{"no quiescence after healing"};
  }

  // `narrow`: only what the narrow member takes once healing.
  std::string Dump(Replica& r, bool narrow = false) {
    std::string out;
    auto colls = r.Collections();
    SIM_CHECK(colls.ok(), "collections");
    for (const auto& c : *colls) {
      if (narrow && c == "files") continue;
      Status st = r.Scan(c, "", [&](const Record& rec) {
        out += c + "/" + rec.id;
        for (const auto& [f, v] : rec.fields) {
          out += " " + f + "=" + KindName(v.kind) + ":" + DebugString(v.scalar) + "/" +
                 std::to_string(v.count) + "/";
          for (const auto& x : v.set) out += DebugString(x) + ",";
        }
        out += "\n";
        return true;
      });
      SIM_CHECK(st.ok(), "scan");
    }
    return out;
  }

  void Verify() {
    // Every replica whole, by the same check as `tandem check`; states kept as they came
    // in pieces (out of line) counted.
    for (int i = 0; i < n_; ++i) {
      storage::CheckReport report;
      auto* lmdb = dynamic_cast<storage::LmdbStore*>(&nodes_[i].replica->store());
      SIM_CHECK(lmdb != nullptr, "replicas are stored in LMDB");
      const Status checked = storage::Check(*lmdb, &report);
      SIM_CHECK(checked.ok(), "replica " + std::to_string(i) + ": " + checked.ToString());
      out_of_line_ += report.fields_out_of_line;
    }
    const std::string d0 = Dump(*nodes_[0].replica);
    const VersionVector vv0 = nodes_[0].replica->Meta()->vv;
    SIM_CHECK(!Limited(0), "replica 0 is the reference: a member's");
    for (int i = 1; i < n_; ++i) {
      if (i == liar_) continue;  // what it lacks it claimed to hold: the others have it
      if (i == narrow_) {
        // All but what it never takes, whatever its sessions left out meanwhile. (Its
        // version vector stays behind: no session of it merges a watermark.)
        const std::string dn = Dump(*nodes_[i].replica, true), d0n = Dump(*nodes_[0].replica, true);
        if (dn != d0n)
          std::fprintf(stderr, "--- replica 0\n%s--- narrow replica %d\n%s", d0n.c_str(), i,
                       dn.c_str());
        SIM_CHECK(dn == d0n, "narrow replica " + std::to_string(i) + " differs");
        continue;
      }
      if (Limited(i)) {
        // It may hold writes of its own that everyone refused, but it has all theirs.
        const VersionVector vv = Judged(nodes_[i].replica->Meta()->vv);
        if (!vv.Covers(Judged(vv0)))
          std::fprintf(stderr, "vv %d %s\nvv 0 %s\n", i, vv.ToString().c_str(),
                       vv0.ToString().c_str());
        SIM_CHECK(vv.Covers(Judged(vv0)), "limited replica " + std::to_string(i) + " lacks writes");
        continue;
      }
      const std::string di = Dump(*nodes_[i].replica);
      if (di != d0) {
        std::fprintf(stderr, "--- replica 0\n%s--- replica %d\n%s", d0.c_str(), i, di.c_str());
        for (int k = 0; k < n_; ++k)
          std::fprintf(stderr, "vv %d %s\n", k, nodes_[k].replica->Meta()->vv.ToString().c_str());
      }
      SIM_CHECK(di == d0, "replica " + std::to_string(i) + " differs");
      if (!(Judged(nodes_[i].replica->Meta()->vv) == Judged(vv0)))
        for (int k = 0; k < n_; ++k)
          std::fprintf(stderr, "vv %d%s id %s %s collected %s\n", k, Limited(k) ? " (limited)" : "",
                       nodes_[k].replica->Meta()->id.ShortHex().c_str(),
                       nodes_[k].replica->Meta()->vv.ToString().c_str(),
                       nodes_[k].replica->Collected()->ToString().c_str());
      SIM_CHECK(Judged(nodes_[i].replica->Meta()->vv) == Judged(vv0),
                "version vectors of 0 and " + std::to_string(i) + " differ");
    }
    Replica& r = *nodes_[0].replica;
    for (const auto& [rec, sum] : stock_) {
      auto got = r.Get("inv", rec);
      SIM_CHECK(got.ok(), "counter record missing");
      SIM_CHECK(got->fields.at("stock").count == sum, "counter is not the sum of increments");
    }
    for (const auto& [rec, all] : puts_) {
      std::vector<PutRecord> puts;  // the writes receivers take
      for (const auto& p : all)
        if (Allowed(p.replica, p.seq, "prices")) puts.push_back(p);
      if (puts.empty()) continue;
      auto best = std::max_element(puts.begin(), puts.end(), [](const auto& x, const auto& y) {
        return std::tie(x.hlc, x.replica, x.seq) < std::tie(y.hlc, y.replica, y.seq);
      });
      // A write the till was still allowed that it overwrote itself with a refused one
      // before any member took it is gone with the refused one (the state carries only
      // the overwrite).
      if (std::any_of(all.begin(), all.end(), [&](const PutRecord& p) {
            return p.replica == best->replica && p.seq > best->seq &&
                   !Allowed(p.replica, p.seq, "prices");
          }))
        continue;
      auto got = r.Get("prices", rec);
      SIM_CHECK(got.ok(), "register record missing");
      SIM_CHECK(SameValue(got->fields.at("price").scalar, best->value),
                "register does not show the write with the highest timestamp");
    }
    // Every blob a field state references (winner or not) is here, whole, as attached.
    for (int i = 0; i < n_; ++i) {
      Replica& ri = *nodes_[i].replica;
      std::vector<BlobRef> refs;
      Status st = ri.Scan("files", "", [&](const Record& rec) {
        auto state = ri.GetState("files", rec.id);
        SIM_CHECK(state.ok(), "state");
        for (const auto& [f, s] : state->fields)
          ForEachBlobRef(s, [&](const BlobRef& b) { refs.push_back(b); });
        return true;
      });
      SIM_CHECK(st.ok(), "scan files");
      for (const auto& ref : refs) {
        auto want = blobs_.find(ref.hash);
        SIM_CHECK(want != blobs_.end(), "a reference to a blob never attached");
        std::string got;
        Status read = ri.ReadBlob(ref.hash, [&](std::string_view b) {
          got.append(b);
          return Status::Ok();
        });
        SIM_CHECK(read.ok(), "replica " + std::to_string(i) +
                                 " cannot read a referenced blob: " + read.ToString());
        SIM_CHECK(got == *want->second, "a blob differs from what was attached");
      }
    }
    for (const auto& [rec, adds] : tag_adds_) {
      std::set<std::string> have;
      if (auto got = r.Get("tags", rec); got.ok() && got->fields.count("t"))
        for (const Value& v : got->fields.at("t").set) have.insert(std::get<std::string>(v));
      const std::set<std::string> want = ExpectedTags(rec);
      if (have != want) {
        std::string h, w;
        for (const auto& e : have) h += " " + e;
        for (const auto& e : want) w += " " + e;
        std::fprintf(stderr, "tags/%s holds%s; the adds and removals make%s\n", rec.c_str(),
                     h.c_str(), w.c_str());
      }
      SIM_CHECK(have == want, "a set holds what was removed, or lacks what was added");
    }
    for (const auto& [rec, kept] : kept_) {
      auto got = r.Get("tags", rec);
      SIM_CHECK(got.ok(), "set record missing");
      const auto& set = got->fields.at("t").set;
      for (const auto& e : kept)
        SIM_CHECK(std::any_of(set.begin(), set.end(),
                              [&](const Value& v) { return SameValue(v, Value{e}); }),
                  "an element never removed is missing");
    }
  }

  std::mt19937_64 rng_;
  fs::path base_;
  int n_ = 0;
  uint64_t now_ = 0;
  std::vector<Node> nodes_;
  uint64_t withheld_ = 0, joined_ = 0, decoded_ = 0;  // before conns_: their destructors add
                                                      // to them
  std::vector<std::unique_ptr<Conn>> conns_;
  std::map<std::string, int64_t> stock_;
  std::map<std::string, std::vector<PutRecord>> puts_;
  std::map<std::string, std::set<std::string>> kept_;
  std::map<std::string, std::map<std::string, std::vector<Dot>>> tag_adds_;
  std::set<Dot> removed_tags_;
  std::map<BlobHash, const std::string*> blobs_;  // what each attached address holds
  std::map<int, uint64_t> log_seen_, last_seq_;
  std::map<int, ReplicaId> last_id_;
  std::map<Dot, std::set<FieldKey>> touched_;
  std::vector<int> side_;                  // partition group per replica; empty when there is none
  std::map<ReplicaId, Role> limited_ids_;  // every id a limited device has had
  double withdraw_fraction_ = 0;           // when the till loses "prices" (0: no till)
  double regrant_fraction_ = 0;            // when it gets it back (0: never)
  bool withdrawn_ = false, regranted_ = false;
  std::map<ReplicaId, uint64_t> till_cutoff_;  // what the statement recorded
  net::WriteLimits::Windows till_windows_;     // what it wrote while it could not
  net::WriteLimits limits_;
  uint64_t messages_ = 0, refused_ = 0, crashes_ = 0, partitions_ = 0;
  uint64_t clones_ = 0, rollbacks_ = 0, rollbacks_caught_ = 0, limited_rollbacks_ = 0, pieces_ = 0,
           out_of_line_ = 0;

 public:
  uint64_t differences_ = 0;
  uint64_t collected_ = 0, rebases_ = 0, blobs_fetched_ = 0, refused_writes_ = 0;
  bool check_claims_ = false;
  bool delete_tags_ = false;  // "tags" records are deleted too (so their tombstones collected)
  int narrow_ = -1;           // a member that never takes "files", and "inv" now and then
  std::mt19937_64 narrow_rng_;
  bool healing_ = false;
  int liar_ = -1;  // a member whose CaughtUp messages claim what it does not hold
  uint64_t lies_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  uint64_t first = 1, count = 1;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--seed")) first = std::stoull(argv[i + 1]), count = 1;
    if (!std::strcmp(argv[i], "--seeds")) count = std::stoull(argv[i + 1]);
    if (!std::strcmp(argv[i], "--first")) first = std::stoull(argv[i + 1]);
  }
  uint64_t messages = 0, clones = 0, rollbacks = 0, caught = 0, limited = 0, pieces = 0,
           out_of_line = 0, collected = 0, rebases = 0, differences = 0, blobs = 0, withheld = 0,
           refused = 0, lies = 0, regrants = 0, joined = 0, decoded = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    try {
      Sim sim(seed);
      sim.check_claims_ = std::getenv("TANDEM_SIM_CHECK_CLAIMS") != nullptr;
      sim.delete_tags_ = std::getenv("TANDEM_SIM_DELETE_TAGS") != nullptr;
      sim.Run();
      messages += sim.messages();
      clones += sim.clones();
      rollbacks += sim.rollbacks();
      caught += sim.rollbacks_caught();
      limited += sim.limited_rollbacks();
      pieces += sim.pieces();
      out_of_line += sim.out_of_line();
      withheld += sim.withheld();
      joined += sim.joined();
      decoded += sim.decoded();
      collected += sim.collected();
      rebases += sim.rebases();
      differences += sim.differences();
      blobs += sim.blobs_fetched();
      refused += sim.refused();
      regrants += sim.regrants();
      lies += sim.lies();
    } catch (const Failure& f) {
      std::fprintf(stderr, "sim: seed %llu FAILED: %s\nreplay: tandem_sim --seed %llu\n",
                   static_cast<unsigned long long>(seed), f.what.c_str(),
                   static_cast<unsigned long long>(seed));
      return 1;
    }
  }
  std::printf(
      "sim: %llu seeds passed (%llu..%llu), %llu messages, %llu copies, %llu rollbacks "
      "(%llu found at sync, %llu of devices without full permission), %llu pieces of large field "
      "states (%llu states kept as they came, at the end; %llu joined a part at a time, %llu "
      "decoded whole), %llu "
      "withheld, %llu field "
      "states collected, %llu rebases, %llu differences of state at equal version vectors, %llu "
      "blobs fetched while healing, %llu field states "
      "refused for want of permission (%llu permissions given back), %llu false claims in "
      "CaughtUp\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(first + count - 1), static_cast<unsigned long long>(messages),
      static_cast<unsigned long long>(clones), static_cast<unsigned long long>(rollbacks),
      static_cast<unsigned long long>(caught), static_cast<unsigned long long>(limited),
      static_cast<unsigned long long>(pieces), static_cast<unsigned long long>(out_of_line),
      static_cast<unsigned long long>(joined), static_cast<unsigned long long>(decoded),
      static_cast<unsigned long long>(withheld), static_cast<unsigned long long>(collected),
      static_cast<unsigned long long>(rebases), static_cast<unsigned long long>(differences),
      static_cast<unsigned long long>(blobs), static_cast<unsigned long long>(refused),
      static_cast<unsigned long long>(regrants), static_cast<unsigned long long>(lies));
  return 0;
}
