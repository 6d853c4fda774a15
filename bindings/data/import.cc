// Import (etl.h): JSON lines and CSV readers, typing (typer.h), batches, strict passes.
#include <csv.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <set>

#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/net/authority.h"
#include "typer.h"

namespace tandem::data {

using bindings::Json;
using bindings::Quote;
using engine::Kind;
using engine::Value;
using engine::ValueType;
using internal::Describe;
using internal::FieldWrite;
using internal::Row;
using internal::Typer;

namespace {

// A line (JSON lines) or a CSV row longer than this is refused: it would hold more than
// a record can (several fields of the largest value).
constexpr size_t kMaxLine = size_t{32} << 20;  // a 16 MiB value as JSON base64, and more
constexpr size_t kChunk = 1 << 16;
// A batch also ends at this many bytes of values, whatever its row count.
constexpr size_t kMaxBatchBytes = 16 << 20;

size_t RowBytes(const Row& r) {
  size_t n = r.id.size();
  for (const auto& f : r.fields) {
    n += f.name.size() + 16;
    if (auto* s = std::get_if<std::string>(&f.scalar)) n += s->size();
    if (auto* b = std::get_if<engine::Bytes>(&f.scalar)) n += b->data.size();
    for (const auto& e : f.set)
      n += 16 + (std::holds_alternative<std::string>(e) ? std::get<std::string>(e).size() : 0);
  }
  return n;
}

// The schema's required fields that `row` does not name and `record` (as it stands
// before the row) does not hold live: what the row would leave missing.
std::set<std::string> MissingRequired(const Schema& schema, const Row& row,
                                      const engine::RecordState& record) {
  std::set<std::string> missing;
  for (const auto& field : schema.fields()) {
    const auto& [name, rule] = field;
    if (!rule.required) continue;
    // (clang 14 captures no structured binding: the pair's member instead.)
    const bool given = std::any_of(row.fields.begin(), row.fields.end(),
                                   [&](const auto& f) { return f.name == field.first; });
    const auto it = record.fields.find(name);
    if (!given && (it == record.fields.end() || !it->second.Live())) missing.insert(name);
  }
  return missing;
}

// True if the schema requires a field `row` does not name (its record must be read).
bool LacksRequired(const Schema* schema, const Row& row) {
  return schema && !MissingRequired(*schema, row, engine::RecordState{}).empty();
}

// Makes the record state equal to the row's fields, writing only what differs. Each row
// must leave its record with the schema's required fields, as written in order: whether
// a row passes never depends on which rows share its transaction (a later row of the
// same record does not excuse it), as in a strict import's checks.
Status ApplyRow(engine::Batch& b, std::string_view coll, const Schema* schema, const Row& row,
                uint64_t* written) {
  engine::RecordState st;
  TANDEM_RETURN_IF_ERROR(b.ReadRecord(coll, row.id, &st));
  if (schema) {
    const auto missing = MissingRequired(*schema, row, st);
    if (!missing.empty()) return Status::Invalid(row.id + ": " + *missing.begin() + " is required");
  }
  for (const auto& fw : row.fields) {
    auto it = st.fields.find(fw.name);
    const engine::FieldState* fs = it == st.fields.end() ? nullptr : &it->second;
    std::optional<engine::FieldValue> cur = fs ? engine::Read(*fs) : std::nullopt;
    const bool settled = cur && engine::Siblings(*fs).size() == 1;
    switch (fw.kind) {
      case Kind::kRegister:
        if (settled && cur->kind == Kind::kRegister && engine::SameValue(cur->scalar, fw.scalar))
          continue;
        TANDEM_RETURN_IF_ERROR(b.Put(coll, row.id, fw.name, fw.scalar));
        ++*written;
        break;
      case Kind::kCounter: {
        const __int128 sum = fs ? engine::CounterSum(*fs) : 0;
        if (settled && cur->kind == Kind::kCounter && sum == fw.count) continue;
        const __int128 delta = static_cast<__int128>(fw.count) - sum;
        if (delta > std::numeric_limits<int64_t>::max() ||
            delta < std::numeric_limits<int64_t>::min())
          return Status::Invalid(fw.name + ": the counter is too far from " +
                                 std::to_string(fw.count) + " to set it in one step");
        TANDEM_RETURN_IF_ERROR(b.Incr(coll, row.id, fw.name, static_cast<int64_t>(delta)));
        ++*written;
        break;
      }
      case Kind::kSet: {
        std::vector<Value> have;
        if (cur && cur->kind == Kind::kSet) have = cur->set;
        std::set<Value, engine::ValueLess> want(fw.set.begin(), fw.set.end());
        std::set<Value, engine::ValueLess> had(have.begin(), have.end());
        if (settled && cur->kind == Kind::kSet && want.size() == had.size() &&
            std::equal(want.begin(), want.end(), had.begin(),
                       [](const Value& x, const Value& y) { return engine::SameValue(x, y); }))
          continue;
        for (const auto& e : had)
          if (!want.count(e)) {
            TANDEM_RETURN_IF_ERROR(b.Remove(coll, row.id, fw.name, e));
            ++*written;
          }
        bool wrote = false;
        for (const auto& e : fw.set)
          if (!had.count(e) || !settled || cur->kind != Kind::kSet) {
            TANDEM_RETURN_IF_ERROR(b.Add(coll, row.id, fw.name, e));
            ++*written;
            wrote = true;
          }
        if (!wrote && fw.set.empty() && !(cur && cur->kind == Kind::kSet)) {
          TANDEM_RETURN_IF_ERROR(b.EmptySet(coll, row.id, fw.name));
          ++*written;
        }
        break;
      }
    }
  }
  return Status::Ok();
}

// Where rows go: validated only (a strict import's first pass) or written in batches.
class Sink {
 public:
  Sink(engine::Replica& r, const ImportOptions& o, const Schema* schema, ImportReport* report)
      : r_(r), o_(o), schema_(schema), report_(report) {}
  // A strict import's first passes: check rows and write nothing. kValidate parses and
  // checks every row, and notes rows that lack a required field the stored record does
  // not have either; kResolve (another pass, only if there are such rows) looks for an
  // earlier row of the input that gives the field, as writing in order would.
  enum class Mode { kApply, kValidate, kResolve };
  Mode mode = Mode::kApply;
  bool validate_only() const { return mode != Mode::kApply; }
  bool has_pending() const { return !pending_.empty(); }

  // A bad row: reported; fatal when strict.
  Status Bad(uint64_t line, const std::string& reason) {
    ++report_->bad_rows;
    if (o_.bad_row) o_.bad_row(line, reason);
    if (o_.strict && report_->rows_imported == 0)
      return Status::Invalid("line " + std::to_string(line) + ": " + reason +
                             " (strict: nothing was imported)");
    // Every row passed the checks, but the replica changed before this one was written
    // (a schema that arrived by sync, another writer): what went before stays.
    if (o_.strict)
      return Status::Invalid("line " + std::to_string(line) + ": " + reason +
                             " (strict: every row passed the checks, but the replica changed "
                             "while they were written; the " +
                             std::to_string(report_->rows_imported) + " rows before line " +
                             std::to_string(line) + " stay imported)");
    return Status::Ok();
  }

  Status Add(Row row) {
    ++report_->rows;
    if (mode == Mode::kResolve) {
      auto it = pending_.find(row.id);
      if (it == pending_.end()) return Status::Ok();
      for (auto& p : it->second) {
        if (p.line <= row.line) continue;
        for (const auto& f : row.fields)
          if (f.kind != Kind::kRegister || engine::TypeOf(f.scalar) != ValueType::kNull)
            p.missing.erase(f.name);
      }
      return Status::Ok();
    }
    if (mode == Mode::kValidate) {
      // Required fields the row does not give must be in the record by then.
      if (LacksRequired(schema_, row)) {
        auto st = r_.GetState(o_.collection, row.id);  // read once, for every such field
        if (!st.ok()) return st.status();
        auto missing = MissingRequired(*schema_, row, *st);
        if (!missing.empty()) {
          constexpr size_t kMaxPending = 100000;
          if (++pending_count_ > kMaxPending)
            return Bad(row.line, *missing.begin() + " is required (and over " +
                                     std::to_string(kMaxPending) + " rows lack a required field)");
          pending_[row.id].push_back(Pending{row.line, std::move(missing)});
        }
      }
      return Status::Ok();
    }
    bytes_ += RowBytes(row);
    rows_.push_back(std::move(row));
    if (rows_.size() >= o_.batch_rows || bytes_ >= kMaxBatchBytes) return Flush();
    return Status::Ok();
  }

  // After kResolve: the first row whose required fields no earlier row gave.
  Status FinishResolve() {
    const Pending* first = nullptr;
    const std::string* first_id = nullptr;
    for (const auto& [id, list] : pending_)
      for (const auto& p : list)
        if (!p.missing.empty() && (!first || p.line < first->line)) {
          first = &p;
          first_id = &id;
        }
    if (first) return Bad(first->line, *first_id + ": " + *first->missing.begin() + " is required");
    return Status::Ok();
  }

  // A write that failed (a full disk, say): how far the import got, so nobody guesses.
  Status Kept(const Status& st, uint64_t line) const {
    return Status(st.code(), st.message() + " (the " + std::to_string(report_->rows_imported) +
                                 " rows imported before line " + std::to_string(line) +
                                 " stay; importing the file again writes only what is missing)");
  }

  Status Flush() {
    if (rows_.empty()) return Status::Ok();
    // The rows leave the batch whatever happens: a failure is not retried at the end.
    struct Clear {
      Sink* s;
      ~Clear() {
        s->rows_.clear();
        s->bytes_ = 0;
      }
    } clear{this};
    uint64_t written = 0;
    Status st = r_.Write([&](engine::Batch& b) {
      written = 0;
      for (const auto& row : rows_)
        TANDEM_RETURN_IF_ERROR(ApplyRow(b, o_.collection, schema_, row, &written));
      return Status::Ok();
    });
    // A long import walks much of the store: let go of its pages now and then.
    if (++batches_ % 16 == 0) r_.store().ReleaseMemory();
    if (st.ok()) {
      report_->rows_imported += rows_.size();
      report_->fields_written += written;
      for (const auto& row : rows_) report_->rows_empty += row.fields.empty();
    } else if (st.code() == Code::kInvalidArgument) {
      // One row broke a rule the first checks could not see (a required field, a
      // counter's range): apply row by row to find it.
      for (const auto& row : rows_) {
        uint64_t w = 0;
        Status one = r_.Write([&](engine::Batch& b) {
          w = 0;
          return ApplyRow(b, o_.collection, schema_, row, &w);
        });
        if (one.ok()) {
          ++report_->rows_imported;
          report_->fields_written += w;
          report_->rows_empty += row.fields.empty();
        } else if (one.code() == Code::kInvalidArgument) {
          TANDEM_RETURN_IF_ERROR(Bad(row.line, one.message()));
        } else {
          return Kept(one, row.line);
        }
      }
    } else {
      return Kept(st, rows_.front().line);
    }
    return Status::Ok();
  }

 private:
  engine::Replica& r_;
  const ImportOptions& o_;
  const Schema* schema_;
  ImportReport* report_;
  std::vector<Row> rows_;
  size_t bytes_ = 0;
  uint64_t batches_ = 0;
  struct Pending {
    uint64_t line;
    std::set<std::string> missing;
  };
  std::map<std::string, std::vector<Pending>> pending_;
  size_t pending_count_ = 0;
};

// Reads the input in chunks, copying it to a spool file when asked (a strict import
// from a pipe reads its input twice).
class Input {
 public:
  Input(FILE* in, FILE* spool) : in_(in), spool_(spool) {}
  // Bytes read into buf; 0 at EOF. Errors are sticky (error()).
  size_t Read(char* buf, size_t n) {
    size_t got = std::fread(buf, 1, n, in_);
    if (got < n && std::ferror(in_)) error_ = std::strerror(errno ? errno : EIO);
    if (spool_ && got > 0 && std::fwrite(buf, 1, got, spool_) != got)
      error_ = std::string("cannot spool the input: ") + std::strerror(errno);
    bytes_ += got;
    return got;
  }
  const std::string& error() const { return error_; }
  uint64_t bytes() const { return bytes_; }

 private:
  FILE* in_;
  FILE* spool_;
  std::string error_;
  uint64_t bytes_ = 0;
};

class Parser {
 public:
  Parser(const ImportOptions& o, const Typer& typer, Sink& sink, Input& in, uint64_t total)
      : o_(o), typer_(typer), sink_(sink), in_(in), total_(total) {}
  virtual ~Parser() = default;
  virtual Status Run() = 0;

 protected:
  void Progress(uint64_t rows, bool validating) {
    if (o_.progress) o_.progress(ImportProgress{rows, in_.bytes(), total_, validating});
  }
  const ImportOptions& o_;
  const Typer& typer_;
  Sink& sink_;
  Input& in_;
  uint64_t total_;
};

Status IdFrom(const std::string& id, Row* row) {
  if (id.empty()) return Status::Invalid("the record id is empty");
  Status st = engine::ValidateRecordId(id);
  if (!st.ok()) return Status::Invalid("record id: " + st.message());
  row->id = id;
  return Status::Ok();
}

// ---- JSON lines ------------------------------------------------------------------

class JsonlParser : public Parser {
 public:
  using Parser::Parser;
  Status Run() override {
    std::string buf(kChunk, '\0'), line;
    uint64_t lineno = 0, rows = 0;
    bool too_long = false;
    auto finish_line = [&]() -> Status {
      ++lineno;
      if (too_long) {
        too_long = false;
        line.clear();
        return sink_.Bad(lineno, "the line is longer than " + std::to_string(kMaxLine >> 20) +
                                     " MiB (a value is at most 16 MiB)");
      }
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (lineno == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // a BOM
      if (line.find_first_not_of(" \t") == std::string::npos) {
        line.clear();
        return Status::Ok();  // blank lines separate nothing
      }
      ++rows;
      Row row;
      row.line = lineno;
      Status st = MakeRow(line, &row);
      line.clear();
      if (!st.ok()) return sink_.Bad(lineno, st.message());
      return sink_.Add(std::move(row));
    };
    uint64_t last_progress = 0;
    for (;;) {
      size_t n = in_.Read(buf.data(), buf.size());
      if (!in_.error().empty()) return Status::Io("reading the input: " + in_.error());
      if (n == 0) break;
      size_t pos = 0;
      while (pos < n) {
        const char* nl = static_cast<const char*>(std::memchr(buf.data() + pos, '\n', n - pos));
        const size_t end = nl ? static_cast<size_t>(nl - buf.data()) : n;
        if (!too_long) {
          if (line.size() + (end - pos) > kMaxLine) {
            too_long = true;
            std::string().swap(line);
          } else {
            line.append(buf.data() + pos, end - pos);
          }
        }
        pos = end;
        if (nl) {
          ++pos;
          TANDEM_RETURN_IF_ERROR(finish_line());
        }
      }
      if (rows - last_progress >= 1000) {
        Progress(rows, sink_.validate_only());
        last_progress = rows;
      }
    }
    if (!line.empty() || too_long) TANDEM_RETURN_IF_ERROR(finish_line());
    Progress(rows, sink_.validate_only());
    return Status::Ok();
  }

 private:
  // Whether every double in the row belongs to a field the schema types double (which
  // asks for rounding): an integer literal a parser made a double of is then one of them.
  bool OnlyInDoubles(const Json& j) const {
    for (const auto& [key, v] : j.items()) {
      const bool has_double =
          v.is_number_float() ||
          (v.is_array() &&
           std::any_of(v.begin(), v.end(), [](const Json& e) { return e.is_number_float(); })) ||
          (v.is_object() &&
           std::any_of(v.begin(), v.end(), [](const Json& e) { return e.is_number_float(); }));
      if (has_double && !typer_.TakesDoubles(key)) return false;
    }
    return true;
  }

  Status MakeRow(const std::string& text, Row* row) {
    // A record is an object of scalars, arrays of scalars and $bytes/$counter objects.
    if (bindings::NestedDeeperThan(text, 3))
      return Status::Invalid("nested deeper than a record can be (objects or arrays in values)");
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::parse_error& e) {
      std::string why = e.what();
      // "[json.exception.parse_error.101] parse error at line 1, column 7: ..." -> the rest
      auto at = why.find("column");
      return Status::Invalid("not valid JSON" + (at == std::string::npos
                                                     ? std::string()
                                                     : " (" + why.substr(at) + ")"));
    } catch (const Json::exception&) {
      // A number past what a double holds (1E400), found by the import fuzz target.
      return Status::Invalid("not valid JSON (a number is out of range)");
    }
    if (!j.is_object()) return Status::Invalid("expected a JSON object, one record per line");
    const bindings::JsonScan scan = bindings::ScanJson(text);
    if (auto key = bindings::RepeatedKey(text, j, &scan))
      return Status::Invalid("key " + Quote(*key) + " appears twice (which one is meant?)");
    if (!scan.oversized.empty() && !OnlyInDoubles(j))
      return Status::Invalid("integer out of the int64 range: " + std::string(scan.oversized) +
                             " (in quotes, as a string, it keeps every digit)");
    auto id = j.find(o_.id_field);
    if (id == j.end()) return Status::Invalid("no " + Quote(o_.id_field) + " key (the record id)");
    if (id->is_string()) {
      TANDEM_RETURN_IF_ERROR(IdFrom(id->get<std::string>(), row));
    } else if (id->is_number_integer()) {
      TANDEM_RETURN_IF_ERROR(IdFrom(id->dump(), row));
    } else {
      return Status::Invalid("the record id must be a string or an integer, got " +
                             Quote(Describe(*id)));
    }
    for (const auto& [key, v] : j.items()) {
      if (key == o_.id_field) continue;
      Status st = engine::ValidateFieldName(key);
      if (!st.ok()) return st;
      FieldWrite fw;
      TANDEM_RETURN_IF_ERROR(typer_.FromJson(key, v, &fw));
      row->fields.push_back(std::move(fw));
    }
    return Status::Ok();
  }
};

// ---- CSV (libcsv) ----------------------------------------------------------------

class CsvParser : public Parser {
 public:
  using Parser::Parser;
  ~CsvParser() override {
    if (init_) csv_free(&p_);
  }

  Status Run() override {
    if (csv_init(&p_, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0)
      return Status::Io("cannot start the CSV parser");
    init_ = true;
    // RFC 4180: spaces are part of a field.
    csv_set_space_func(&p_, [](unsigned char) { return 0; });
    // libcsv grows a cell's buffer by this much at a time (128 bytes by default): with
    // cells of megabytes, a realloc that moves the buffer made that quadratic.
    csv_set_blk_size(&p_, size_t{1} << 20);
    std::string buf(kChunk, '\0');
    uint64_t last_progress = 0;
    bool first = true;
    for (;;) {
      size_t n = in_.Read(buf.data(), buf.size());
      if (!in_.error().empty()) return Status::Io("reading the input: " + in_.error());
      if (n == 0) break;
      const char* data = buf.data();
      if (first && n >= 3 && std::memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
        data += 3;  // a byte order mark, as spreadsheets write
        n -= 3;
      }
      first = false;
      size_t done = csv_parse(&p_, data, n, &CsvParser::OnField, &CsvParser::OnRow, this);
      if (done != n) {
        TANDEM_RETURN_IF_ERROR(Drain());  // the rows before it
        // Count the lines up to the bad byte for the message.
        for (size_t i = 0; i < done; ++i) newlines_ += data[i] == '\n';
        return Status::Invalid("line " + std::to_string(std::max(row_line_, newlines_ + 1)) +
                               ": malformed CSV (a quote inside an unquoted field, or text "
                               "after a closing quote)");
      }
      for (size_t i = 0; i < n; ++i) newlines_ += data[i] == '\n';
      TANDEM_RETURN_IF_ERROR(Drain());
      // A row over the line limit stops the import (memory stays bounded); a value over
      // 16 MiB in a row within it is a bad row, reported by the row's checks.
      if (p_.entry_pos + cells_bytes_ > kMaxLine)
        return Status::Invalid("line " + std::to_string(CurrentLine()) + ": a row longer than " +
                               std::to_string(kMaxLine >> 20) +
                               " MiB (a value is at most 16 MiB); the rest of the file cannot "
                               "be read safely");
      if (data_rows_ - last_progress >= 1000) {
        Progress(data_rows_, sink_.validate_only());
        last_progress = data_rows_;
      }
    }
    if (csv_fini(&p_, &CsvParser::OnField, &CsvParser::OnRow, this) != 0)
      return Status::Invalid("line " + std::to_string(CurrentLine()) +
                             ": the file ends inside a quoted field (truncated?)");
    TANDEM_RETURN_IF_ERROR(Drain());
    if (!have_header_) return Status::Invalid("the CSV input is empty: expected a header row");
    Progress(data_rows_, sink_.validate_only());
    return Status::Ok();
  }

 private:
  struct RawRow {
    uint64_t line;
    std::vector<std::string> cells;
  };

  uint64_t CurrentLine() const { return row_started_ ? row_line_ : lines_ + 1; }

  static void OnField(void* s, size_t len, void* self_ptr) {
    auto* self = static_cast<CsvParser*>(self_ptr);
    if (!self->row_started_) {
      self->row_started_ = true;
      self->row_line_ = self->lines_ + 1;
    }
    const char* d = static_cast<const char*>(s);
    self->cur_.emplace_back(d ? d : "", d ? len : 0);
    self->cells_bytes_ += len + sizeof(std::string);  // a row of empty cells costs too
    self->lines_ +=
        static_cast<uint64_t>(std::count(self->cur_.back().begin(), self->cur_.back().end(), '\n'));
  }

  static void OnRow(int c, void* self_ptr) {
    auto* self = static_cast<CsvParser*>(self_ptr);
    if (c == '\n') ++self->lines_;
    if (self->row_started_) {
      self->done_.push_back(RawRow{self->row_line_, std::move(self->cur_)});
      self->cur_.clear();
      self->cells_bytes_ = 0;
      self->row_started_ = false;
    }
  }

  Status Drain() {
    while (!done_.empty()) {
      RawRow raw = std::move(done_.front());
      done_.pop_front();
      // A line holding only an empty field is a blank line.
      if (raw.cells.size() == 1 && raw.cells[0].empty()) continue;
      if (!have_header_) {
        TANDEM_RETURN_IF_ERROR(Header(raw));
        continue;
      }
      ++data_rows_;
      Row row;
      row.line = raw.line;
      Status st = MakeRow(raw, &row);
      if (!st.ok()) {
        TANDEM_RETURN_IF_ERROR(sink_.Bad(raw.line, st.message()));
        continue;
      }
      TANDEM_RETURN_IF_ERROR(sink_.Add(std::move(row)));
    }
    return Status::Ok();
  }

  Status Header(const RawRow& raw) {
    have_header_ = true;
    std::set<std::string> seen;
    id_col_ = SIZE_MAX;
    for (size_t i = 0; i < raw.cells.size(); ++i) {
      const std::string& name = raw.cells[i];
      if (!seen.insert(name).second)
        return Status::Invalid("line " + std::to_string(raw.line) + ": the header names " +
                               Quote(name) + " twice");
      if (name == o_.id_field) {
        id_col_ = i;
        continue;
      }
      Status st = engine::ValidateFieldName(name);
      if (!st.ok())
        return Status::Invalid("line " + std::to_string(raw.line) + ": header: " + st.message());
    }
    if (id_col_ == SIZE_MAX)
      return Status::Invalid("the header has no " + Quote(o_.id_field) +
                             " column (the record id; name it with --id)");
    header_ = raw.cells;
    return Status::Ok();
  }

  Status MakeRow(const RawRow& raw, Row* row) {
    if (raw.cells.size() != header_.size())
      return Status::Invalid(std::to_string(raw.cells.size()) + " fields, the header has " +
                             std::to_string(header_.size()));
    for (const auto& c : raw.cells)
      if (!engine::IsValidUtf8(c)) return Status::Invalid("not valid UTF-8");
    TANDEM_RETURN_IF_ERROR(IdFrom(raw.cells[id_col_], row));
    for (size_t i = 0; i < raw.cells.size(); ++i) {
      if (i == id_col_ || raw.cells[i].empty()) continue;
      FieldWrite fw;
      TANDEM_RETURN_IF_ERROR(typer_.FromCell(header_[i], raw.cells[i], &fw));
      row->fields.push_back(std::move(fw));
    }
    return Status::Ok();
  }

  csv_parser p_{};
  bool init_ = false;
  std::vector<std::string> cur_;
  size_t cells_bytes_ = 0;
  bool row_started_ = false;
  uint64_t row_line_ = 0;
  uint64_t lines_ = 0;     // newlines seen by the parser (terminators and inside fields)
  uint64_t newlines_ = 0;  // newlines in the input read
  std::deque<RawRow> done_;
  bool have_header_ = false;
  std::vector<std::string> header_;
  size_t id_col_ = SIZE_MAX;
  uint64_t data_rows_ = 0;
};

Status RunParser(engine::Replica& r, const ImportOptions& o, const Typer& typer, Sink& sink,
                 Input& in, uint64_t total) {
  (void)r;
  std::unique_ptr<Parser> p;
  if (o.format == Format::kCsv) {
    p = std::make_unique<CsvParser>(o, typer, sink, in, total);
  } else {
    p = std::make_unique<JsonlParser>(o, typer, sink, in, total);
  }
  Status st = p->Run();
  // Rows read before a fatal error are applied all the same (unless strict: then the
  // first pass found every error before anything was written).
  Status flushed = sink.Flush();
  return st.ok() ? flushed : st;
}

struct FileCloser {
  void operator()(FILE* f) const {
    if (f) std::fclose(f);
  }
};

}  // namespace

Result<ImportReport> Import(engine::Replica& r, FILE* in, const ImportOptions& o) {
  TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(o.collection));
  if (net::IsSystemCollection(o.collection))
    return Status::Invalid("collection " + o.collection + " is reserved for tandem itself");
  if (o.collection == net::kAnyCollection) return Status::Invalid(net::kAnyCollectionIsNoName);
  if (o.id_field.empty()) return Status::Invalid("--id needs a column or key name");
  TANDEM_ASSIGN_OR_RETURN(auto stored, LoadSchema(r, o.collection));
  const Schema* schema = stored ? stored->schema.get() : nullptr;
  Typer typer(schema);
  ImportOptions opts = o;
  if (opts.batch_rows == 0) opts.batch_rows = 1;

  uint64_t total = 0;
  struct stat sb;
  const bool regular = ::fstat(::fileno(in), &sb) == 0 && S_ISREG(sb.st_mode);
  if (regular) total = static_cast<uint64_t>(sb.st_size);

  ImportReport report;
  FILE* source = in;
  std::unique_ptr<FILE, FileCloser> spool;
  if (opts.strict) {
    // The input is read more than once: from where it starts, or from a spool file.
    long start = regular ? std::ftell(in) : -1;
    if (start < 0) {
      spool.reset(std::tmpfile());
      if (!spool)
        return Status::Io(std::string("cannot make a spool file: ") + std::strerror(errno));
    }
    auto rewind = [&]() -> Status {
      if (spool) {
        if (std::fflush(spool.get()) != 0 || std::fseek(spool.get(), 0, SEEK_SET) != 0)
          return Status::Io(std::string("spool file: ") + std::strerror(errno));
        source = spool.get();
      } else if (std::fseek(in, start, SEEK_SET) != 0) {
        return Status::Io(std::string("cannot read the input again: ") + std::strerror(errno));
      }
      return Status::Ok();
    };
    // Pass one: every row parsed and checked, nothing written.
    ImportReport check;
    Sink sink(r, opts, schema, &check);
    sink.mode = Sink::Mode::kValidate;
    Input input(in, spool.get());
    TANDEM_RETURN_IF_ERROR(RunParser(r, opts, typer, sink, input, total));
    if (spool) total = input.bytes();
    TANDEM_RETURN_IF_ERROR(rewind());
    if (sink.has_pending()) {
      // Rows lacking a required field: does an earlier row give it?
      sink.mode = Sink::Mode::kResolve;
      Input again(source, nullptr);
      TANDEM_RETURN_IF_ERROR(RunParser(r, opts, typer, sink, again, total));
      TANDEM_RETURN_IF_ERROR(sink.FinishResolve());
      TANDEM_RETURN_IF_ERROR(rewind());
    }
  }
  Sink sink(r, opts, schema, &report);
  Input input(source, nullptr);
  Status st = RunParser(r, opts, typer, sink, input, total);
  report.bytes = input.bytes();
  report.rows = report.rows_imported + report.bad_rows;  // each row is one or the other
  if (!st.ok()) return st;
  return report;
}

}  // namespace tandem::data
