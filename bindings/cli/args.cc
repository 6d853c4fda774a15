// The `tandem` program's arguments: collections, filters, addresses, numbers and values
// as each command reads them (usage errors, exit 2).
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli.h"
#include "tandem/net/group.h"

namespace tandem::cli {

// Apps write their own collections; tandem's own change only through its commands.
void CheckWritable(const std::string& coll) {
  if (IsSystem(coll))
    throw Exit{2, "collection " + coll +
                      " is reserved for tandem itself (the trust set changes with invite, "
                      "revoke, role and permit; schemas with schema)"};
}

// COLL,... or `none` (a one-way device: nothing that way but the trust set).
engine::CollectionFilter ParseFilter(const std::string& list, const char* flag) {
  if (list.empty()) return {};
  if (list == "none") return engine::CollectionFilter::None();
  // `none,c` could mean nothing, or the collections none and c: refused as ambiguous.
  if (("," + list + ",").find(",none,") != std::string::npos)
    throw Exit{
        2, std::string(flag) + ": none means no collection and stands alone, got " + Quote(list)};
  auto f = engine::CollectionFilter::Parse(list);
  if (!f.ok()) throw Exit{2, std::string(flag) + ": " + f.status().message()};
  return std::move(f).value();
}

// HOST:PORT, as the daemon will parse it.
bool IsAddress(const std::string& a) {
  std::string host;
  uint16_t port;
  return tandem::net::ParseHostPort(a, &host, &port).ok();
}
void CheckAddress(const std::string& a) {
  std::string host;
  uint16_t port;
  Check(tandem::net::ParseHostPort(a, &host, &port));
}

// A decimal int64, as counters take: no octal, no hex, no clamping.
int64_t ParseDecimal(const std::string& text, const char* what) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (begin != end && *begin == '+') ++begin;
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(begin, end, v, 10);
  if (ec == std::errc::result_out_of_range)
    throw Exit{2, std::string(what) + " is outside the 64-bit integer range: " + Quote(text)};
  if (ec != std::errc() || ptr != end || begin == end)
    throw Exit{2, std::string(what) + " must be a decimal integer, got " + Quote(text)};
  return v;
}

// A field's JSON value: the text, or @PATH (a file's contents), or @- (stdin), for values
// too large for a command line. Reads no more than a value's JSON can be, however large
// the file (a disk image named by mistake, /dev/zero).
std::string ValueText(const std::string& text) {
  if (text.empty() || text[0] != '@') return text;
  constexpr size_t kMaxFile = size_t{64} << 20;  // far above the largest value's JSON
  const std::string path = text.substr(1);
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      throw Exit{2, "cannot read " + Quote(path) + ": a directory"};
    file.open(path, std::ios::binary);
    if (!file) throw Exit{2, "cannot read " + Quote(path) + ": " + std::strerror(errno)};
    in = &file;
  }
  std::string data;
  char buf[1 << 16];
  while (data.size() <= kMaxFile && in->read(buf, sizeof buf).gcount() > 0)
    data.append(buf, static_cast<size_t>(in->gcount()));
  if (data.size() > kMaxFile)
    throw Exit{2, Quote(path) + " holds more than " + std::to_string(kMaxFile) +
                      " bytes, more than a value can be"};
  if (in->bad()) throw Exit{2, "cannot read " + Quote(path) + ": " + std::strerror(errno)};
  return data;
}

engine::Value ParseValue(const std::string& text) {
  auto v = tandem::bindings::ParseScalar(text);
  if (!v.ok()) throw Exit{2, v.status().message()};
  return std::move(v).value();
}

}  // namespace tandem::cli
