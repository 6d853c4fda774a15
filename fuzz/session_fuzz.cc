// libFuzzer target, structure-aware: two sync sessions between two in-memory replicas,
// driven by the input as a script of steps: deliver the next message either way, drop,
// duplicate, reorder or mutate messages in flight, write locally, poll. After every step
// it checks the session invariants:
//   - a message a session refuses changes nothing in its replica (data, meta, peers);
//   - a session that failed is not used again (the link would be closed);
//   - the cursor a replica stores for its peer never moves backwards;
//   - without any fault injected, once everything is delivered both sides have caught up
//     and hold the same data.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>

#include "tandem/engine/codec.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/sync.h"
#include "tandem/storage/replica.h"

namespace {

using namespace tandem;
using namespace tandem::engine;

class Script {
 public:
  Script(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool more() const { return i_ < n_; }
  uint8_t Next() { return i_ < n_ ? d_[i_++] : 0; }

 private:
  const uint8_t* d_;
  size_t n_, i_ = 0;
};

ReplicaId Id(uint8_t b) {
  ReplicaId id;
  id.bytes.fill(b);
  return id;
}

// Whether two committed states of a store hold the same data, meta and peers (a
// refused message must leave them so). Commits publish new immutable states, so an
// unchanged pointer (the usual case) says it at once.
bool SameState(const std::shared_ptr<const MemoryStore::Data>& a,
               const std::shared_ptr<const MemoryStore::Data>& b) {
  if (a == b) return true;
  if (!(a->meta == b->meta) || a->peers != b->peers || a->fields.size() != b->fields.size())
    return false;
  for (auto i = a->fields.begin(), j = b->fields.begin(); i != a->fields.end(); ++i, ++j)
    if (i->first != j->first || i->second.second != j->second.second) return false;
  return true;
}

void LocalWrite(Replica& r, Script& s) {
  const std::string rec = "r" + std::to_string(s.Next() % 4);
  const uint8_t kind = s.Next() % 5;
  Status st;
  if (kind == 4) {  // a small attachment: blobs then travel beside the fields
    const std::string bytes(s.Next() * 37u, static_cast<char>(s.Next()));
    size_t at = 0;
    st = r.Attach(
              "c", rec, "b",
              [&](char* buf, size_t cap) -> Result<size_t> {
                const size_t n = std::min(cap, bytes.size() - at);
                std::copy_n(bytes.data() + at, n, buf);
                at += n;
                return n;
              },
              "")
             .status();
  }
  if (kind == 0) st = r.Put("c", rec, {{"f", Value{static_cast<int64_t>(s.Next())}}});
  if (kind == 1) st = r.Incr("c", rec, "n", static_cast<int8_t>(s.Next()));
  if (kind == 2) st = r.Add("c", rec, "s", Value{static_cast<int64_t>(s.Next() % 3)});
  if (kind == 3) st = r.Delete("c", rec);
  if (!st.ok() && st.code() != Code::kNotFound) std::abort();
}

// A structure-aware change to a message in flight.
void Mutate(Message& m, Script& s) {
  const uint8_t what = s.Next();
  if (auto* h = std::get_if<Hello>(&m)) {
    if (what % 7 == 0) h->protocol += 1;
    if (what % 7 == 1) h->replica = Id(s.Next());
    if (what % 7 == 2) h->send = CollectionFilter::Only({"c"});
    if (what % 7 == 3) h->takes_early = !h->takes_early;
    if (what % 7 == 4 && h->early) h->early->cursor += s.Next();
    if (what % 7 == 5) h->expect = Id(s.Next() % 3);
    if (what % 7 == 6) {  // leaves "c" out, or says nothing (an older build)
      if (s.Next() % 2)
        h->send_full = CollectionFilter::AllBut({"c"});
      else
        h->send_full.reset();
    }
  } else if (auto* r = std::get_if<SyncRequest>(&m)) {
    if (what % 3 == 0) r->cursor += s.Next();
    if (what % 3 == 1) r->vv.Raise(Id(s.Next() % 3 + 1), s.Next());
    if (what % 3 == 2) r->mark += s.Next();
  } else if (auto* b = std::get_if<DeltaBatch>(&m)) {
    if (what % 5 == 0) b->from += 1;
    if (what % 7 == 6) b->mark = s.Next();
    if (what % 5 == 1) b->cursor = b->cursor > 0 ? b->cursor - 1 : 5;
    if (what % 5 == 2 && !b->deltas.empty()) b->deltas.pop_back();
    if (what % 5 == 3 && !b->deltas.empty()) b->deltas[0].key.record = std::string(300, 'x');
    if (what % 5 == 4) {  // a piece of a field state, whatever it holds
      b->deltas.clear();
      b->piece = StatePiece{s.Next() + 1u, s.Next(), std::string(s.Next() % 8 + 1, 'p')};
    }
  } else if (auto* c = std::get_if<CaughtUp>(&m)) {
    if (what % 3 == 0) c->cursor += 1;
    if (what % 3 == 1) c->vv.Raise(Id(s.Next() % 3 + 1), s.Next());
    if (what % 3 == 2) c->collected.Raise(Id(s.Next() % 3 + 1), s.Next());
  } else if (auto* a = std::get_if<Ack>(&m)) {
    a->cursor += what;
  } else if (auto* w = std::get_if<BlobWant>(&m)) {
    if (what % 3 == 0) w->hash[0] ^= 1;
    if (what % 3 == 1) w->from += s.Next();
    if (what % 3 == 2) w->ref.collection = "other";
  } else if (auto* h2 = std::get_if<BlobHead>(&m)) {
    if (what % 3 == 0) h2->size += 1;
    if (what % 3 == 1 && !h2->chunks.empty()) h2->chunks[0][1] ^= 1;
    if (what % 3 == 2) h2->missing = !h2->missing;
  } else if (auto* bc = std::get_if<BlobChunk>(&m)) {
    if (what % 3 == 0) bc->index += 1;
    if (what % 3 == 1 && !bc->bytes.empty()) bc->bytes[0] ^= 1;
    if (what % 3 == 2) bc->bytes.push_back('x');
  } else if (auto* ba = std::get_if<BlobAck>(&m)) {
    ba->index += what;
  } else if (auto* dg = std::get_if<Digests>(&m)) {
    if (what % 3 == 0) dg->comparable = !dg->comparable;
    if (what % 3 == 1) dg->vv.Raise(Id(s.Next() % 3 + 1), s.Next());
    if (what % 3 == 2) dg->sums["fuzzed"][s.Next() % 16] ^= 1;
  }
}

struct Side {
  MemoryStore* store = nullptr;  // owned by the replica
  std::unique_ptr<Replica> replica;
  std::unique_ptr<Session> session;
  std::deque<Message> inbox;
  bool failed = false;
  uint64_t last_cursor = 0;  // the cursor stored for the peer, last seen
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Script s(data, size);
  uint64_t now = 1'700'000'000'000;
  Side side[2];
  for (int i = 0; i < 2; ++i) {
    auto store = std::make_unique<MemoryStore>(Id(i + 1));
    side[i].store = store.get();
    side[i].replica = std::make_unique<Replica>(
        std::move(store), [&now] { return now; }, storage::Blake2b256Parts);
    for (int w = s.Next() % 4; w > 0; --w) LocalWrite(*side[i].replica, s);
    SessionOptions o;
    o.batch_fields = 1 + s.Next() % 4;
    const uint8_t w = s.Next();
    o.window = 1 + w % 3;
    // The request with the Hello, for any replica or for the peer's.
    o.early_request = w & 4;
    if (w & 8) o.expect = Id(static_cast<uint8_t>(2 - i));
    side[i].session = std::make_unique<Session>(*side[i].replica, o);
  }
  for (int i = 0; i < 2; ++i) {
    std::vector<Message> out;
    if (!side[i].session->Start(&out).ok()) std::abort();
    for (auto& m : out) side[1 - i].inbox.push_back(std::move(m));
  }
  bool faulted = false;
  for (int steps = 0; s.more() && steps < 2000; ++steps) {
    const uint8_t op = s.Next();
    Side& to = side[op & 1];
    Side& from = side[1 - (op & 1)];
    now += op % 7;
    switch ((op >> 1) % 8) {
      case 0:
      case 1:
      case 2: {  // deliver
        if (to.inbox.empty() || to.failed) break;
        Message m = std::move(to.inbox.front());
        to.inbox.pop_front();
        const auto before = to.store->Current();
        std::vector<Message> out;
        Status st = to.session->Receive(m, &out);
        if (!st.ok()) {
          // Applied from a refusal; but a session that ends so that the next one does what
          // it could not (a rollback found, a rebase due) commits what it could first.
          if (!SameState(before, to.store->Current()) && !to.session->sync_again()) std::abort();
          if (!faulted) std::abort();  // refused an untouched, in-order stream
          to.failed = true;
          break;
        }
        for (auto& r : out) from.inbox.push_back(std::move(r));
        break;
      }
      case 3:  // drop
        if (!to.inbox.empty()) to.inbox.pop_front(), faulted = true;
        break;
      case 4:  // duplicate
        if (!to.inbox.empty()) to.inbox.push_front(to.inbox.front()), faulted = true;
        break;
      case 5:  // reorder
        if (to.inbox.size() >= 2) {
          std::swap(to.inbox[0], to.inbox[1 + s.Next() % (to.inbox.size() - 1)]);
          faulted = true;
        }
        break;
      case 6:  // mutate
        if (!to.inbox.empty()) Mutate(to.inbox.front(), s), faulted = true;
        break;
      case 7: {  // a local write, then the writer's session offers it
        Side& w = side[op & 1];
        LocalWrite(*w.replica, s);
        if (w.failed) break;
        std::vector<Message> out;
        Status st = w.session->Poll(&out);
        if (!st.ok()) std::abort();  // polling reads local state only
        for (auto& r : out) side[1 - (op & 1)].inbox.push_back(std::move(r));
        break;
      }
    }
    // The cursor stored for the peer never moves backwards.
    for (int i = 0; i < 2; ++i) {
      auto ps = side[i].replica->Peer(Id(2 - i));
      if (!ps.ok()) std::abort();
      if (ps->cursor < side[i].last_cursor) std::abort();
      side[i].last_cursor = ps->cursor;
    }
  }
  if (faulted) return 0;
  // An undisturbed exchange: deliver everything, offer what is new, until quiet; then
  // both have caught up and agree.
  for (int rounds = 0;; ++rounds) {
    if (rounds > 100000) std::abort();  // no quiescence
    bool moved = false;
    for (int i = 0; i < 2; ++i) {
      Side& to = side[i];
      std::vector<Message> out;
      if (!to.inbox.empty()) {
        Message m = std::move(to.inbox.front());
        to.inbox.pop_front();
        if (!to.session->Receive(m, &out).ok()) std::abort();
        moved = true;
      }
      if (!to.session->Poll(&out).ok()) std::abort();
      if (!out.empty()) moved = true;
      for (auto& r : out) side[1 - i].inbox.push_back(std::move(r));
    }
    if (!moved) break;
  }
  if (!side[0].session->caught_up() || !side[1].session->caught_up()) std::abort();
  auto contents = [](Replica& r) {
    std::string out;
    auto colls = r.Collections();
    for (const auto& c : *colls)
      (void)r.Scan(c, "", [&](const Record& rec) {
        for (const auto& [f, v] : rec.fields)
          out += rec.id + "." + f + "=" + std::to_string(v.count) + DebugString(v.scalar) + ";";
        return true;
      });
    return out;
  };
  if (contents(*side[0].replica) != contents(*side[1].replica)) std::abort();
  return 0;
}
