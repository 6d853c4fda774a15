#include "tandem/engine/value.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace tandem::engine {

const char* TypeName(ValueType t) {
  switch (t) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return "bool";
    case ValueType::kInt:
      return "int";
    case ValueType::kDouble:
      return "double";
    case ValueType::kString:
      return "string";
    case ValueType::kBytes:
      return "bytes";
    case ValueType::kBlob:
      return "blob";
  }
  return "?";
}

// IEEE 754 totalOrder as a signed integer key.
static int64_t DoubleKey(double d) {
  int64_t i;
  std::memcpy(&i, &d, sizeof i);
  return i < 0 ? i ^ INT64_MAX : i;
}

template <typename T>
static int Cmp(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

int CompareValues(const Value& a, const Value& b) {
  if (a.index() != b.index()) return a.index() < b.index() ? -1 : 1;
  switch (TypeOf(a)) {
    case ValueType::kNull:
      return 0;
    case ValueType::kBool:
      return Cmp(std::get<bool>(a), std::get<bool>(b));
    case ValueType::kInt:
      return Cmp(std::get<int64_t>(a), std::get<int64_t>(b));
    case ValueType::kDouble:
      return Cmp(DoubleKey(std::get<double>(a)), DoubleKey(std::get<double>(b)));
    case ValueType::kString:
      return std::get<std::string>(a).compare(std::get<std::string>(b)) < 0
                 ? -1
                 : (std::get<std::string>(a) == std::get<std::string>(b) ? 0 : 1);
    case ValueType::kBytes: {
      const auto& x = std::get<Bytes>(a).data;
      const auto& y = std::get<Bytes>(b).data;
      return x < y ? -1 : (x == y ? 0 : 1);
    }
    case ValueType::kBlob: {
      const auto& x = std::get<BlobRef>(a);
      const auto& y = std::get<BlobRef>(b);
      if (x.hash != y.hash) return x.hash < y.hash ? -1 : 1;
      if (x.size != y.size) return x.size < y.size ? -1 : 1;
      return x.type < y.type ? -1 : (x.type == y.type ? 0 : 1);
    }
  }
  return 0;
}

std::string DebugString(const Value& v) {
  switch (TypeOf(v)) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return std::get<bool>(v) ? "true" : "false";
    case ValueType::kInt:
      return std::to_string(std::get<int64_t>(v));
    case ValueType::kDouble: {
      char buf[32];
      auto res = std::to_chars(buf, buf + sizeof buf, std::get<double>(v));  // shortest
      return std::string(buf, res.ptr);
    }
    case ValueType::kString:
      return "\"" + std::get<std::string>(v) + "\"";
    case ValueType::kBytes:
      return "bytes[" + std::to_string(std::get<Bytes>(v).data.size()) + "]";
    case ValueType::kBlob: {
      const auto& b = std::get<BlobRef>(v);
      return "blob[" + HexOf(b.hash).substr(0, 12) + ", " + std::to_string(b.size) + " bytes]";
    }
  }
  return "?";
}

std::string HexOf(const BlobHash& h) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : h) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

Result<BlobHash> BlobHashFromHex(std::string_view hex) {
  if (hex.size() != 64) return Status::Invalid("a blob hash is 64 hex digits");
  BlobHash h{};
  for (size_t i = 0; i < 64; ++i) {
    const char c = hex[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return Status::Invalid("a blob hash is 64 lowercase hex digits");
    h[i / 2] = static_cast<uint8_t>(h[i / 2] << 4 | d);
  }
  return h;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    // Eight ASCII bytes at a time, the common case.
    uint64_t word;
    while (i + 8 <= n && (std::memcpy(&word, s.data() + i, 8), !(word & 0x8080808080808080u)))
      i += 8;
    if (i == n) break;
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates, and code points past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

Status ValidateName(std::string_view name, size_t max_len, const char* what) {
  if (name.empty()) return Status::Invalid(std::string(what) + " is empty");
  if (name.size() > max_len)
    return Status::Invalid(std::string(what) + " is longer than " + std::to_string(max_len) +
                           " bytes");
  if (name.find('\0') != std::string_view::npos)
    return Status::Invalid(std::string(what) + " contains a NUL byte");
  if (!IsValidUtf8(name)) return Status::Invalid(std::string(what) + " is not valid UTF-8");
  return Status::Ok();
}

Status ValidateCollection(std::string_view c) {
  return ValidateName(c, kMaxCollectionName, "collection name");
}
Status ValidateRecordId(std::string_view id) { return ValidateName(id, kMaxRecordId, "record id"); }
Status ValidateFieldName(std::string_view f) {
  TANDEM_RETURN_IF_ERROR(ValidateName(f, kMaxFieldName, "field name"));
  if (f == "id") return Status::Invalid("field name \"id\" is reserved for the record id");
  return Status::Ok();
}

namespace {
Status TooLarge(const char* what, size_t bytes) {
  return Status::Invalid(std::string(what) + " value of " + std::to_string(bytes) +
                         " bytes is over the " + std::to_string(kMaxValueBytes >> 20) +
                         " MiB a value may hold (attach larger content as a blob)");
}
}  // namespace

Status ValidateValue(const Value& v) {
  if (auto* d = std::get_if<double>(&v)) {
    // JSON, every reader's form, has no NaN or infinity: each would read as null.
    if (!std::isfinite(*d)) return Status::Invalid("a number must be finite, not NaN or infinite");
  } else if (auto* s = std::get_if<std::string>(&v)) {
    if (s->size() > kMaxValueBytes) return TooLarge("string", s->size());
    if (!IsValidUtf8(*s)) return Status::Invalid("string value is not valid UTF-8");
  } else if (auto* b = std::get_if<Bytes>(&v)) {
    if (b->data.size() > kMaxValueBytes) return TooLarge("bytes", b->data.size());
  } else if (auto* r = std::get_if<BlobRef>(&v)) {
    if (r->size > kMaxBlobBytes)
      return Status::Invalid("blob of " + std::to_string(r->size) + " bytes is over the " +
                             std::to_string(kMaxBlobBytes >> 30) + " GiB limit");
    if (r->type.size() > kMaxBlobTypeBytes)
      return Status::Invalid("blob type is longer than " + std::to_string(kMaxBlobTypeBytes) +
                             " bytes");
    for (char c : r->type)
      if (c < 0x21 || c > 0x7e)
        return Status::Invalid("blob type must be printable ASCII without spaces");
  }
  return Status::Ok();
}

}  // namespace tandem::engine
