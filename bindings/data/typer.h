// Internal to the data module: how import types a row's values (by the schema, else
// by inference; see etl.h), shared by its JSON lines and CSV readers.
#pragma once

#include <limits>
#include <set>
#include <string>
#include <vector>

#include "tandem/bindings/json.h"
#include "tandem/data/schema.h"

namespace tandem::data::internal {

using bindings::Json;
using bindings::Quote;
using engine::Kind;
using engine::Value;
using engine::ValueType;

struct FieldWrite {
  std::string name;
  Kind kind = Kind::kRegister;
  Value scalar;            // kRegister
  int64_t count = 0;       // kCounter
  std::vector<Value> set;  // kSet
};

struct Row {
  uint64_t line = 0;
  std::string id;
  std::vector<FieldWrite> fields;
  size_t bytes = 0;
};

inline std::string Describe(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Types a field's value: by the schema where it declares the field, else by inference.
class Typer {
 public:
  explicit Typer(const Schema* schema) : schema_(schema) {}

  // A JSON value (a JSON line's, or a CSV cell that is JSON).
  Status FromJson(const std::string& name, const Json& v, FieldWrite* out) const {
    TANDEM_RETURN_IF_ERROR(Known(name));
    out->name = name;
    const FieldRule* rule = schema_ ? schema_->Find(name) : nullptr;
    const FieldType type = rule ? rule->type : FieldType::kAny;
    if (v.is_object() && v.size() == 1 && v.contains("$counter")) {
      if (type != FieldType::kAny && type != FieldType::kCounter)
        return Status::Invalid(name + ": expected " + FieldTypeName(type) + ", got a counter");
      return Counter(name, v["$counter"], out);
    }
    if (type == FieldType::kCounter) return Counter(name, v, out);
    if (v.is_array()) {
      if (type != FieldType::kAny && type != FieldType::kSet)
        return Status::Invalid(name + ": expected " + FieldTypeName(type) + ", got an array");
      out->kind = Kind::kSet;
      std::set<Value, engine::ValueLess> seen;
      for (const auto& e : v) {
        if (e.is_array() || (e.is_object() && !e.contains("$bytes")))
          return Status::Invalid(name + ": a set's elements are scalars, got " +
                                 Quote(Describe(e)));
        TANDEM_ASSIGN_OR_RETURN(Value val, Scalar(name, AsDeclared(name, e)));
        if (seen.insert(val).second) out->set.push_back(std::move(val));
      }
      return Status::Ok();
    }
    if (type == FieldType::kSet)
      return Status::Invalid(name + ": a set, expected a JSON array, got " + Quote(Describe(v)));
    if (v.is_object() && !v.contains("$bytes"))
      return Status::Invalid(name +
                             ": nested objects are not values (scalars, arrays of "
                             "scalars, $bytes, $counter), got " +
                             Quote(Describe(v)));
    out->kind = Kind::kRegister;
    TANDEM_ASSIGN_OR_RETURN(out->scalar, Scalar(name, AsDeclared(name, v)));
    return Status::Ok();
  }

  // An integer for a field the schema types double (or a set of doubles) is that number,
  // rounded as a double would (one beyond the 64-bit range too).
  Json AsDeclared(const std::string& name, const Json& v) const {
    return v.is_number_integer() && TakesDoubles(name) ? Json(v.get<double>()) : v;
  }

  // A CSV cell (never empty: empty cells leave the field alone).
  Status FromCell(const std::string& name, const std::string& cell, FieldWrite* out) const {
    TANDEM_RETURN_IF_ERROR(Known(name));
    const FieldRule* rule = schema_ ? schema_->Find(name) : nullptr;
    const FieldType type = rule ? rule->type : FieldType::kAny;
    switch (type) {
      case FieldType::kString: {
        // Taken as it is, unless it is a JSON string in quotes (how export writes an
        // empty string, or one that starts with a quote).
        out->name = name;
        Json j = cell[0] == '"' ? Json::parse(cell, nullptr, false) : Json();
        out->scalar = Value{j.is_string() ? j.get<std::string>() : cell};
        return Check(name, &out->scalar);
      }
      case FieldType::kBytes: {
        // Declared bytes: the cell is base64 (or a $bytes object).
        Json j = CellJson(cell);
        TANDEM_RETURN_IF_ERROR(NoRepeatedKey(name, cell, j));
        if (!j.is_object()) j = Json{{"$bytes", cell}};
        return FromJson(name, j, out);
      }
      default:
        break;
    }
    // A declared number, boolean, counter or set may be padded with spaces or tabs (a
    // spreadsheet's alignment); an inferred cell with them is text, whichever side they
    // are on, so " 5" and "5 " read alike.
    const size_t from = cell.find_first_not_of(" \t"), to = cell.find_last_not_of(" \t");
    const bool padded = from != 0 || to != cell.size() - 1;
    if (padded && type != FieldType::kAny && from != std::string::npos)
      return FromCell(name, cell.substr(from, to - from + 1), out);
    Json j = padded ? Json(Json::value_t::discarded) : CellJson(cell);
    const bindings::JsonScan scan =
        j.is_discarded() ? bindings::JsonScan{} : bindings::ScanJson(cell);
    // A cell (or a set's element) with an integer a double would round; a field the
    // schema types double asks for that.
    if (!TakesDoubles(name) && !scan.oversized.empty())
      return Status::Invalid(name + ": integer out of the int64 range: " + Quote(cell) +
                             " (a schema that types the field string keeps it as text)");
    if (j.is_discarded() ||
        (j.is_object() && !(j.size() == 1 && (j.contains("$bytes") || j.contains("$counter"))))) {
      if (type != FieldType::kAny)
        return Status::Invalid(name + ": expected " + FieldTypeName(type) + ", got " + Quote(cell));
      j = cell;  // plain text
    }
    TANDEM_RETURN_IF_ERROR(NoRepeatedKey(name, cell, j, &scan));  // read as JSON, not text
    return FromJson(name, j, out);
  }

  // Normalises and checks a register value or element against the schema.
  // A field a closed schema (additional: false) does not name is refused whatever its
  // value (the write would be).
  // Whether the schema types the field double (or a set of doubles): rounding a number
  // to a double is then what the field asks for.
  bool TakesDoubles(const std::string& name) const {
    const FieldRule* r = schema_ ? schema_->Find(name) : nullptr;
    return r && (r->type == FieldType::kDouble ||
                 (r->type == FieldType::kSet && r->items == FieldType::kDouble));
  }

  Status Known(const std::string& name) const {
    if (schema_ && !schema_->additional() && !schema_->Find(name))
      return Status::Invalid(name + ": not a field of this collection's schema");
    return Status::Ok();
  }

  Status Check(const std::string& name, Value* v) const {
    TANDEM_RETURN_IF_ERROR(engine::ValidateValue(*v));
    if (schema_) TANDEM_RETURN_IF_ERROR(schema_->CheckValue(name, v));
    return engine::ValidateValue(*v);
  }

 private:
  // A cell as JSON, or discarded when it is not JSON a value can be (plain text).
  static Json CellJson(const std::string& s) {
    if (s.empty() || bindings::NestedDeeperThan(s, 2)) return Json(Json::value_t::discarded);
    const char c = s[0];
    const bool maybe = c == '"' || c == '[' || c == '{' || c == '-' || (c >= '0' && c <= '9') ||
                       s == "true" || s == "false" || s == "null";
    return maybe ? Json::parse(s, nullptr, false) : Json(Json::value_t::discarded);
  }

  // A parser keeps the last of a key given twice in a cell's object: which one is meant?
  static Status NoRepeatedKey(const std::string& name, const std::string& cell, const Json& j,
                              const bindings::JsonScan* scan = nullptr) {
    if (auto key = bindings::RepeatedKey(cell, j, scan))
      return Status::Invalid(name + ": key " + Quote(*key) + " appears twice in " + Quote(cell));
    return Status::Ok();
  }

  Result<Value> Scalar(const std::string& name, const Json& j) const {
    auto v = bindings::JsonToScalar(j);
    if (!v.ok()) return Status::Invalid(name + ": " + v.status().message());
    Value val = std::move(v).value();
    TANDEM_RETURN_IF_ERROR(Check(name, &val));
    return val;
  }

  Status Counter(const std::string& name, const Json& j, FieldWrite* out) const {
    if (!j.is_number_integer())
      return Status::Invalid(name + ": a counter, expected an integer, got " + Quote(Describe(j)));
    if (j.is_number_unsigned() &&
        j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Status::Invalid(name + ": outside the 64-bit integer range");
    out->kind = Kind::kCounter;
    out->count = j.get<int64_t>();
    if (const FieldRule* r = schema_ ? schema_->Find(name) : nullptr) {
      const engine::Value n{out->count};
      if ((r->min && CompareNumbers(n, *r->min) < 0) || (r->max && CompareNumbers(n, *r->max) > 0))
        return Status::Invalid(name + ": " + std::to_string(out->count) +
                               " is outside the field's range");
    }
    return Status::Ok();
  }

  const Schema* schema_;
};

}  // namespace tandem::data::internal
