// Rules that local writes must follow, and how reads pick among concurrent values: a
// collection's schema (types, ranges, patterns, normalisers, conflict rules) seen from
// the engine. The engine knows no schema language; it asks a
// WritePolicy for each collection's rules inside the write transaction, so that a
// refused write changes nothing and a schema that arrives by sync applies from the next
// transaction on. Changes from peers are not judged here (the sync layer decides what
// to do with them).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "tandem/engine/field.h"
#include "tandem/engine/status.h"

namespace tandem::engine {

class ReadTxn;
struct FieldKey;

enum class Op : uint8_t { kPut, kIncr, kAdd, kRemove, kDelete };  // kDelete: a whole record

class CollectionRules {
 public:
  virtual ~CollectionRules() = default;
  // Before one operation on `field`: may rewrite *value (the value put, or the element
  // added or removed; null for kIncr) into its normal form, or refuse the operation with
  // an InvalidArgument naming the field and the rule. A record deletion (kDelete) is
  // asked once, with an empty field and a null value.
  virtual Status CheckOp(std::string_view field, Op op, Value* value) const = 0;
  // When the batch is done, for each record it wrote: the record as it will commit and
  // the fields the batch wrote (a deleted record is not checked).
  virtual Status CheckRecord(std::string_view id, const RecordState& record,
                             const std::set<std::string>& written) const = 0;
  // At read time, for a register field with concurrent values (`siblings`, as
  // Siblings() lists them, latest first): the index of the one that reads as the
  // field's value, or -1 for the default (the latest). Must depend only on the siblings
  // (and replicated data), so that every replica picks the same one.
  virtual int PickWinner(std::string_view field, const std::vector<Sibling>& siblings) const {
    (void)field;
    (void)siblings;
    return -1;
  }
  // A change from a peer, before it is applied: one operation new to this replica on
  // `field` (its kind, its value or set element, null for counters and set markers, and
  // its timestamp, which says which version of the rules was in force when it was made;
  // with `at_most`, the operation was made at or before `hlc`, its own time unknown).
  // An error (its message the reason) puts the field state in quarantine instead of
  // applying it (Replica::Quarantined).
  virtual Status CheckIncoming(std::string_view field, Kind kind, const Value& value, Hlc hlc,
                               bool at_most) const {
    (void)field;
    (void)kind;
    (void)value;
    (void)hlc;
    (void)at_most;
    return Status::Ok();
  }
};

class WritePolicy {
 public:
  virtual ~WritePolicy() = default;
  // The rules of `collection` as of `txn`; nullptr when it has none. Called once per
  // collection per write transaction, and by reads (Get, Scan, Changes, Conflicts).
  virtual Result<std::shared_ptr<const CollectionRules>> RulesFor(ReadTxn& txn,
                                                                  std::string_view collection) = 0;
  // Whether a change to this field can change any collection's rules (a schema record):
  // rules read earlier in the transaction are read again after it.
  virtual bool Invalidates(const FieldKey& key) const {
    (void)key;
    return false;
  }
};

}  // namespace tandem::engine
