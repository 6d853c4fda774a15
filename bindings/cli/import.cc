// `import`: rows in, with a progress line on a terminal and every bad row reported.
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "cli.h"
#include "tandem/data/etl.h"

namespace tandem::cli {

// `import`: the rows, a progress line on a terminal, the bad rows and a summary.
int RunImport(const std::string& dir, const std::string& coll, const std::string& file,
              const std::string& format_name, const std::string& id_field, bool strict) {
  tandem::data::ImportOptions o;
  o.collection = coll;
  o.id_field = id_field;
  o.strict = strict;
  if (!format_name.empty()) {
    o.format = Check(tandem::data::ParseFormat(format_name));
  } else if (auto f = tandem::data::FormatOfPath(file)) {
    o.format = *f;
  } else if (file != "-") {
    throw Exit{2, "cannot tell the format of " + Quote(file) + ": give --format jsonl|csv"};
  }
  auto& r = Open(dir);
  FILE* in = stdin;
  if (file != "-") {
    in = std::fopen(file.c_str(), "rb");
    if (!in) throw Exit{2, "cannot read " + Quote(file) + ": " + std::strerror(errno)};
  }
  const bool tty = ::isatty(2);
  uint64_t reported = 0, bad = 0;
  constexpr uint64_t kMaxReported = 1000;
  bool progress_shown = false;
  o.bad_row = [&](uint64_t line, const std::string& reason) {
    ++bad;
    if (strict) return;  // the first bad row ends a strict import, and its error says it
    if (reported++ < kMaxReported) {
      if (progress_shown) std::fputs("\r\033[K", stderr);
      std::fprintf(stderr, "tandem: import: line %llu: %s\n", static_cast<unsigned long long>(line),
                   Printable(reason).c_str());
    }
  };
  const auto start = std::chrono::steady_clock::now();
  auto last = start - std::chrono::seconds(1);
  o.progress = [&](const tandem::data::ImportProgress& p) {
    if (!tty) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::milliseconds(200)) return;
    last = now;
    const double secs = std::chrono::duration<double>(now - start).count();
    const double rate = secs > 0 ? static_cast<double>(p.rows) / secs : 0;
    char eta[32] = "";
    if (p.total_bytes > 0 && p.bytes > 0 && p.bytes < p.total_bytes)
      std::snprintf(
          eta, sizeof eta, ", ETA %.0fs",
          secs * static_cast<double>(p.total_bytes - p.bytes) / static_cast<double>(p.bytes));
    std::fprintf(
        stderr, "\r\033[K%s%llu rows, %.1f MB%s, %.0f rows/s%s", p.validating ? "checking: " : "",
        static_cast<unsigned long long>(p.rows), static_cast<double>(p.bytes) / 1e6,
        p.total_bytes ? (" of " + std::to_string(p.total_bytes / 1000000) + " MB").c_str() : "",
        rate, eta);
    progress_shown = true;
  };
  auto result = tandem::data::Import(r, in, o);
  if (in != stdin) std::fclose(in);
  if (progress_shown) std::fputs("\r\033[K", stderr);
  if (reported > kMaxReported)
    std::fprintf(stderr, "tandem: import: %llu more bad rows not shown\n",
                 static_cast<unsigned long long>(reported - kMaxReported));
  if (!result.ok()) {
    const Status& st = result.status();
    throw Exit{st.code() == Code::kInvalidArgument ? 2 : 1, "import: " + Message(st)};
  }
  const auto& rep = result.value();
  std::fprintf(
      stderr, "imported %llu of %llu rows into %s (%llu fields written)%s\n",
      static_cast<unsigned long long>(rep.rows_imported), static_cast<unsigned long long>(rep.rows),
      Printable(coll).c_str(), static_cast<unsigned long long>(rep.fields_written),
      rep.bad_rows ? (", " + std::to_string(rep.bad_rows) + " bad rows skipped").c_str() : "");
  if (rep.rows_empty)
    std::fprintf(stderr,
                 "tandem: import: %llu rows set no field (only an id, or empty cells): a record "
                 "exists only with a field, so nothing was stored for them\n",
                 static_cast<unsigned long long>(rep.rows_empty));
  return rep.bad_rows > 0 ? 3 : 0;
}

}  // namespace tandem::cli
