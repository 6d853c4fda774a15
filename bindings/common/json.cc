#include "tandem/bindings/json.h"

#include <sodium.h>

#include <charconv>
#include <cstring>
#include <ctime>
#include <limits>
#include <set>

namespace tandem::bindings {

using engine::Value;

namespace {

std::string ToBase64(const std::string& bin) {
  std::string out(sodium_base64_encoded_len(bin.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bin.data()),
                    bin.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

Result<std::string> FromBase64(const std::string& text) {
  std::string out(text.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0)
    return Status::Invalid("$bytes is not valid base64");
  out.resize(len);
  return out;
}

std::string IsoTime(uint64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  snprintf(out, sizeof out, "%s.%03uZ", buf, static_cast<unsigned>(ms % 1000));
  return out;
}

}  // namespace

namespace {

// Appends one character of `s` at *i, escaped if it is a control byte or invalid UTF-8.
void AppendEscaped(std::string_view s, size_t* i, std::string* out) {
  const auto c = static_cast<unsigned char>(s[*i]);
  auto hex = [&](unsigned char b) {
    static const char kHex[] = "0123456789abcdef";
    *out += "\\x";
    out->push_back(kHex[b >> 4]);
    out->push_back(kHex[b & 15]);
  };
  if (c == '\n') {
    *out += "\\n";
  } else if (c == '\t') {
    *out += "\\t";
  } else if (c == '\r') {
    *out += "\\r";
  } else if (c < 0x20 || c == 0x7f) {
    hex(c);
  } else if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else {
    // A whole, valid UTF-8 sequence goes through; anything else byte by byte, escaped.
    size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n && *i + n <= s.size() && engine::IsValidUtf8(s.substr(*i, n))) {
      // C1 controls (U+0080..U+009F) can drive terminals too.
      const auto c2 = static_cast<unsigned char>(s[*i + 1]);
      if (n == 2 && c == 0xc2 && c2 < 0xa0) {
        hex(c);
        hex(c2);
      } else {
        out->append(s.substr(*i, n));
      }
      *i += n - 1;
    } else {
      hex(c);
    }
  }
}

}  // namespace

std::string Quote(std::string_view text, size_t max) {
  std::string out = "\"";
  size_t i = 0;
  for (; i < text.size() && out.size() < max + 1; ++i) {
    if (text[i] == '"' || text[i] == '\\') out.push_back('\\');
    AppendEscaped(text, &i, &out);
  }
  out.push_back('"');
  if (i < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

std::string Printable(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) AppendEscaped(text, &i, &out);
  return out;
}

bool NestedDeeperThan(std::string_view text, size_t depth) {
  size_t level = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++level > depth) return true;
    } else if ((c == ']' || c == '}') && level > 0) {
      --level;
    }
  }
  return false;
}

namespace {
// The position of the quote that closes the JSON string whose contents start at `i` (or
// the end of the text): found with memchr, most of a line being inside strings.
size_t StringEnd(std::string_view json, size_t i) {
  for (;;) {
    const void* q = i < json.size() ? std::memchr(json.data() + i, '"', json.size() - i) : nullptr;
    if (!q) return json.size();
    const size_t at = static_cast<const char*>(q) - json.data();
    size_t slashes = 0;
    while (at - slashes > i && json[at - slashes - 1] == '\\') ++slashes;
    if (slashes % 2 == 0) return at;
    i = at + 1;
  }
}
}  // namespace

JsonScan ScanJson(std::string_view json) {
  JsonScan out;
  int depth = 0;
  bool key_ahead = false;  // a string just closed: a key if a colon follows
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (c == ':' && key_ahead) ++out.keys;
    key_ahead = false;
    if (c == '"') {
      i = StringEnd(json, i + 1);
      key_ahead = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t end = i + 1;
      bool integer = true;
      for (; end < json.size(); ++end) {
        const char d = json[end];
        if (d == '.' || d == 'e' || d == 'E')
          integer = false;
        else if ((d < '0' || d > '9') && d != '+' && d != '-')
          break;
      }
      const std::string_view token = json.substr(i, end - i);
      i = end - 1;
      // What a parser makes a double of: below int64's range, or above uint64's (those in
      // between it keeps exact, as unsigned). Every int64 has at most 19 digits and a sign.
      int64_t v = 0;
      uint64_t u = 0;
      const char* b = token.data();
      const char* e = b + token.size();
      if (integer && token.size() >= 19 && out.oversized.empty() &&
          std::from_chars(b, e, v).ec == std::errc::result_out_of_range &&
          (token[0] == '-' || std::from_chars(b, e, u).ec == std::errc::result_out_of_range))
        out.oversized = token;
    }
  }
  return out;
}

size_t KeysIn(const Json& j) {
  size_t n = j.is_object() ? j.size() : 0;
  if (j.is_structured())
    for (const Json& v : j) n += KeysIn(v);
  return n;
}

std::optional<std::string> DuplicateKey(std::string_view json) {
  std::vector<std::set<std::string>> open;  // the keys of each object being read
  std::optional<std::string> dup;
  Json::parser_callback_t seen = [&](int, Json::parse_event_t e, Json& parsed) {
    if (e == Json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (e == Json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (e == Json::parse_event_t::key && !dup && !open.empty() && parsed.is_string() &&
               !open.back().insert(parsed.get<std::string>()).second) {
      dup = parsed.get<std::string>();
    }
    return true;
  };
  const Json whole = Json::parse(json, seen, /*allow_exceptions=*/false);  // read for `seen`
  (void)whole;
  return dup;
}

std::optional<std::string> RepeatedKey(std::string_view text, const Json& parsed,
                                       const JsonScan* scan) {
  if (!parsed.is_structured() || (scan ? *scan : ScanJson(text)).keys <= KeysIn(parsed))
    return std::nullopt;
  return DuplicateKey(text).value_or("?");
}

Result<Value> ParseScalar(std::string_view text) {
  if (NestedDeeperThan(text, 4)) return Status::Invalid("not a JSON scalar: nested too deep");
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Invalid("not valid JSON: " + Quote(text));
  const JsonScan scan = ScanJson(text);
  if (auto key = RepeatedKey(text, j, &scan))
    return Status::Invalid("key " + Quote(*key) + " appears twice in " + Quote(text) +
                           " (which one is meant?)");
  // An integer literal too large for int64 would silently become a double.
  if (j.is_number_float() && !scan.oversized.empty())
    return Status::Invalid("integer out of the int64 range: " + Quote(text));
  auto v = JsonToScalar(j);
  // A $bytes or $blob object keeps its own message (a value over the limit, a bad hash).
  const bool tagged =
      j.is_object() &&
      (j.contains("$blob") || (j.size() == 1 && j.contains("$bytes") && j["$bytes"].is_string()));
  if (!v.ok() && j.is_structured() && !tagged)
    return Status::Invalid(
        "expected a JSON scalar (number, string, true, false, null or "
        "{\"$bytes\": \"<base64>\"}), got: " +
        Quote(text));
  return v;
}

// {"$blob": "<64 hex digits>", "size": N, "type": "image/png"} (type optional).
Result<Value> JsonToBlobRef(const Json& j) {
  const std::string shape =
      "a blob reference is {\"$blob\": \"<64 hex digits>\", \"size\": <bytes>, \"type\": "
      "\"<media type>\"}";
  engine::BlobRef ref;
  for (const auto& [k, v] : j.items()) {
    if (k == "$blob") {
      if (!v.is_string()) return Status::Invalid("\"$blob\" must be a string: " + shape);
      auto h = engine::BlobHashFromHex(v.get<std::string>());
      if (!h.ok()) return Status::Invalid(h.status().message() + ": " + shape);
      ref.hash = *h;
    } else if (k == "size") {
      if (!v.is_number_unsigned())
        return Status::Invalid("\"size\" must be a whole number of bytes: " + shape);
      ref.size = v.get<uint64_t>();
    } else if (k == "type") {
      if (!v.is_string()) return Status::Invalid("\"type\" must be a string: " + shape);
      ref.type = v.get<std::string>();
    } else {
      return Status::Invalid("unexpected \"" + k + "\" in " + shape);
    }
  }
  if (!j.contains("size")) return Status::Invalid("missing \"size\": " + shape);
  Value out{std::move(ref)};
  TANDEM_RETURN_IF_ERROR(engine::ValidateValue(out));
  return out;
}

Result<Value> JsonToScalar(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return Value{};
    case Json::value_t::boolean:
      return Value{j.get<bool>()};
    case Json::value_t::number_integer:
      return Value{j.get<int64_t>()};
    case Json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Status::Invalid("integer out of the int64 range: " + std::to_string(u));
      return Value{static_cast<int64_t>(u)};
    }
    case Json::value_t::number_float:
      return Value{j.get<double>()};
    case Json::value_t::string: {
      Value v{j.get<std::string>()};
      TANDEM_RETURN_IF_ERROR(engine::ValidateValue(v));
      return v;
    }
    case Json::value_t::object:
      if (j.size() == 1 && j.contains("$bytes") && j["$bytes"].is_string()) {
        TANDEM_ASSIGN_OR_RETURN(std::string bin, FromBase64(j["$bytes"].get<std::string>()));
        Value v{engine::Bytes{std::move(bin)}};
        TANDEM_RETURN_IF_ERROR(engine::ValidateValue(v));
        return v;
      }
      if (j.contains("$blob")) return JsonToBlobRef(j);
      [[fallthrough]];
    default:
      return Status::Invalid(
          "expected a JSON scalar (number, string, true, false, null or "
          "{\"$bytes\": \"<base64>\"}), got: " +
          Quote(j.dump(-1, ' ', false, Json::error_handler_t::replace)));
  }
}

Json ValueToJson(const Value& v) {
  switch (engine::TypeOf(v)) {
    case engine::ValueType::kNull:
      return nullptr;
    case engine::ValueType::kBool:
      return std::get<bool>(v);
    case engine::ValueType::kInt:
      return std::get<int64_t>(v);
    case engine::ValueType::kDouble:
      return std::get<double>(v);
    case engine::ValueType::kString:
      return std::get<std::string>(v);
    case engine::ValueType::kBytes:
      return Json{{"$bytes", ToBase64(std::get<engine::Bytes>(v).data)}};
    case engine::ValueType::kBlob: {
      const auto& b = std::get<engine::BlobRef>(v);
      Json j{{"$blob", engine::HexOf(b.hash)}, {"size", b.size}};
      if (!b.type.empty()) j["type"] = b.type;
      return j;
    }
  }
  return nullptr;
}

Json FieldToJson(const engine::FieldValue& f) {
  switch (f.kind) {
    case engine::Kind::kRegister:
      return ValueToJson(f.scalar);
    case engine::Kind::kCounter:
      return f.count;
    case engine::Kind::kSet: {
      Json a = Json::array();
      for (const auto& v : f.set) a.push_back(ValueToJson(v));
      return a;
    }
  }
  return nullptr;
}

Json RecordToJson(const engine::Record& r) {
  Json j = Json::object();
  j["id"] = r.id;
  for (const auto& [name, f] : r.fields) j[name] = FieldToJson(f);
  return j;
}

Json DumpLine(const std::string& collection, const engine::Record& r) {
  return Json{{"collection", collection}, {"record", RecordToJson(r)}};
}

Json ChangeToJson(const engine::Change& c) {
  Json j{{"collection", c.collection},
         {"cursor", c.cursor},
         {"id", c.id},
         {"deleted", !c.record.has_value()}};
  if (c.record) j["record"] = RecordToJson(*c.record);
  return j;
}

Json ConflictsToJson(
    const std::vector<std::pair<std::string, std::vector<engine::Sibling>>>& conflicts) {
  Json j = Json::object();
  for (const auto& [field, sibs] : conflicts) {
    Json a = Json::array();
    for (const auto& s : sibs) {
      Json e{{"kind", engine::KindName(s.kind)},
             {"writer", s.dot.replica.Hex()},
             {"seq", s.dot.seq},
             {"hlc", s.hlc},
             {"time", IsoTime(engine::HlcMillis(s.hlc))},
             {"winner", s.winner}};
      if (s.kind == engine::Kind::kRegister) e["value"] = ValueToJson(s.value);
      a.push_back(std::move(e));
    }
    j[field] = std::move(a);
  }
  return j;
}

Json NodeSnapshotToJson(const net::NodeSnapshot& s) {
  Json peers = Json::array();
  for (const auto& p : s.peers) {
    Json j{{"address", p.address},
           {"device", p.device},
           {"replica_id", p.replica_id},
           {"direction", p.direction},
           {"connected", p.connected},
           {"last_sync_ms", p.last_sync_ms},
           {"bytes_in", p.bytes_in},
           {"bytes_out", p.bytes_out},
           {"sessions", p.sessions},
           {"errors", p.errors},
           {"fields_sent", p.fields_sent},
           {"fields_received", p.fields_received},
           {"fields_refused", p.fields_refused},
           {"fields_quarantined", p.fields_quarantined},
           {"rebases", p.rebases},
           {"rebases_served", p.rebases_served},
           {"states_compared", p.states_compared},
           {"states_differed", p.states_differed},
           {"blobs_received", p.blobs_received},
           {"blobs_sent", p.blobs_sent},
           {"blob_bytes_received", p.blob_bytes_received},
           {"blob_bytes_sent", p.blob_bytes_sent},
           {"messages_in", p.messages_in},
           {"messages_out", p.messages_out},
           {"connected_ms", p.connected_ms},
           {"last_error", p.last_error}};
    // Changes of ours the peer has not acknowledged yet (known while connected; at least
    // this many when it reaches the cap).
    j["pending_changes"] = p.pending_changes ? Json(*p.pending_changes) : Json(nullptr);
    peers.push_back(std::move(j));
  }
  const char* mode = s.mode == net::NodeMode::kOnce       ? "once"
                     : s.mode == net::NodeMode::kInterval ? "interval"
                                                          : "live";
  // "all", the collections (an empty list: none), or {"all_but": [...]}.
  auto filter = [](const engine::CollectionFilter& f) -> Json {
    if (f.Everything()) return "all";
    Json names = Json(std::vector<std::string>(f.names.begin(), f.names.end()));
    if (f.all) return Json{{"all_but", std::move(names)}};
    return names;
  };
  return Json{{"running", s.running},
              {"send", filter(s.send)},
              {"receive", filter(s.receive)},
              {"device", s.device},
              {"listen", s.listen},
              {"mode", mode},
              {"started_ms", s.started_ms},
              {"updated_ms", s.updated_ms},
              {"refused_connections", s.refused_connections},
              {"refused_by_reason", s.refused_by_reason},
              {"failures", s.failures},
              {"peers", peers}};
}

Json NodeEventToJson(const net::NodeEvent& e) {
  return Json{{"kind", net::NodeEventName(e.kind)},
              {"device", e.device},
              {"address", e.address},
              {"message", e.message},
              {"ok", e.ok},
              {"fields_received", e.fields_received},
              {"fields_sent", e.fields_sent}};
}

Json MemberToJson(const net::Member& m, bool this_device) {
  Json replicas = Json::array();
  for (const auto& id : m.replicas)
    replicas.push_back(Json{{"replica_id", id.Hex()}, {"bound", m.bound.count(id) > 0}});
  return Json{{"device", m.device},
              {"device_id", m.device},
              {"status", m.revoked ? "revoked" : "member"},
              {"role", net::RoleName(m.role)},
              {"founder", m.founder},
              {"granted_by", m.added_by},
              {"revoked_by", m.revoked_by},
              {"added_by", m.added_by},
              {"added_ms", m.added_ms},
              {"this_device", this_device},
              {"replicas", replicas}};
}

std::string Canonical(const Json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict);
}

std::string Reported(const Json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

}  // namespace tandem::bindings
