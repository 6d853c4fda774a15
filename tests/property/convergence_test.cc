// N replicas apply random operations and receive each other's deltas in random order,
// with duplicates; they must converge, and the converged state must mean what a user
// expects. The expectation comes from a reference model that knows, for every
// operation, which earlier operations its replica had seen when it ran.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "gen.h"
#include "tandem/engine/memory_store.h"
#include "tandem/engine/replica.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
namespace {

using testing::SmallId;

enum class Op { kPut, kIncr, kAdd, kRemove, kDelete };

struct ModelOp {
  Op op;
  int replica;
  FieldKey key;  // for kDelete: the record's key with an empty field
  Value value;   // put value or set element
  int64_t by = 0;
  Hlc hlc = 0;
  Dot dot;
  std::set<int> observed;  // ops this op had seen (on the field, or the record for deletes)
};

// A field state in flight, with the model's knowledge of which ops it carries.
struct Message {
  int to;
  FieldDelta delta;
  std::set<int> ops;
};

bool Observed(const std::vector<ModelOp>& ops, int observer, int o) {
  return ops[observer].observed.count(o) > 0;
}

struct Expected {
  bool live = false;
  Kind kind = Kind::kRegister;
  Value scalar;
  int64_t count = 0;
  std::set<Value, ValueLess> set;
};

// The meaning of one field after everything is delivered, from the op history alone.
Expected Expect(const std::vector<ModelOp>& ops, const FieldKey& key) {
  auto on_field = [&](const ModelOp& o) { return o.op != Op::kDelete && o.key == key; };
  auto deletes_record = [&](const ModelOp& o) {
    return o.op == Op::kDelete && o.key.collection == key.collection && o.key.record == key.record;
  };
  // An op survives as a marker unless a later op on the field, or a record deletion,
  // observed it.
  auto superseded = [&](int i, auto pred) {
    for (int j = 0; j < static_cast<int>(ops.size()); ++j)
      if (j != i && (on_field(ops[j]) || deletes_record(ops[j])) && pred(ops[j]) &&
          Observed(ops, j, i))
        return true;
    return false;
  };
  auto any = [](const ModelOp&) { return true; };
  Expected e;
  int winner = -1;
  for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
    if (!on_field(ops[i]) || superseded(i, any)) continue;
    if (winner < 0 || std::tie(ops[i].hlc, ops[i].dot.replica, ops[i].dot.seq) >
                          std::tie(ops[winner].hlc, ops[winner].dot.replica, ops[winner].dot.seq))
      winner = i;
  }
  if (winner < 0) return e;
  e.live = true;
  const ModelOp& w = ops[winner];
  e.kind = w.op == Op::kPut ? Kind::kRegister : w.op == Op::kIncr ? Kind::kCounter : Kind::kSet;
  if (w.op == Op::kPut) e.scalar = w.value;
  // Counter: every increment no reset observed. Anything but an incr resets.
  auto resets = [](const ModelOp& o) { return o.op != Op::kIncr; };
  for (int i = 0; i < static_cast<int>(ops.size()); ++i)
    if (on_field(ops[i]) && ops[i].op == Op::kIncr && !superseded(i, resets)) e.count += ops[i].by;
  // Set: an element stays while some add of it was observed by no remove of it, put,
  // incr or record deletion (add-wins).
  for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
    if (!on_field(ops[i]) || ops[i].op != Op::kAdd) continue;
    const Value& x = ops[i].value;
    auto clears = [&](const ModelOp& o) {
      return o.op == Op::kPut || o.op == Op::kIncr || o.op == Op::kDelete ||
             (o.op == Op::kRemove && SameValue(o.value, x));
    };
    if (!superseded(i, clears)) e.set.insert(x);
  }
  return e;
}

std::vector<std::string> Dump(Replica& r) {
  std::vector<std::string> out;
  auto colls = r.Collections();
  RC_ASSERT(colls.ok());
  for (const auto& c : *colls) {
    auto st = r.Scan(c, "", [&](const Record& rec) {
      std::string line = c + "/" + rec.id;
      for (const auto& [f, v] : rec.fields) {
        line += " " + f + "=" + KindName(v.kind) + ":";
        if (v.kind == Kind::kRegister) line += DebugString(v.scalar);
        if (v.kind == Kind::kCounter) line += std::to_string(v.count);
        if (v.kind == Kind::kSet)
          for (const auto& x : v.set) line += DebugString(x) + ",";
      }
      out.push_back(line);
      return true;
    });
    RC_ASSERT(st.ok());
  }
  return out;
}

RC_GTEST_PROP(Convergence, ReplicasConvergeToWhatTheModelExpects, ()) {
  const int n = *rc::gen::inRange(2, 7);
  uint64_t now = 1'000'000;
  std::vector<int64_t> skew;
  std::vector<std::unique_ptr<Replica>> reps;
  for (int i = 0; i < n; ++i) {
    skew.push_back(*rc::gen::inRange<int64_t>(-50, 50));  // clocks disagree
    reps.push_back(std::make_unique<Replica>(
        std::make_unique<MemoryStore>(SmallId(i)), [&now, &skew, i] { return now + skew[i]; },
        storage::Blake2b256Parts));
  }
  std::vector<ModelOp> ops;
  std::vector<std::map<FieldKey, std::set<int>>> seen(n);  // per replica, per field
  std::vector<Message> inflight;
  std::set<FieldKey> touched;

  auto send = [&](int from, const FieldKey& key) {
    auto st = reps[from]->GetState(key.collection, key.record);
    RC_ASSERT(st.ok());
    const FieldState& fs = st->fields.at(key.field);
    for (int to = 0; to < n; ++to)
      if (to != from) inflight.push_back(Message{to, FieldDelta{key, fs}, seen[from][key]});
  };
  auto deliver = [&](size_t k, bool keep) {
    Message m = inflight[k];
    if (!keep) inflight.erase(inflight.begin() + static_cast<long>(k));
    RC_ASSERT(reps[m.to]->ApplyDeltas({m.delta}).ok());
    seen[m.to][m.delta.key].insert(m.ops.begin(), m.ops.end());
  };

  const int steps = *rc::gen::inRange(1, 60);
  for (int step = 0; step < steps; ++step) {
    now += *rc::gen::inRange<uint64_t>(0, 20);
    const int choice = *rc::gen::inRange(0, 10);
    if (choice >= 7 && !inflight.empty()) {
      // Deliver (sometimes keeping a duplicate for later) a random message.
      deliver(*rc::gen::inRange<size_t>(0, inflight.size()), choice == 9);
      continue;
    }
    const int r = *rc::gen::inRange(0, n);
    FieldKey key{*rc::gen::element<std::string>("products", "orders"),
                 *rc::gen::element<std::string>("a", "b"),
                 *rc::gen::element<std::string>("f", "g")};
    ModelOp op{static_cast<Op>(*rc::gen::inRange(0, 5)), r, key, Value{}, 0, 0, Dot{}, {}};
    Status st;
    if (op.op == Op::kPut) {
      op.value = *testing::GenValue();
      st = reps[r]->Put(key.collection, key.record, {{key.field, op.value}});
    } else if (op.op == Op::kIncr) {
      op.by = *rc::gen::inRange<int64_t>(-100, 100);
      st = reps[r]->Incr(key.collection, key.record, key.field, op.by);
    } else if (op.op == Op::kAdd) {
      op.value = *testing::GenElement();
      st = reps[r]->Add(key.collection, key.record, key.field, op.value);
    } else if (op.op == Op::kRemove) {
      op.value = *testing::GenElement();
      // On a field that holds nothing here, a removal writes nothing.
      auto rec = reps[r]->Get(key.collection, key.record);
      RC_ASSERT(rec.ok() || rec.status().code() == Code::kNotFound);
      const bool live = rec.ok() && rec->fields.count(key.field);
      const uint64_t own = reps[r]->Meta()->vv.Get(reps[r]->Meta()->id);
      st = reps[r]->Remove(key.collection, key.record, key.field, op.value);
      if (!live) {
        RC_ASSERT(st.ok());
        RC_ASSERT(reps[r]->Meta()->vv.Get(reps[r]->Meta()->id) == own);
        continue;
      }
    } else {
      op.key.field.clear();
      st = reps[r]->Delete(key.collection, key.record);
      if (st.code() == Code::kNotFound) continue;  // nothing live to delete here
    }
    RC_ASSERT(st.ok());
    auto meta = reps[r]->Meta();
    RC_ASSERT(meta.ok());
    op.dot = Dot{meta->id, meta->vv.Get(meta->id)};
    op.hlc = meta->clock;
    const int id = static_cast<int>(ops.size());
    std::vector<FieldKey> fields;
    if (op.op == Op::kDelete) {
      for (auto& [k, s] : seen[r])
        if (k.collection == key.collection && k.record == key.record && !s.empty())
          fields.push_back(k);
    } else {
      fields.push_back(key);
    }
    for (const auto& k : fields) {
      op.observed.insert(seen[r][k].begin(), seen[r][k].end());
      // Causality shows in time: an op is later than every operation it observed whose
      // marker could still compete. (An op the replica only saw already superseded, say by
      // a delete, left no timestamp behind; it never competes, so it does not matter.)
      for (int o : seen[r][k]) {
        if (op.op == Op::kDelete || ops[o].op == Op::kDelete) continue;
        bool superseded = false;
        for (int p : seen[r][k]) superseded |= p != o && ops[p].observed.count(o) > 0;
        if (!superseded) RC_ASSERT(ops[o].hlc < op.hlc);
      }
    }
    ops.push_back(op);
    for (const auto& k : fields) {
      seen[r][k].insert(id);
      touched.insert(k);
      send(r, k);
    }
  }
  // Heal: deliver everything still in flight, in a random order.
  while (!inflight.empty()) deliver(*rc::gen::inRange<size_t>(0, inflight.size()), false);

  const auto dump0 = Dump(*reps[0]);
  for (int i = 1; i < n; ++i) RC_ASSERT(Dump(*reps[i]) == dump0);
  for (const auto& key : touched) {
    Expected e = Expect(ops, key);
    for (int i = 0; i < n; ++i) {
      auto st = reps[i]->GetState(key.collection, key.record);
      RC_ASSERT(st.ok());
      auto it = st->fields.find(key.field);
      RC_ASSERT(it != st->fields.end());
      auto v = Read(it->second);
      RC_ASSERT(v.has_value() == e.live);
      if (!e.live) continue;
      RC_ASSERT(v->kind == e.kind);
      if (e.kind == Kind::kRegister) RC_ASSERT(SameValue(v->scalar, e.scalar));
      if (e.kind == Kind::kCounter) RC_ASSERT(v->count == e.count);
      if (e.kind == Kind::kSet) {
        std::vector<Value> want(e.set.begin(), e.set.end());
        RC_ASSERT(v->set.size() == want.size());
        for (size_t k = 0; k < want.size(); ++k) RC_ASSERT(SameValue(v->set[k], want[k]));
      }
    }
  }
}

}  // namespace
}  // namespace tandem::engine
