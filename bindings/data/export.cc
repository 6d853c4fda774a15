// Export (etl.h): a collection's records as JSON lines or CSV that import reads back.
#include <cstring>
#include <set>

#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"

namespace tandem::data {

using bindings::Json;
using bindings::Quote;
using engine::Kind;

Result<Format> ParseFormat(std::string_view name) {
  if (name == "jsonl" || name == "ndjson") return Format::kJsonl;
  if (name == "csv") return Format::kCsv;
  return Status::Invalid("unknown format " + Quote(name) + " (jsonl or csv)");
}

std::optional<Format> FormatOfPath(std::string_view path) {
  auto ends = [&](std::string_view ext) {
    return path.size() > ext.size() && path.substr(path.size() - ext.size()) == ext;
  };
  if (ends(".csv") || ends(".CSV")) return Format::kCsv;
  if (ends(".jsonl") || ends(".ndjson") || ends(".json")) return Format::kJsonl;
  return std::nullopt;
}

// ---- Export ------------------------------------------------------------------------

namespace {

bool Declared(const Schema* s, const std::string& field, FieldType t) {
  const FieldRule* r = s ? s->Find(field) : nullptr;
  return r && r->type == t;
}

// Counters and bytes the schema declares are written plainly (a count, base64), as a
// spreadsheet shows them; import reads them back by the same schema.
Json ExportValue(const Schema* s, const std::string& field, const engine::FieldValue& f) {
  if (f.kind == Kind::kCounter && !Declared(s, field, FieldType::kCounter))
    return Json{{"$counter", f.count}};
  return bindings::FieldToJson(f);
}

// A CSV cell's text: what FromCell reads back as the same value.
std::string CellText(const Schema* s, const std::string& field, const engine::FieldValue& f) {
  if (f.kind == Kind::kRegister) {
    if (auto* str = std::get_if<std::string>(&f.scalar)) {
      // Plain text unless it would read as something else (JSON, or empty), declared a
      // string or not: into a replica without the schema (an empty one has none until
      // its first sync), "5" would come back a number.
      Json j = str->empty() ? Json(Json::value_t::discarded) : Json::parse(*str, nullptr, false);
      if (!str->empty() && j.is_discarded()) return *str;
      return Json(*str).dump();
    }
    if (auto* b = std::get_if<engine::Bytes>(&f.scalar)) {
      Json j = bindings::ValueToJson(f.scalar);
      if (Declared(s, field, FieldType::kBytes) && !b->data.empty())
        return j["$bytes"].get<std::string>();
      return j.dump();
    }
  }
  return ExportValue(s, field, f).dump(-1, ' ', false, Json::error_handler_t::strict);
}

void WriteCell(std::string* out, const std::string& cell) {
  if (cell.find_first_of(",\"\r\n") == std::string::npos && !cell.empty()) {
    *out += cell;
    return;
  }
  *out += '"';
  for (char c : cell) {
    if (c == '"') *out += '"';
    *out += c;
  }
  *out += '"';
}

}  // namespace

Result<uint64_t> Export(engine::Replica& r, std::string_view collection, Format format, FILE* out) {
  TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(collection));
  TANDEM_ASSIGN_OR_RETURN(auto stored, LoadSchema(r, collection));
  const Schema* schema = stored ? stored->schema.get() : nullptr;
  uint64_t count = 0;
  std::string line;
  Status werr;
  auto emit = [&]() {
    line += '\n';
    if (std::fwrite(line.data(), 1, line.size(), out) != line.size())
      werr = Status::Io(std::string("writing the output: ") + std::strerror(errno));
    line.clear();
    return werr.ok();
  };
  if (format == Format::kJsonl) {
    TANDEM_RETURN_IF_ERROR(r.Scan(collection, "", [&](const engine::Record& rec) {
      // The id first, then the fields by name.
      line = "{\"id\":";
      line += Json(rec.id).dump();
      for (const auto& [name, f] : rec.fields) {
        line += ',';
        line += Json(name).dump();
        line += ':';
        line += ExportValue(schema, name, f).dump();
      }
      line += '}';
      ++count;
      return emit();
    }));
  } else {
    // The header needs every field name first: one pass for the names, one for the rows,
    // over one snapshot (a field written between them would have no column).
    std::vector<std::string> names;
    if (schema)
      for (const auto& [name, rule] : schema->fields()) names.push_back(name);
    std::set<std::string> all(names.begin(), names.end());
    bool header = false;
    auto write_header = [&] {
      header = true;
      WriteCell(&line, "id");
      for (const auto& n : names) {
        line += ',';
        WriteCell(&line, n);
      }
      return emit();
    };
    TANDEM_RETURN_IF_ERROR(
        r.ScanPasses(collection, {[&](const engine::Record& rec) {
                                    for (const auto& [name, f] : rec.fields)
                                      if (all.insert(name).second) names.push_back(name);
                                    return true;
                                  },
                                  [&](const engine::Record& rec) {
                                    if (!header && !write_header()) return false;
                                    WriteCell(&line, rec.id);
                                    for (const auto& n : names) {
                                      line += ',';
                                      auto it = rec.fields.find(n);
                                      if (it != rec.fields.end())
                                        WriteCell(&line, CellText(schema, n, it->second));
                                    }
                                    ++count;
                                    return emit();
                                  }}));
    if (!header && werr.ok()) write_header();  // no record: the header alone
  }
  TANDEM_RETURN_IF_ERROR(werr);
  if (std::fflush(out) != 0)
    return Status::Io(std::string("writing the output: ") + std::strerror(errno));
  return count;
}

}  // namespace tandem::data
