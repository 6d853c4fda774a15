// Batch: the mutations of one local write transaction (Replica::Write), checked by the
// collections' rules (rules.h).
#include "tandem/engine/replica.h"

namespace tandem::engine {

Dot Batch::NextDot() {
  uint64_t seq = meta_.vv.Get(meta_.id) + 1;
  meta_.vv.Raise(meta_.id, seq);
  return Dot{meta_.id, seq};
}

void Batch::Operate(FieldState& state,
                    const std::function<void(FieldState&, const Dot&, Hlc)>& fn) {
  HybridClock clock(meta_.clock);
  const Hlc hlc = clock.Tick(now_());
  meta_.clock = clock.last();
  fn(state, NextDot(), hlc);
}

Status Batch::Mutate(std::string_view collection, std::string_view id, std::string_view field,
                     const std::function<void(FieldState&, const Dot&, Hlc)>& fn) {
  // The field the previous operation wrote, again (a counter incremented 1,000 times in
  // one transaction): changed in memory, written once when the batch moves on or ends.
  if (has_last_ && last_.key.collection == collection && last_.key.record == id &&
      last_.key.field == field) {
    Operate(last_.state, fn);
    last_dirty_ = true;
    return Status::Ok();
  }
  TANDEM_RETURN_IF_ERROR(FlushLast());
  TANDEM_RETURN_IF_ERROR(ValidateOnce(collection, id, field));
  // The key's strings keep their buffers from one operation to the next.
  FieldKey& key = last_.key;
  key.collection.assign(collection);
  key.record.assign(id);
  key.field.assign(field);
  std::optional<FieldState> state;
  TANDEM_RETURN_IF_ERROR(txn_.GetField(key, &state));
  last_.state = state ? std::move(*state) : FieldState{};
  Operate(last_.state, fn);
  TANDEM_RETURN_IF_ERROR(txn_.PutField(key, last_.state));
  last_dirty_ = false;
  has_last_ = true;
  return Status::Ok();
}

Status Batch::ValidateOnce(std::string_view collection, std::string_view id,
                           std::string_view field) {
  if (collection.empty() || collection != valid_collection_) {
    TANDEM_RETURN_IF_ERROR(ValidateCollection(collection));
    valid_collection_.assign(collection);
  }
  if (id.empty() || id != valid_record_) {
    TANDEM_RETURN_IF_ERROR(ValidateRecordId(id));
    valid_record_.assign(id);
  }
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
  last_.state = FieldState{};  // a large value is not held past its write
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
    TANDEM_RETURN_IF_ERROR(
        NoteBlobRef(txn_, FieldKey{std::string(c), std::string(id), std::string(f)}, *ref, now_()));
  return Mutate(c, id, f,
                [&](FieldState& s, const Dot& d, Hlc h) { ApplyPut(s, d, h, std::move(v)); });
}

Status Batch::Incr(std::string_view c, std::string_view id, std::string_view f, int64_t by) {
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kIncr, nullptr));
  return Mutate(c, id, f, [&](FieldState& s, const Dot& d, Hlc h) { ApplyIncr(s, d, h, by); });
}

Status Batch::Add(std::string_view c, std::string_view id, std::string_view f, Value e) {
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kAdd, &e));
  TANDEM_RETURN_IF_ERROR(ValidateValue(e));
  if (const auto* ref = std::get_if<BlobRef>(&e))
    TANDEM_RETURN_IF_ERROR(
        NoteBlobRef(txn_, FieldKey{std::string(c), std::string(id), std::string(f)}, *ref, now_()));
  return Mutate(c, id, f,
                [&](FieldState& s, const Dot& d, Hlc h) { ApplyAdd(s, d, h, std::move(e)); });
}

Status Batch::Remove(std::string_view c, std::string_view id, std::string_view f, const Value& e) {
  Value element = e;
  TANDEM_RETURN_IF_ERROR(Check(c, id, f, Op::kRemove, &element));
  TANDEM_RETURN_IF_ERROR(ValidateValue(element));
  return Mutate(c, id, f,
                [&](FieldState& s, const Dot& d, Hlc h) { ApplyRemove(s, d, h, element); });
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
