// Collection schemas: the rules every device applies to a collection's data.
//
// A schema is JSON (docs/schema.md):
//   {"fields": {"name":  {"type": "string", "required": true},
//               "phone": {"type": "string", "normalize": ["phone"], "region": "US"},
//               "qty":   {"type": "counter", "min": 0},
//               "state": {"type": "string", "enum": ["new", "paid"]}},
//    "additional": true}
// It is stored as a replicated record (collection _tandem_schemas, id = the collection),
// so it reaches every device with sync, and each version stays readable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/engine/rules.h"
#include "tandem/net/group.h"

namespace tandem::data {

// Where schemas live: sent and accepted by every session whatever the filters.
inline constexpr const char* kSchemasCollection = net::kSchemasCollection;

enum class FieldType { kAny, kString, kInt, kDouble, kBool, kBytes, kCounter, kSet };
const char* FieldTypeName(FieldType t);
enum class Normalizer { kTrim, kLower, kUpper, kPhone };
enum class Resolve { kLatest, kMin, kMax };

// Two numbers (each an int or a double), compared exactly: -1, 0 or 1. Integers beyond
// 2^53 are not rounded, so a limit of 9007199254740993 refuses 9007199254740992. NaN
// (which no stored value is) comes after every number.
int CompareNumbers(const engine::Value& a, const engine::Value& b);

struct FieldRule {
  FieldType type = FieldType::kAny;
  FieldType items = FieldType::kAny;  // a set's elements
  bool required = false;
  std::optional<engine::Value> min, max;  // numbers (int or double): the value; counters: the count
  std::optional<size_t> min_length, max_length;  // strings, in bytes
  std::string pattern;                           // RE2 syntax, unanchored (use ^...$)
  std::vector<engine::Value> enumeration;        // empty: any value
  std::vector<Normalizer> normalize;             // applied in order, before the checks
  std::string region = "";                       // phone numbers without +: this region
  Resolve resolve = Resolve::kLatest;            // how siblings pick a winner
  std::vector<std::string> prefer;               // device ids, first wins
};

class Schema : public engine::CollectionRules {
 public:
  // Parses and checks a schema's JSON; errors name the field and the key.
  static Result<std::shared_ptr<const Schema>> Parse(std::string_view json);
  ~Schema() override;

  const std::map<std::string, FieldRule>& fields() const { return fields_; }
  const FieldRule* Find(std::string_view field) const;
  bool additional() const { return additional_; }

  // The kind a field's values take (register, counter, set), by its declared type.
  std::optional<engine::Kind> DeclaredKind(std::string_view field) const;

  // Normalises a register value or set element of `field` and checks it against the
  // field's rules; the error names the field and the rule.
  Status CheckValue(std::string_view field, engine::Value* v) const;

  // engine::CollectionRules
  Status CheckOp(std::string_view field, engine::Op op, engine::Value* value) const override;
  Status CheckRecord(std::string_view id, const engine::RecordState& record,
                     const std::set<std::string>& written) const override;
  // `resolve` min/max; `prefer` needs to know devices (PickWinnerBy).
  int PickWinner(std::string_view field,
                 const std::vector<engine::Sibling>& siblings) const override;
  // With `device_of` naming the device that wrote a replica's events ("" if unknown).
  int PickWinnerBy(std::string_view field, const std::vector<engine::Sibling>& siblings,
                   const std::function<std::string(const engine::ReplicaId&)>& device_of) const;
  bool prefers() const { return prefers_; }
  // A peer's operation judged by this schema (kind, value, normal form): see
  // engine::CollectionRules::CheckIncoming.
  Status CheckIncomingValue(std::string_view field, engine::Kind kind,
                            const engine::Value& value) const;

 private:
  Schema() = default;
  struct Compiled;
  std::map<std::string, FieldRule> fields_;
  std::map<std::string, std::unique_ptr<Compiled>, std::less<>> compiled_;
  bool additional_ = true;
  bool prefers_ = false;  // some field has a `prefer` rule
};

// A stored schema: its text, parsed, and its version (1, 2, ...).
struct StoredSchema {
  std::string text;
  int64_t version = 0;
  std::shared_ptr<const Schema> schema;
  // Other schemas set at the same time on other devices (before either had synced the
  // other's): this one wins for local writes; changes made under any of them are taken.
  // Setting the schema again settles it.
  size_t concurrent = 0;
};
// The collection's current schema, or nullopt when it has none.
Result<std::optional<StoredSchema>> LoadSchema(engine::Replica& r, std::string_view collection);
// Checks `json` and stores it as the collection's next version. Returns that version.
Result<int64_t> SaveSchema(engine::Replica& r, std::string_view collection, std::string_view json);

// The write policy that applies each collection's stored schema to local writes, reads
// and changes from peers. Parsed schemas are cached by their text, so a schema that
// arrives by sync applies at once.
class SchemaPolicy : public engine::WritePolicy {
 public:
  // The collection's current schema, every version of it (changes from peers are judged
  // by the version in force when they were made), and what `prefer` needs.
  Result<std::shared_ptr<const engine::CollectionRules>> RulesFor(
      engine::ReadTxn& txn, std::string_view collection) override;
  // Schema records, and the trust set (`prefer` maps devices through it).
  bool Invalidates(const engine::FieldKey& key) const override;

 private:
  Result<std::shared_ptr<const Schema>> Parsed(const std::string& text);
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Schema>> parsed_;  // by text
};

}  // namespace tandem::data
