// Batch: the mutations of one local write transaction (Replica::Write), checked by the
// collections' rules (rules.h).
#include "tandem/engine/replica.h"

namespace tandem::engine {

Dot Batch::NextDot() {
  if (!own_seq_loaded_) {
    own_seq_ = meta_.vv.Get(meta_.id);
    own_seq_loaded_ = true;
  }
  return Dot{meta_.id, ++own_seq_};
}

std::pair<Dot, Hlc> Batch::Step() {
  if (!physical_ms_) physical_ms_ = now_();
  HybridClock clock(meta_.clock);
  const Hlc hlc = clock.Tick(*physical_ms_);
  meta_.clock = clock.last();
  return {NextDot(), hlc};
}

Status Batch::Open(std::string_view collection, std::string_view id, std::string_view field) {
  // The field the previous operation wrote, again (a counter incremented 1,000 times in
  // one transaction): changed in memory, written once when the batch moves on or ends.
  // last_.key's names passed validation when they were set (no valid name is empty).
  FieldKey& key = last_.key;
  const bool same_collection = !collection.empty() && key.collection == collection;
  const bool same_record = !id.empty() && key.record == id;
  reopened_ = has_last_ && same_collection && same_record && key.field == field;
  if (reopened_) {
    opened_live_ = !last_.state.markers.empty();
    return Status::Ok();
  }
  TANDEM_RETURN_IF_ERROR(FlushLast());
  if (!same_collection) TANDEM_RETURN_IF_ERROR(ValidateCollectionOnce(collection));
  if (!same_record) TANDEM_RETURN_IF_ERROR(ValidateRecordOnce(id));
  TANDEM_RETURN_IF_ERROR(ValidateFieldOnce(field));
  // The key's strings keep their buffers from one operation to the next.
  if (!same_collection) key.collection.assign(collection);
  if (!same_record) key.record.assign(id);
  key.field.assign(field);
  std::optional<FieldState> state;
  TANDEM_RETURN_IF_ERROR(txn_.GetField(key, &state));
  // Else last_.state stands for the empty state (FlushLast) for the operation to come.
  opened_live_ = state && !state->markers.empty();
  if (state) last_.state = std::move(*state);
  has_last_ = true;
  last_dirty_ = false;
  return Status::Ok();
}

Status Batch::Close() {
  if (reopened_) {
    last_dirty_ = true;
    return Status::Ok();
  }
  Status st = txn_.PutField(last_.key, last_.state);
  // Not written: the next operation reads the field again, without this one.
  if (!st.ok()) {
    has_last_ = false;
    last_.state = FieldState{};
  }
  return st;
}

Status Batch::ValidateOnce(std::string_view collection, std::string_view id,
                           std::string_view field) {
  TANDEM_RETURN_IF_ERROR(ValidateCollectionOnce(collection));
  TANDEM_RETURN_IF_ERROR(ValidateRecordOnce(id));
  return ValidateFieldOnce(field);
}

Status Batch::ValidateCollectionOnce(std::string_view collection) {
  if (collection.empty() || collection != valid_collection_) {
    TANDEM_RETURN_IF_ERROR(ValidateCollection(collection));
    valid_collection_.assign(collection);
  }
  return Status::Ok();
}

Status Batch::ValidateRecordOnce(std::string_view id) {
  if (id.empty() || id != valid_record_) {
    TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
    valid_record_.assign(id);
  }
  return Status::Ok();
}

Status Batch::ValidateFieldOnce(std::string_view field) {
  // From the one after the last found: a batch often writes its fields in a rotation.
  const size_t n = valid_fields_.size();
  for (size_t i = 0, at = last_valid_field_ + 1; i < n; ++i, ++at) {
    if (at >= n) at = 0;
    if (valid_fields_[at] == field) {
      last_valid_field_ = at;
      return Status::Ok();
    }
  }
  TANDEM_RETURN_IF_ERROR(ValidateFieldName(field));
  if (n < kValidFieldsKept) {
    valid_fields_.emplace_back(field);
    last_valid_field_ = n;
  }
  return Status::Ok();
}

Status Batch::FlushLast() {
  if (!has_last_) return Status::Ok();
  has_last_ = false;
  Status st = last_dirty_ ? txn_.PutField(last_.key, last_.state) : Status::Ok();
  // For Open, a state that stands for a field holding nothing: emptied, or a small one
  // kept for its allocations. A large value is not held past its write.
  ClearForOwnOperation(last_.state, meta_.id);
  return st;
}

Result<const CollectionRules*> Batch::RulesOf(std::string_view c) {
  auto it = rules_.find(c);
  if (it == rules_.end()) {
    TANDEM_ASSIGN_OR_RETURN(auto rules, policy_->RulesFor(txn_, c));
    it = rules_.emplace(std::string(c), std::move(rules)).first;
  }
  return it->second.get();
}

Status Batch::Check(std::string_view c, std::string_view id, std::string_view f, Op op,
                    Value* value) {
  if (!policy_) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(ValidateOnce(c, id, f));
  TANDEM_ASSIGN_OR_RETURN(const CollectionRules* rules, RulesOf(c));
  if (!rules) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(rules->CheckOp(f, op, value));
  written_[{std::string(c), std::string(id)}].insert(std::string(f));
  return Status::Ok();
}

Status Batch::Finish() {
  TANDEM_RETURN_IF_ERROR(FlushLast());
  if (own_seq_loaded_) meta_.vv.Raise(meta_.id, own_seq_);
  for (const auto& [key, fields] : written_) {
    RecordState r;
    TANDEM_RETURN_IF_ERROR(txn_.GetRecord(key.first, key.second, &r, nullptr));
    if (!r.Live()) continue;
    auto it = rules_.find(key.first);
    TANDEM_RETURN_IF_ERROR(it->second->CheckRecord(key.second, r, fields));
  }
  return Status::Ok();
}

Status Batch::Put(std::string_view c, std::string_view id, std::string_view f, Value v) {
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kPut, &v));
  TANDEM_RETURN_IF_ERROR(ValidateValue(v));
  if (const auto* ref = std::get_if<BlobRef>(&v))
    TANDEM_RETURN_IF_ERROR(NoteOwnBlobRef(
        txn_, FieldKey{std::string(c), std::string(id), std::string(f)}, *ref, now_()));
  TANDEM_RETURN_IF_ERROR(Open(c, id, f));
  const auto [dot, hlc] = Step();
  ApplyPut(last_.state, dot, hlc, std::move(v));
  return Close();
}

Status Batch::Incr(std::string_view c, std::string_view id, std::string_view f, int64_t by) {
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kIncr, nullptr));
  TANDEM_RETURN_IF_ERROR(Open(c, id, f));
  const auto [dot, hlc] = Step();
  ApplyIncr(last_.state, dot, hlc, by);
  return Close();
}

Status Batch::Add(std::string_view c, std::string_view id, std::string_view f, Value e) {
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kAdd, &e));
  TANDEM_RETURN_IF_ERROR(ValidateValue(e));
  if (const auto* ref = std::get_if<BlobRef>(&e))
    TANDEM_RETURN_IF_ERROR(NoteOwnBlobRef(
        txn_, FieldKey{std::string(c), std::string(id), std::string(f)}, *ref, now_()));
  TANDEM_RETURN_IF_ERROR(Open(c, id, f));
  const auto [dot, hlc] = Step();
  ApplyAdd(last_.state, dot, hlc, std::move(e));
  return Close();
}

Status Batch::Remove(std::string_view c, std::string_view id, std::string_view f, const Value& e) {
  Value element = e;
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kRemove, &element));
  TANDEM_RETURN_IF_ERROR(ValidateValue(element));
  TANDEM_RETURN_IF_ERROR(Open(c, id, f));
  if (!opened_live_) {
    // Nothing written. The state read (a tombstone, say) must neither stand for the empty
    // state at the next Open nor be taken for this field's there: it is read again.
    if (!reopened_) {
      has_last_ = false;
      last_.state = FieldState{};
    }
    return Status::Ok();
  }
  const auto [dot, hlc] = Step();
  ApplyRemove(last_.state, dot, hlc, element);
  return Close();
}

Status Batch::EmptySet(std::string_view c, std::string_view id, std::string_view f) {
  Value none;
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kRemove, &none));
  TANDEM_RETURN_IF_ERROR(Open(c, id, f));
  const auto [dot, hlc] = Step();
  // Every element it holds is observed (its dots are in the context): removed, as a put
  // empties a set.
  last_.state.elements.clear();
  ApplyRemove(last_.state, dot, hlc, none);
  return Close();
}

Status Batch::ReadRecord(std::string_view c, std::string_view id, RecordState* out) {
  TANDEM_RETURN_IF_ERROR(FlushLast());
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  *out = RecordState{};
  return txn_.GetRecord(c, id, out, nullptr);
}

Status Batch::Delete(std::string_view c, std::string_view id) {
  TANDEM_RETURN_IF_ERROR(FlushLast());
  TANDEM_RETURN_IF_ERROR(ValidateCollection(c));
  TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
  RecordState r;
  TANDEM_RETURN_IF_ERROR(txn_.GetRecord(c, id, &r, nullptr));
  if (!r.Live()) return Status::NotFound("not found: " + std::string(c) + "/" + std::string(id));
  if (policy_) {
    TANDEM_ASSIGN_OR_RETURN(const CollectionRules* rules, RulesOf(c));
    if (rules) TANDEM_RETURN_IF_ERROR(rules->CheckOp("", Op::kDelete, nullptr));
  }
  Dot dot = NextDot();
  for (auto& [name, f] : r.fields) {
    ApplyDelete(f, dot);
    TANDEM_RETURN_IF_ERROR(txn_.PutField(FieldKey{std::string(c), std::string(id), name}, f));
  }
  return Status::Ok();
}

}  // namespace tandem::engine
