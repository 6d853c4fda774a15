// libFuzzer target: `tandem import` parsers (CSV and JSON lines), which read files from
// anywhere. The first byte picks the format (bit 0), whether the collection has a schema
// (bit 1: names, prices, counters, sets, a phone number) and strict mode (bit 2); the
// rest is the file. Whatever imports must export, and importing the export again must
// change nothing (import and export are inverses on what they accept).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "tandem/data/etl.h"
#include "tandem/data/schema.h"
#include "tandem/engine/memory_store.h"
#include "tandem/storage/replica.h"

namespace {

using namespace tandem;

constexpr char kSchema[] = R"({"fields": {
  "name":  {"type": "string", "normalize": ["trim"], "max_length": 40},
  "price": {"type": "double", "min": 0},
  "qty":   {"type": "int"},
  "stock": {"type": "counter"},
  "tags":  {"type": "set", "items": "string", "normalize": ["lower"]},
  "phone": {"type": "string", "normalize": ["phone"], "region": "US"}}})";

engine::ReplicaId Rid() {
  engine::ReplicaId id;
  id.bytes[0] = 1;
  return id;
}

struct Db {
  Db()
      : replica(
            std::make_unique<engine::MemoryStore>(Rid()), [this] { return ++clock; },
            storage::Blake2b256Parts) {
    replica.SetWritePolicy(std::make_shared<data::SchemaPolicy>());
  }
  uint64_t clock = 1000;
  engine::Replica replica;
};

Result<data::ImportReport> ImportBytes(engine::Replica& r, const std::string& bytes,
                                       data::Format format, bool strict) {
  FILE* in = fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "r");
  if (!in) std::abort();
  data::ImportOptions o;
  o.collection = "items";
  o.format = format;
  o.strict = strict;
  o.batch_rows = 7;  // several batches even on small inputs
  auto report = data::Import(r, in, o);
  std::fclose(in);
  return report;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const auto format = (mode & 1) ? data::Format::kCsv : data::Format::kJsonl;
  std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  Db db;
  if ((mode & 2) && !data::SaveSchema(db.replica, "items", kSchema).ok()) std::abort();
  auto first = ImportBytes(db.replica, input, format, (mode & 4) != 0);
  if (!first.ok()) return 0;
  if (first->rows_imported + first->bad_rows != first->rows) std::abort();

  // Export, then import the export into the same replica: nothing may change.
  char* buf = nullptr;
  size_t len = 0;
  FILE* out = open_memstream(&buf, &len);
  if (!out) std::abort();
  auto exported = data::Export(db.replica, "items", format, out);
  std::fclose(out);
  std::string text(buf ? buf : "", len);
  std::free(buf);
  if (!exported.ok()) std::abort();
  if (*exported == 0) return 0;
  auto again = ImportBytes(db.replica, text, format, false);
  if (!again.ok() || again->bad_rows != 0 || again->fields_written != 0) std::abort();
  return 0;
}
