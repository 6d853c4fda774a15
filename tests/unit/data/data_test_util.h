// Helpers of the schema and import/export tests: replicas with the schema policy,
// reading back what they hold, and inputs to import from (a file, a pipe).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tandem/bindings/json.h"
#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/engine/memory_store.h"
#include "tandem/storage/replica.h"

namespace tandem::engine {
// Readable failures for record comparisons: the canonical JSON and every field's kind.
inline void PrintTo(const Record& r, std::ostream* os) {
  *os << bindings::Canonical(bindings::RecordToJson(r)) << " kinds{";
  for (const auto& [name, f] : r.fields) *os << name << ":" << KindName(f.kind) << " ";
  *os << "}";
}
}  // namespace tandem::engine

namespace tandem::data {
inline void PrintTo(Format f, std::ostream* os) { *os << (f == Format::kCsv ? "csv" : "jsonl"); }

namespace test {

using engine::Bytes;
using engine::Kind;
using engine::Record;
using engine::Replica;
using engine::Value;

inline Value S(const std::string& s) { return Value{s}; }
inline Value I(int64_t i) { return Value{i}; }
inline Value D(double d) { return Value{d}; }

inline bool Has(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline engine::ReplicaId Rid(uint8_t n) {
  engine::ReplicaId id;
  id.bytes[0] = 0xd4;
  id.bytes[15] = n;
  return id;
}

// A replica over a MemoryStore with the schema policy installed, as devices have it.
struct Db {
  explicit Db(uint8_t n = 1)
      : clock(std::make_shared<uint64_t>(1000)),
        replica(
            std::make_unique<engine::MemoryStore>(Rid(n)), [c = clock] { return ++*c; },
            storage::Blake2b256Parts) {
    replica.SetWritePolicy(std::make_shared<SchemaPolicy>());
  }
  std::shared_ptr<uint64_t> clock;
  Replica replica;
};

inline std::vector<Record> ScanAll(Replica& r, const std::string& coll) {
  std::vector<Record> out;
  Status st = r.Scan(coll, "", [&](const Record& rec) {
    out.push_back(rec);
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

inline engine::VersionVector Vv(Replica& r) {
  auto m = r.Meta();
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? m->vv : engine::VersionVector{};
}

inline Record Get(Replica& r, const std::string& coll, const std::string& id) {
  auto rec = r.Get(coll, id);
  EXPECT_TRUE(rec.ok()) << coll << "/" << id << ": " << rec.status().ToString();
  return rec.ok() ? *rec : Record{};
}

// The reading of one field, straight from the stored state (kind included).
inline std::optional<engine::FieldValue> ReadField(Replica& r, const std::string& coll,
                                                   const std::string& id,
                                                   const std::string& field) {
  auto st = r.GetState(coll, id);
  EXPECT_TRUE(st.ok()) << st.status().ToString();
  if (!st.ok()) return std::nullopt;
  auto it = st->fields.find(field);
  if (it == st->fields.end()) return std::nullopt;
  return engine::Read(it->second);
}

// A counter field's count; INT64_MIN when the field is missing or not a counter.
inline int64_t CountOf(Replica& r, const std::string& coll, const std::string& id,
                       const std::string& field) {
  auto f = ReadField(r, coll, id, field);
  EXPECT_TRUE(f && f->kind == Kind::kCounter) << coll << "/" << id << "." << field;
  return f && f->kind == Kind::kCounter ? f->count : std::numeric_limits<int64_t>::min();
}

inline void SaveOrDie(Replica& r, const std::string& coll, const std::string& json) {
  auto v = SaveSchema(r, coll, json);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
}

// ---- Inputs ------------------------------------------------------------------------

// A regular (seekable) file holding `text`, positioned at its start.
inline FILE* FileWith(const std::string& text) {
  FILE* f = std::tmpfile();
  if (!f) abort();
  if (std::fwrite(text.data(), 1, text.size(), f) != text.size()) abort();
  std::rewind(f);
  return f;
}

// The read end of a pipe that a thread fills with `text` and then closes.
class PipeInput {
 public:
  explicit PipeInput(std::string text) {
    ::signal(SIGPIPE, SIG_IGN);  // the reader may stop early (a fatal error)
    int fds[2];
    if (::pipe(fds) != 0) abort();
    read_ = ::fdopen(fds[0], "rb");
    if (!read_) abort();
    writer_ = std::thread([fd = fds[1], t = std::move(text)] {
      size_t off = 0;
      while (off < t.size()) {
        ssize_t n = ::write(fd, t.data() + off, t.size() - off);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::close(fd);
    });
  }
  ~PipeInput() {
    std::fclose(read_);
    writer_.join();
  }
  FILE* file() const { return read_; }

 private:
  FILE* read_ = nullptr;
  std::thread writer_;
};

enum class Source { kFile, kPipe };
inline void PrintTo(Source s, std::ostream* os) { *os << (s == Source::kPipe ? "pipe" : "file"); }

struct Imported {
  Result<ImportReport> result = Status::Invalid("not run");
  std::vector<std::pair<uint64_t, std::string>> bad;  // (line, reason)
  bool ok() const { return result.ok(); }
  const ImportReport& report() const { return result.value(); }
  std::string error() const { return result.status().message(); }
  std::vector<uint64_t> bad_lines() const {
    std::vector<uint64_t> out;
    for (const auto& b : bad) out.push_back(b.first);
    return out;
  }
  std::string bad_reason(uint64_t line) const {
    for (const auto& b : bad)
      if (b.first == line) return b.second;
    return "(no bad row at line " + std::to_string(line) + ")";
  }
};

inline Imported ImportText(Replica& r, const std::string& text, ImportOptions o,
                           Source source = Source::kFile) {
  Imported out;
  o.bad_row = [&](uint64_t line, const std::string& why) { out.bad.emplace_back(line, why); };
  if (source == Source::kFile) {
    FILE* f = FileWith(text);
    out.result = Import(r, f, o);
    std::fclose(f);
  } else {
    PipeInput p(text);
    out.result = Import(r, p.file(), o);
  }
  return out;
}

inline ImportOptions Jsonl(const std::string& coll = "items") {
  ImportOptions o;
  o.collection = coll;
  o.format = Format::kJsonl;
  return o;
}
inline ImportOptions Csv(const std::string& coll = "items") {
  ImportOptions o;
  o.collection = coll;
  o.format = Format::kCsv;
  return o;
}

inline std::string ExportText(Replica& r, const std::string& coll, Format format) {
  FILE* f = std::tmpfile();
  if (!f) abort();
  auto n = Export(r, coll, format, f);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  std::string text;
  std::rewind(f);
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, got);
  std::fclose(f);
  return text;
}

}  // namespace test
}  // namespace tandem::data
