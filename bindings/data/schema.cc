#include "tandem/data/schema.h"

#include <phonenumbers/phonenumberutil.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>

#include "tandem/bindings/json.h"
#include "tandem/net/group.h"
#include "tandem/net/identity.h"

namespace tandem::data {

using bindings::Json;
using bindings::Quote;
using engine::Value;
using engine::ValueType;

struct Schema::Compiled {
  std::unique_ptr<re2::RE2> pattern;
};

Schema::~Schema() = default;

const char* FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kAny:
      return "any";
    case FieldType::kString:
      return "string";
    case FieldType::kInt:
      return "int";
    case FieldType::kDouble:
      return "double";
    case FieldType::kBool:
      return "bool";
    case FieldType::kBytes:
      return "bytes";
    case FieldType::kCounter:
      return "counter";
    case FieldType::kSet:
      return "set";
  }
  return "?";
}

namespace {

std::optional<FieldType> TypeByName(const std::string& n) {
  for (auto t : {FieldType::kAny, FieldType::kString, FieldType::kInt, FieldType::kDouble,
                 FieldType::kBool, FieldType::kBytes, FieldType::kCounter, FieldType::kSet})
    if (n == FieldTypeName(t)) return t;
  return std::nullopt;
}

Status Bad(std::string_view field, const std::string& what) {
  return Status::Invalid("schema: field " + Quote(field) + ": " + what);
}

// A number from the schema (min, max): an integer stays one (compared exactly).
Result<Value> Number(std::string_view field, const char* key, const Json& j) {
  if (!j.is_number()) return Bad(field, std::string(key) + " must be a number");
  if (j.is_number_integer() &&
      (!j.is_number_unsigned() ||
       j.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
    return Value{j.get<int64_t>()};
  return Value{j.get<double>()};
}

Result<size_t> Length(std::string_view field, const char* key, const Json& j) {
  if (!j.is_number_unsigned()) return Bad(field, std::string(key) + " must be a whole number");
  return static_cast<size_t>(j.get<uint64_t>());
}

Result<FieldRule> ParseRule(const std::string& name, const Json& j) {
  if (!j.is_object()) return Bad(name, "expected an object of rules");
  FieldRule r;
  for (const auto& [key, v] : j.items()) {
    if (key == "type" || key == "items") {
      if (!v.is_string()) return Bad(name, key + " must be a string");
      auto t = TypeByName(v.get<std::string>());
      if (!t)
        return Bad(name, "unknown " + key + " " + Quote(v.get<std::string>()) +
                             " (string, int, double, bool, bytes, counter, set, any)");
      if (key == "items" && (*t == FieldType::kCounter || *t == FieldType::kSet))
        return Bad(name, "a set's items are scalars");
      (key == "type" ? r.type : r.items) = *t;
    } else if (key == "required") {
      if (!v.is_boolean()) return Bad(name, "required must be true or false");
      r.required = v.get<bool>();
    } else if (key == "min" || key == "max") {
      TANDEM_ASSIGN_OR_RETURN(Value d, Number(name, key.c_str(), v));
      (key == "min" ? r.min : r.max) = std::move(d);
    } else if (key == "min_length" || key == "max_length") {
      TANDEM_ASSIGN_OR_RETURN(size_t n, Length(name, key.c_str(), v));
      (key == "min_length" ? r.min_length : r.max_length) = n;
    } else if (key == "pattern") {
      if (!v.is_string()) return Bad(name, "pattern must be a string");
      r.pattern = v.get<std::string>();
    } else if (key == "enum") {
      if (!v.is_array() || v.empty()) return Bad(name, "enum must be a non-empty array");
      for (const auto& e : v) {
        auto val = bindings::JsonToScalar(e);
        if (!val.ok()) return Bad(name, "enum: " + val.status().message());
        r.enumeration.push_back(std::move(val).value());
      }
    } else if (key == "normalize") {
      if (!v.is_array()) return Bad(name, "normalize must be an array");
      for (const auto& n : v) {
        const std::string s = n.is_string() ? n.get<std::string>() : "";
        if (s == "trim") {
          r.normalize.push_back(Normalizer::kTrim);
        } else if (s == "lower") {
          r.normalize.push_back(Normalizer::kLower);
        } else if (s == "upper") {
          r.normalize.push_back(Normalizer::kUpper);
        } else if (s == "phone") {
          r.normalize.push_back(Normalizer::kPhone);
        } else {
          return Bad(name,
                     "unknown normalizer " + Quote(n.dump()) + " (trim, lower, upper, phone)");
        }
      }
    } else if (key == "region") {
      if (!v.is_string() || v.get<std::string>().size() != 2)
        return Bad(name, "region must be a two-letter region code such as \"US\"");
      r.region = v.get<std::string>();
      std::transform(r.region.begin(), r.region.end(), r.region.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
      const auto* util = i18n::phonenumbers::PhoneNumberUtil::GetInstance();
      if (util->GetCountryCodeForRegion(r.region) == 0)
        return Bad(name, "unknown region " + Quote(v.get<std::string>()));
    } else if (key == "resolve") {
      const std::string s = v.is_string() ? v.get<std::string>() : "";
      if (s == "latest") {
        r.resolve = Resolve::kLatest;
      } else if (s == "min") {
        r.resolve = Resolve::kMin;
      } else if (s == "max") {
        r.resolve = Resolve::kMax;
      } else {
        return Bad(name, "resolve must be \"latest\", \"min\" or \"max\"");
      }
    } else if (key == "prefer") {
      if (!v.is_array()) return Bad(name, "prefer must be an array of device ids");
      for (const auto& d : v) {
        if (!d.is_string() || d.get<std::string>().empty())
          return Bad(name, "prefer must be an array of device ids");
        r.prefer.push_back(d.get<std::string>());
      }
    } else if (key == "description") {
      // Free text for people.
    } else {
      return Bad(name, "unknown rule " + Quote(key));
    }
  }
  const bool phone = std::count(r.normalize.begin(), r.normalize.end(), Normalizer::kPhone) > 0;
  const FieldType scalar = r.type == FieldType::kSet ? r.items : r.type;
  if (!r.normalize.empty() && scalar != FieldType::kString && scalar != FieldType::kAny)
    return Bad(name, "normalize applies to strings");
  if (phone && r.region.empty() &&
      std::count(r.normalize.begin(), r.normalize.end(), Normalizer::kPhone) > 0)
    r.region = "ZZ";  // unknown region: numbers must then start with +
  if (r.type != FieldType::kSet && r.items != FieldType::kAny)
    return Bad(name, "items applies to sets");
  // A double field stores whole numbers as doubles; its enum must say them alike.
  if (scalar == FieldType::kDouble)
    for (auto& e : r.enumeration)
      if (engine::TypeOf(e) == ValueType::kInt) e = static_cast<double>(std::get<int64_t>(e));
  if (r.min && r.max && CompareNumbers(*r.min, *r.max) > 0) return Bad(name, "min is above max");
  if (r.min_length && r.max_length && *r.min_length > *r.max_length)
    return Bad(name, "min_length is above max_length");
  if (r.resolve != Resolve::kLatest && !r.prefer.empty())
    return Bad(name, "give either resolve or prefer");
  if ((r.resolve != Resolve::kLatest || !r.prefer.empty()) &&
      (r.type == FieldType::kCounter || r.type == FieldType::kSet))
    return Bad(name, "counters and sets merge by design; resolve and prefer apply to the others");
  return r;
}

bool IsNumber(const Value& v) {
  return engine::TypeOf(v) == ValueType::kInt || engine::TypeOf(v) == ValueType::kDouble;
}

}  // namespace

int CompareNumbers(const Value& a, const Value& b) {
  const bool ai = engine::TypeOf(a) == ValueType::kInt, bi = engine::TypeOf(b) == ValueType::kInt;
  if (ai && bi) return engine::CompareValues(a, b);
  if (!ai && !bi) {
    const double x = std::get<double>(a), y = std::get<double>(b);
    return x < y ? -1 : (y < x ? 1 : 0);
  }
  // An integer against a double, without rounding the integer: by the double's whole part
  // (exact within int64's range), then by its fraction.
  const int64_t i = std::get<int64_t>(ai ? a : b);
  const double d = std::get<double>(ai ? b : a);
  int c;  // i against d; NaN (never a stored value) after every number
  if (std::isnan(d) || d >= 0x1p63) {
    c = -1;
  } else if (d < -0x1p63) {
    c = 1;
  } else {
    const double whole = std::trunc(d);
    const auto w = static_cast<int64_t>(whole);
    c = i < w ? -1 : (i > w ? 1 : (d > whole ? -1 : (d < whole ? 1 : 0)));
  }
  return ai ? c : -c;
}

namespace {

std::string Trim(const std::string& s) {
  const char* ws = " \t\r\n\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

Status Phone(std::string_view field, const std::string& region, std::string* s) {
  using i18n::phonenumbers::PhoneNumber;
  using i18n::phonenumbers::PhoneNumberUtil;
  const auto* util = PhoneNumberUtil::GetInstance();
  // E.164 keeps the number alone: an extension, a vanity number's letters or words around
  // the number would be dropped without a word. Only digits and the marks that format
  // them are taken.
  constexpr std::string_view kMarks = " +-.()/\t";
  for (const char c : *s)
    if (!(c >= '0' && c <= '9') && kMarks.find(c) == std::string_view::npos)
      return Status::Invalid(std::string(field) + ": " + Quote(*s) +
                             " is not a phone number alone (only digits, spaces and + - . ( ) "
                             "/ are kept in E.164: keep an extension or a note in another field)");
  PhoneNumber n;
  if (util->Parse(*s, region, &n) != PhoneNumberUtil::NO_PARSING_ERROR || !util->IsValidNumber(n))
    return Status::Invalid(
        std::string(field) + ": " + Quote(*s) + " is not a valid phone number" +
        (region == "ZZ" ? " (give it with +country code)" : " for region " + region));
  std::string out;
  util->Format(n, PhoneNumberUtil::E164, &out);
  *s = std::move(out);
  return Status::Ok();
}

bool Matches(FieldType t, const Value& v) {
  switch (t) {
    case FieldType::kAny:
      return true;
    case FieldType::kString:
      return engine::TypeOf(v) == ValueType::kString;
    case FieldType::kInt:
    case FieldType::kCounter:
      return engine::TypeOf(v) == ValueType::kInt;
    case FieldType::kDouble:
      return IsNumber(v);
    case FieldType::kBool:
      return engine::TypeOf(v) == ValueType::kBool;
    case FieldType::kBytes:
      return engine::TypeOf(v) == ValueType::kBytes;
    case FieldType::kSet:
      return false;
  }
  return false;
}

// A value as JSON for a message, cut to about 60 bytes (values may be 16 MiB).
std::string Describe(const Value& v) {
  std::string s = bindings::ValueToJson(v).dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() <= 64) return s;
  size_t cut = 60;
  while (cut > 0 && (static_cast<uint8_t>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "... (" + std::to_string(s.size()) + " bytes)";
}

}  // namespace

Result<std::shared_ptr<const Schema>> Schema::Parse(std::string_view json) {
  if (bindings::NestedDeeperThan(json, 8)) return Status::Invalid("schema: nested too deep");
  Json j = Json::parse(json, nullptr, false);
  if (j.is_discarded()) return Status::Invalid("schema: not valid JSON");
  if (!j.is_object()) return Status::Invalid("schema: expected a JSON object with \"fields\"");
  std::shared_ptr<Schema> s(new Schema());
  for (const auto& [key, v] : j.items()) {
    if (key == "fields") {
      if (!v.is_object()) return Status::Invalid("schema: \"fields\" must be an object");
      for (const auto& [name, rule] : v.items()) {
        if (name == "id") return Status::Invalid("schema: \"id\" is the record id, not a field");
        TANDEM_RETURN_IF_ERROR(engine::ValidateFieldName(name));
        TANDEM_ASSIGN_OR_RETURN(FieldRule r, ParseRule(name, rule));
        auto c = std::make_unique<Compiled>();
        if (!r.pattern.empty()) {
          re2::RE2::Options o;
          o.set_log_errors(false);
          c->pattern = std::make_unique<re2::RE2>(r.pattern, o);
          if (!c->pattern->ok())
            return Bad(name, "pattern does not compile: " + c->pattern->error());
        }
        s->prefers_ = s->prefers_ || !r.prefer.empty();
        s->compiled_.emplace(name, std::move(c));
        s->fields_.emplace(name, std::move(r));
      }
    } else if (key == "additional") {
      if (!v.is_boolean()) return Status::Invalid("schema: \"additional\" must be true or false");
      s->additional_ = v.get<bool>();
    } else if (key == "description") {
    } else {
      return Status::Invalid("schema: unknown key " + Quote(key) +
                             " (fields, additional, description)");
    }
  }
  return std::shared_ptr<const Schema>(std::move(s));
}

const FieldRule* Schema::Find(std::string_view field) const {
  auto it = fields_.find(std::string(field));
  return it == fields_.end() ? nullptr : &it->second;
}

std::optional<engine::Kind> Schema::DeclaredKind(std::string_view field) const {
  const FieldRule* r = Find(field);
  if (!r || r->type == FieldType::kAny) return std::nullopt;
  if (r->type == FieldType::kCounter) return engine::Kind::kCounter;
  if (r->type == FieldType::kSet) return engine::Kind::kSet;
  return engine::Kind::kRegister;
}

Status Schema::CheckValue(std::string_view field, Value* v) const {
  const FieldRule* r = Find(field);
  if (!r) {
    if (additional_) return Status::Ok();
    return Status::Invalid(std::string(field) + ": not a field of this collection's schema");
  }
  const std::string f(field);
  // Normalisers first: what is checked and stored is the normal form.
  if (engine::TypeOf(*v) == ValueType::kString) {
    auto& s = std::get<std::string>(*v);
    for (auto n : r->normalize) {
      switch (n) {
        case Normalizer::kTrim:
          s = Trim(s);
          break;
        case Normalizer::kLower:
          for (auto& c : s)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
          break;
        case Normalizer::kUpper:
          for (auto& c : s)
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
          break;
        case Normalizer::kPhone:
          TANDEM_RETURN_IF_ERROR(Phone(field, r->region, &s));
          break;
      }
    }
  }
  const FieldType type = r->type == FieldType::kSet ? r->items : r->type;
  // A double field takes integers as doubles (a price of 5 is 5.0).
  if (type == FieldType::kDouble && engine::TypeOf(*v) == ValueType::kInt)
    *v = static_cast<double>(std::get<int64_t>(*v));
  const bool null = engine::TypeOf(*v) == ValueType::kNull;
  if (null && r->required) return Status::Invalid(f + ": required, and null is not a value");
  if (!null && !Matches(type, *v))
    return Status::Invalid(f + ": expected " + (r->type == FieldType::kSet ? "a set of " : "") +
                           FieldTypeName(type) + ", got " + Quote(Describe(*v)));
  if (null) return Status::Ok();
  if (IsNumber(*v)) {
    if (engine::TypeOf(*v) == ValueType::kDouble && std::isnan(std::get<double>(*v)))
      return Status::Invalid(f + ": NaN is not a number this field takes");
    if (r->min && CompareNumbers(*v, *r->min) < 0)
      return Status::Invalid(f + ": " + Describe(*v) + " is below the minimum " +
                             Describe(*r->min));
    if (r->max && CompareNumbers(*v, *r->max) > 0)
      return Status::Invalid(f + ": " + Describe(*v) + " is above the maximum " +
                             Describe(*r->max));
  }
  if (engine::TypeOf(*v) == ValueType::kString) {
    const auto& s = std::get<std::string>(*v);
    if (r->min_length && s.size() < *r->min_length)
      return Status::Invalid(f + ": shorter than min_length " + std::to_string(*r->min_length));
    if (r->max_length && s.size() > *r->max_length)
      return Status::Invalid(f + ": longer than max_length " + std::to_string(*r->max_length));
    auto it = compiled_.find(field);
    if (it != compiled_.end() && it->second->pattern &&
        !re2::RE2::PartialMatch(s, *it->second->pattern))
      return Status::Invalid(f + ": " + Quote(s) + " does not match the pattern " +
                             Quote(r->pattern));
  }
  if (!r->enumeration.empty()) {
    bool found = false;
    for (const auto& e : r->enumeration) found = found || engine::SameValue(e, *v);
    if (!found) {
      std::string list;
      for (size_t i = 0; i < r->enumeration.size() && i < 10; ++i)
        list += (i ? ", " : "") + Describe(r->enumeration[i]);
      if (r->enumeration.size() > 10)
        list += ", ... (" + std::to_string(r->enumeration.size()) + " values)";
      return Status::Invalid(f + ": " + Describe(*v) + " is not one of " + list);
    }
  }
  return Status::Ok();
}

Status Schema::CheckOp(std::string_view field, engine::Op op, Value* value) const {
  if (op == engine::Op::kDelete) return Status::Ok();  // a schema never forbids deleting
  const FieldRule* r = Find(field);
  const std::string f(field);
  if (r) {
    const bool counter = r->type == FieldType::kCounter, set = r->type == FieldType::kSet;
    switch (op) {
      case engine::Op::kPut:
        if (counter) return Status::Invalid(f + ": a counter; change it with incr");
        if (set) return Status::Invalid(f + ": a set; change it with add and remove");
        break;
      case engine::Op::kIncr:
        if (!counter && r->type != FieldType::kAny)
          return Status::Invalid(f + ": a " + std::string(FieldTypeName(r->type)) +
                                 " field, not a counter");
        return Status::Ok();
      case engine::Op::kDelete:
        return Status::Ok();
      case engine::Op::kAdd:
      case engine::Op::kRemove:
        if (!set && r->type != FieldType::kAny)
          return Status::Invalid(f + ": a " + std::string(FieldTypeName(r->type)) +
                                 " field, not a set");
        // Removing is always allowed, and names the element as stored: a bad element,
        // or one stored before a normaliser existed, must be removable.
        if (op == engine::Op::kRemove) return Status::Ok();
        break;
    }
  } else if (!additional_) {
    return Status::Invalid(f + ": not a field of this collection's schema");
  }
  if (op == engine::Op::kIncr) return Status::Ok();
  return CheckValue(field, value);
}

Status Schema::CheckRecord(std::string_view id, const engine::RecordState& record,
                           const std::set<std::string>& written) const {
  for (const auto& [name, r] : fields_) {
    auto it = record.fields.find(name);
    const bool live = it != record.fields.end() && it->second.Live();
    if (r.required && !live) return Status::Invalid(std::string(id) + ": " + name + " is required");
    if (live && written.count(name) && r.type == FieldType::kCounter && (r.min || r.max)) {
      const auto v = engine::Read(it->second);
      if (v && v->kind == engine::Kind::kCounter) {
        const Value count{static_cast<int64_t>(v->count)};
        if (r.min && CompareNumbers(count, *r.min) < 0)
          return Status::Invalid(name + ": the count would be " + std::to_string(v->count) +
                                 ", below the minimum " + Describe(*r.min));
        if (r.max && CompareNumbers(count, *r.max) > 0)
          return Status::Invalid(name + ": the count would be " + std::to_string(v->count) +
                                 ", above the maximum " + Describe(*r.max));
      }
    }
  }
  return Status::Ok();
}

Status Schema::CheckIncomingValue(std::string_view field, engine::Kind kind,
                                  const Value& value) const {
  const FieldRule* r = Find(field);
  const std::string f(field);
  if (!r) {
    if (additional_) return Status::Ok();
    return Status::Invalid(f + ": not a field of this collection's schema");
  }
  const bool counter = r->type == FieldType::kCounter, set = r->type == FieldType::kSet;
  if (r->type != FieldType::kAny) {
    const engine::Kind want = counter ? engine::Kind::kCounter
                              : set   ? engine::Kind::kSet
                                      : engine::Kind::kRegister;
    if (kind != want)
      return Status::Invalid(f + ": a " + FieldTypeName(r->type) + " field, written as a " +
                             engine::KindName(kind));
  }
  if (kind == engine::Kind::kCounter) return Status::Ok();  // counts are not judged
  if (kind == engine::Kind::kSet && engine::TypeOf(value) == ValueType::kNull)
    return Status::Ok();  // a set operation's marker; its elements come one by one
  Value normal = value;
  TANDEM_RETURN_IF_ERROR(CheckValue(field, &normal));
  if (!engine::SameValue(normal, value))
    return Status::Invalid(f + ": " + Describe(value) + " is not in normal form (" +
                           Describe(normal) + ")");
  return Status::Ok();
}

int Schema::PickWinner(std::string_view field, const std::vector<engine::Sibling>& siblings) const {
  return PickWinnerBy(field, siblings, nullptr);
}

int Schema::PickWinnerBy(
    std::string_view field, const std::vector<engine::Sibling>& siblings,
    const std::function<std::string(const engine::ReplicaId&)>& device_of) const {
  const FieldRule* r = Find(field);
  if (!r || siblings.empty()) return -1;
  if (!r->prefer.empty()) {
    if (!device_of) return -1;
    // The first listed device with a value among the siblings; its latest value.
    for (const auto& dev : r->prefer)
      for (size_t i = 0; i < siblings.size(); ++i)
        if (device_of(siblings[i].dot.replica) == dev) return static_cast<int>(i);
    return -1;
  }
  if (r->resolve == Resolve::kLatest) return -1;
  // Numbers compare by value whatever their type; ties keep the later write.
  auto less = [](const Value& a, const Value& b) {
    if (IsNumber(a) && IsNumber(b)) return CompareNumbers(a, b) < 0;
    return engine::CompareValues(a, b) < 0;
  };
  size_t best = 0;
  for (size_t i = 1; i < siblings.size(); ++i) {
    const Value& v = siblings[i].value;
    const Value& b = siblings[best].value;
    if (r->resolve == Resolve::kMin ? less(v, b) : less(b, v)) best = i;
  }
  return static_cast<int>(best);
}

// ---- Storage --------------------------------------------------------------------

namespace {

// The number of a version field ("v7": 7), if `name` is one.
std::optional<int64_t> VersionNumber(const std::string& name) {
  if (name.size() < 2 || name.size() > 19 || name[0] != 'v' ||
      name.find_first_not_of("0123456789", 1) != name.npos)
    return std::nullopt;
  return std::strtoll(name.c_str() + 1, nullptr, 10);
}

// The schema text and version in a stored schema record.
std::optional<std::pair<std::string, int64_t>> Current(const engine::RecordState& r) {
  auto rec = engine::Read("", r);
  if (!rec) return std::nullopt;
  auto s = rec->fields.find("schema");
  auto v = rec->fields.find("version");
  if (s == rec->fields.end() || engine::TypeOf(s->second.scalar) != ValueType::kString)
    return std::nullopt;
  int64_t version = 0;
  if (v != rec->fields.end() && engine::TypeOf(v->second.scalar) == ValueType::kInt)
    version = std::get<int64_t>(v->second.scalar);
  return std::make_pair(std::get<std::string>(s->second.scalar), version);
}

}  // namespace

Result<std::optional<StoredSchema>> LoadSchema(engine::Replica& r, std::string_view collection) {
  TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(collection));
  TANDEM_ASSIGN_OR_RETURN(auto state, r.GetState(kSchemasCollection, collection));
  auto cur = Current(state);
  if (!cur) return std::optional<StoredSchema>();
  StoredSchema s;
  s.text = cur->first;
  s.version = cur->second;
  TANDEM_ASSIGN_OR_RETURN(s.schema, Schema::Parse(s.text));
  if (auto f = state.fields.find("schema"); f != state.fields.end())
    s.concurrent = engine::Siblings(f->second).size() - 1;
  return std::optional<StoredSchema>(std::move(s));
}

namespace {
// What a schema being set must be besides what Parse checks. A stored one (perhaps set by
// an earlier version) is read without these, so that it keeps applying as it did.
Status CheckNewSchema(std::string_view json, const Schema& s) {
  if (auto dup = bindings::DuplicateKey(json))
    return Status::Invalid("schema: key " + Quote(*dup) + " appears twice (which one is meant?)");
  if (!Json::parse(json, nullptr, false).contains("fields"))
    return Status::Invalid("schema: \"fields\" is required (an object, which may be empty)");
  for (const auto& [name, rule] : s.fields()) {
    // A rule that cannot apply to the field's type would be ignored: refused instead.
    const FieldType scalar = rule.type == FieldType::kSet ? rule.items : rule.type;
    if ((rule.min || rule.max) && scalar != FieldType::kInt && scalar != FieldType::kDouble &&
        scalar != FieldType::kCounter && scalar != FieldType::kAny)
      return Bad(name, std::string("min and max apply to numbers (int, double, counter), not ") +
                           FieldTypeName(scalar) + " values");
    if ((rule.min_length || rule.max_length || !rule.pattern.empty()) &&
        scalar != FieldType::kString && scalar != FieldType::kAny)
      return Bad(name, std::string("min_length, max_length and pattern apply to strings, not ") +
                           FieldTypeName(scalar) + " values");
    for (const auto& d : rule.prefer)
      if (!net::IsValidDeviceId(d))
        return Bad(name, "prefer: " + Quote(d) + " is not a device id (tandem devices lists them)");
    // A value the field refuses whatever is written (of another type, outside its range,
    // not in normal form) is no choice at all.
    for (const Value& e : rule.enumeration) {
      Value v = e;
      Status st = s.CheckValue(name, &v);
      if (!st.ok() || !engine::SameValue(v, e))
        return Bad(name,
                   "enum value " + bindings::ValueToJson(e).dump() + " can never be written" +
                       (st.ok() ? std::string(" (not in normal form)") : ": " + st.message()));
    }
  }
  return Status::Ok();
}
}  // namespace

Result<int64_t> SaveSchema(engine::Replica& r, std::string_view collection, std::string_view json) {
  TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(collection));
  if (collection == net::kAnyCollection) return Status::Invalid(net::kAnyCollectionIsNoName);
  TANDEM_ASSIGN_OR_RETURN(auto parsed, Schema::Parse(json));
  TANDEM_RETURN_IF_ERROR(CheckNewSchema(json, *parsed));
  int64_t version = 0;
  TANDEM_RETURN_IF_ERROR(r.Write([&](engine::Batch& b) {
    engine::RecordState state;
    TANDEM_RETURN_IF_ERROR(b.ReadRecord(kSchemasCollection, collection, &state));
    auto cur = Current(state);
    // After the newest version stored: a device that set several versions while another
    // set one keeps them all (the winning `version` may be the other's, and lower).
    version = (cur ? cur->second : 0) + 1;
    for (const auto& [name, f] : state.fields)
      if (auto n = VersionNumber(name); n && *n >= version) version = *n + 1;
    const std::string text(json);
    TANDEM_RETURN_IF_ERROR(b.Put(kSchemasCollection, collection, "schema", Value{text}));
    TANDEM_RETURN_IF_ERROR(b.Put(kSchemasCollection, collection, "version", Value{version}));
    // Every version stays readable: a change made under an older one is judged by it.
    return b.Put(kSchemasCollection, collection, "v" + std::to_string(version), Value{text});
  }));
  return version;
}

namespace {

// A collection's rules as stored: the current schema for local writes and reads, every
// version by the time it was set (a peer's change is judged by the version in force when
// it was made), and, for `prefer` rules, the trust set's map from replica to device as
// of the transaction (replicated, so every replica maps alike).
class StoredRules : public engine::CollectionRules {
 public:
  struct Version {
    engine::Hlc set_at;
    int64_t number;
    std::shared_ptr<const Schema> schema;
  };
  StoredRules(std::shared_ptr<const Schema> current, std::vector<Version> versions,
              std::map<std::string, std::string> devices)
      : current_(std::move(current)),
        versions_(std::move(versions)),
        devices_(std::move(devices)) {}
  Status CheckOp(std::string_view field, engine::Op op, Value* value) const override {
    return current_->CheckOp(field, op, value);
  }
  Status CheckRecord(std::string_view id, const engine::RecordState& record,
                     const std::set<std::string>& written) const override {
    return current_->CheckRecord(id, record, written);
  }
  int PickWinner(std::string_view field,
                 const std::vector<engine::Sibling>& siblings) const override {
    if (!current_->prefers()) return current_->PickWinner(field, siblings);
    return current_->PickWinnerBy(field, siblings, [&](const engine::ReplicaId& r) {
      auto it = devices_.find(r.Hex());
      return it == devices_.end() ? std::string() : it->second;
    });
  }
  Status CheckIncoming(std::string_view field, engine::Kind kind, const Value& value,
                       engine::Hlc hlc, bool at_most) const override {
    const Version* in_force = nullptr;
    for (const auto& v : versions_)
      if (v.set_at <= hlc && (!in_force || v.set_at >= in_force->set_at)) in_force = &v;
    if (!in_force) return Status::Ok();  // made before the collection had a schema
    Status st = in_force->schema->CheckIncomingValue(field, kind, value);
    if (st.ok()) return st;
    for (const auto& v : versions_) {
      if (v.set_at > hlc || &v == in_force) continue;
      // Made at or before hlc: any version in force up to then may have been the one.
      // Otherwise one set at once with the one in force on another device may have
      // been (the same number: both were set after the same version).
      if ((at_most || v.number == in_force->number) &&
          v.schema->CheckIncomingValue(field, kind, value).ok())
        return Status::Ok();
    }
    return Status::Invalid(st.message() + " (schema version " + std::to_string(in_force->number) +
                           ")");
  }

 private:
  std::shared_ptr<const Schema> current_;
  std::vector<Version> versions_;
  std::map<std::string, std::string> devices_;  // replica id (hex) -> device id
};

Result<std::map<std::string, std::string>> ReplicaDevices(engine::ReadTxn& txn) {
  std::map<std::string, std::string> out;
  TANDEM_RETURN_IF_ERROR(txn.ScanRecords(
      net::kDevicesCollection, "", [&](const std::string& device, engine::RecordState& state) {
        auto rec = engine::Read(device, state);
        if (!rec) return true;
        auto it = rec->fields.find("replicas");
        if (it == rec->fields.end() || it->second.kind != engine::Kind::kSet) return true;
        for (const auto& v : it->second.set)
          if (auto* hex = std::get_if<std::string>(&v)) out[*hex] = device;
        return true;
      }));
  return out;
}

}  // namespace

bool SchemaPolicy::Invalidates(const engine::FieldKey& key) const {
  return key.collection == kSchemasCollection || key.collection == net::kDevicesCollection;
}

Result<std::shared_ptr<const Schema>> SchemaPolicy::Parsed(const std::string& text) {
  std::lock_guard lock(mu_);
  auto it = parsed_.find(text);
  if (it != parsed_.end()) return it->second;
  TANDEM_ASSIGN_OR_RETURN(auto schema, Schema::Parse(text));
  parsed_.emplace(text, schema);
  return schema;
}

Result<std::shared_ptr<const engine::CollectionRules>> SchemaPolicy::RulesFor(
    engine::ReadTxn& txn, std::string_view collection) {
  if (net::IsSystemCollection(collection)) return std::shared_ptr<const engine::CollectionRules>();
  engine::RecordState state;
  TANDEM_RETURN_IF_ERROR(txn.GetRecord(kSchemasCollection, collection, &state, nullptr));
  auto cur = Current(state);
  if (!cur) return std::shared_ptr<const engine::CollectionRules>();
  auto schema = Parsed(cur->first);
  if (!schema.ok())
    return Status::Invalid("the schema of " + Quote(collection) +
                           " cannot be used: " + schema.status().message());
  // Every version, by when it was set (the newest write of its field).
  std::vector<StoredRules::Version> versions;
  for (const auto& [name, f] : state.fields) {
    const auto number = VersionNumber(name);
    if (!number) continue;
    // Two devices that set the collection's next version at once both wrote it: each
    // is a version, set when its writer set it.
    for (const auto& sibling : engine::Siblings(f)) {
      const auto* text = std::get_if<std::string>(&sibling.value);
      if (sibling.kind != engine::Kind::kRegister || !text) continue;
      auto parsed = Parsed(*text);
      if (!parsed.ok()) continue;  // a version this build cannot read judges nothing
      versions.push_back({sibling.hlc, *number, parsed.value()});
    }
  }
  std::map<std::string, std::string> devices;
  if (schema.value()->prefers()) {
    TANDEM_ASSIGN_OR_RETURN(devices, ReplicaDevices(txn));
  }
  return std::shared_ptr<const engine::CollectionRules>(std::make_shared<StoredRules>(
      std::move(schema).value(), std::move(versions), std::move(devices)));
}

}  // namespace tandem::data
