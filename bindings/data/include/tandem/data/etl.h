// Moving a collection in and out of files: JSON lines and CSV (RFC 4180, header row).
//
// Import streams: rows are parsed, typed (by the collection's schema where it declares a
// field, else by inference, below), checked against the schema and written in batches of
// at most 1,000 rows, one transaction each, so memory stays constant on any file size.
// A row sets the fields it names (counters to the given count, sets to exactly the given
// elements); it leaves other fields alone. A field that already holds the value is not
// written again, so importing the same file twice changes nothing.
//
// Inference, for fields the schema does not type: a JSON line's values map as JSON does
// (integers, doubles, true/false, null, strings), an array is a set, {"$bytes": base64}
// bytes and {"$counter": N} a counter. A CSV cell that is JSON (a number, true, false,
// null, a "quoted string", an array, a $bytes or $counter object) is read as JSON; any
// other cell is a string; an empty cell leaves the field unset.
//
// Export writes what import reads back into the same record states' readings: the
// record id first (as "id"), counters as {"$counter": N} and strings that would read
// as JSON in JSON's quotes, unless the schema declares the field's type.
#pragma once

#include <cstdio>
#include <functional>
#include <string>

#include "tandem/engine/replica.h"

namespace tandem::data {

enum class Format { kJsonl, kCsv };
// "jsonl" or "csv"; else InvalidArgument.
Result<Format> ParseFormat(std::string_view name);
// By a file name's extension (.csv, .jsonl, .ndjson, .json); nullopt if it says nothing.
std::optional<Format> FormatOfPath(std::string_view path);

struct ImportProgress {
  uint64_t rows = 0;         // rows read so far (good and bad)
  uint64_t bytes = 0;        // bytes of input read
  uint64_t total_bytes = 0;  // the input's size, 0 if unknown (a pipe)
  bool validating = false;   // the first pass of a strict import
};

struct ImportOptions {
  std::string collection;
  Format format = Format::kJsonl;
  std::string id_field = "id";  // the column or key that holds the record id
  // The first bad row rejects the whole input and nothing is written (the input is read
  // twice; a pipe is spooled to a temporary file).
  bool strict = false;
  size_t batch_rows = 1000;
  // Each bad row: its line (the first line of a CSV row) and why. Without `strict` the
  // row is skipped and the import goes on.
  std::function<void(uint64_t line, const std::string& reason)> bad_row;
  // Called now and then (at most every batch).
  std::function<void(const ImportProgress&)> progress;
};

struct ImportReport {
  uint64_t rows = 0;            // data rows read
  uint64_t rows_imported = 0;   // rows applied
  uint64_t bad_rows = 0;        // rows skipped (or, strict, found)
  uint64_t fields_written = 0;  // field operations (unchanged fields are not written)
  uint64_t rows_empty = 0;      // of rows_imported: rows that set no field (a record needs one)
  uint64_t bytes = 0;
};

// Reads rows from `in` until EOF. Errors that stop the import (unreadable input, a CSV
// header without the id column, a strict import's first bad row, a write failure) are
// returned; rows applied before a non-strict failure stay applied.
Result<ImportReport> Import(engine::Replica& r, FILE* in, const ImportOptions& o);

// Writes the collection's live records, in id order. Returns the number of records.
Result<uint64_t> Export(engine::Replica& r, std::string_view collection, Format format, FILE* out);

}  // namespace tandem::data
