// The C API's shared insides: the status it adds to the engine's, the guard every entry
// point runs in, the table of live handles, argument conversions, and the handle types
// the files share. Files: tandem.cc (replicas, writes, reads, the feed, pairing, backup),
// tandem_sync.cc (subscriptions and the sync node).
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tandem.h"
#include "tandem/bindings/json.h"
#include "tandem/device/device.h"

namespace tandem::capi {

using tandem::Code;
using tandem::Result;
using tandem::Status;
using tandem::bindings::Json;
using tandem::device::Device;
namespace engine = tandem::engine;
namespace net = tandem::net;

inline constexpr const char* kVersion = "0.1.0";

// A status with the two codes the C API adds to the engine's.
struct CStatus {
  CStatus() = default;
  CStatus(const Status& s)  // NOLINT: implicit, so TANDEM_RETURN_IF_ERROR works
      : code(ToC(s.code())), message(s.message()) {}
  CStatus(int c, std::string m) : code(c), message(std::move(m)) {}
  static int ToC(Code c) {
    for (const auto& [code, c_code] : kCodes)
      if (code == c) return c_code;
    return TANDEM_INTERNAL;
  }
  // A C code as the engine's (TANDEM_IO for one the engine has no match for): what an
  // app's callback returned.
  static Code FromC(int c) {
    for (const auto& [code, c_code] : kCodes)
      if (c_code == c) return code;
    return Code::kIo;
  }
  static constexpr std::pair<Code, int> kCodes[] = {
      {Code::kOk, TANDEM_OK},
      {Code::kNotFound, TANDEM_NOT_FOUND},
      {Code::kInvalidArgument, TANDEM_INVALID},
      {Code::kCorrupt, TANDEM_CORRUPT},
      {Code::kUnauthorized, TANDEM_UNAUTHORIZED},
      {Code::kIo, TANDEM_IO},
      {Code::kBusy, TANDEM_BUSY},
      {Code::kUnsupported, TANDEM_UNSUPPORTED},
  };
  int code = TANDEM_OK;
  std::string message;
};

inline CStatus Invalid(std::string m) { return {TANDEM_INVALID, std::move(m)}; }

// Tandem's own collections (the trust set) are not the app's: the feed leaves them out.
inline bool IsSystem(const std::string& collection) {
  return tandem::net::IsSystemCollection(collection);
}
// ... nor the app's to write: every device would take what it wrote there.
inline Status Writable(const std::string& collection) {
  if (IsSystem(collection))
    return Status::Invalid("collection " + collection + " is reserved for tandem itself");
  return Status::Ok();
}

inline int Fill(tandem_error* err, const CStatus& st) {
  if (st.code != TANDEM_OK && err) {
    err->status = st.code;
    // One line: no control characters, truncated to fit.
    size_t n = 0;
    for (char c : st.message) {
      if (n + 1 >= sizeof err->message) break;
      err->message[n++] = (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    }
    err->message[n] = '\0';
  }
  return st.code;
}

// Every entry point: nothing escapes as an exception.
template <typename F>
inline int Guard(tandem_error* err, F&& f) noexcept {
  try {
    return Fill(err, f());
  } catch (const std::bad_alloc&) {
    return Fill(err, CStatus(TANDEM_IO, "out of memory"));
  } catch (const std::exception& e) {
    return Fill(err, CStatus(TANDEM_INTERNAL, std::string("internal error: ") + e.what()));
  } catch (...) {
    return Fill(err, CStatus(TANDEM_INTERNAL, "internal error"));
  }
}

// ---- Handles ----------------------------------------------------------------------

enum class Kind { kDb, kBatch, kRecord, kIter, kWatch, kNode };

inline std::mutex& HandlesMu() {
  static auto* mu = new std::mutex;  // never destroyed: handles may outlive main()
  return *mu;
}
inline std::unordered_map<const void*, Kind>& Handles() {
  static auto* h = new std::unordered_map<const void*, Kind>;
  return *h;
}
inline void Register(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  Handles()[p] = k;
}
// Removes the handle; false if it was not live (already freed, or not ours).
inline bool Unregister(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(p);
  if (it == Handles().end() || it->second != k) return false;
  Handles().erase(it);
  return true;
}
inline bool IsLive(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(p);
  return it != Handles().end() && it->second == k;
}

// Copies a string out to the caller, to be freed with tandem_free.
inline CStatus Out(const std::string& s, char** out, size_t* len) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) return {TANDEM_IO, "out of memory"};
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  *out = p;
  if (len) *len = s.size();
  return {};
}

inline CStatus NeedOut(const void* p, const char* what) {
  if (!p) return Invalid(std::string(what) + " is NULL");
  return {};
}

#define C_RETURN_IF(expr)                    \
  do {                                       \
    CStatus _cst = (expr);                   \
    if (_cst.code != TANDEM_OK) return _cst; \
  } while (0)

inline CStatus Name(const char* s, const char* what, std::string* out) {
  if (!s) return Invalid(std::string(what) + " is NULL");
  *out = s;
  return {};
}

inline CStatus ToValue(const tandem_value* v, engine::Value* out) {
  if (!v) return Invalid("value is NULL");
  switch (v->type) {
    case TANDEM_NULL:
      *out = std::monostate{};
      return {};
    case TANDEM_BOOL:
      if (v->i != 0 && v->i != 1) return Invalid("a TANDEM_BOOL value is 0 or 1");
      *out = v->i != 0;
      return {};
    case TANDEM_INT:
      *out = v->i;
      return {};
    case TANDEM_DOUBLE:
      *out = v->d;
      return {};
    case TANDEM_STRING:
    case TANDEM_BYTES: {
      if (!v->data && v->len > 0) return Invalid("value data is NULL");
      if (v->len > engine::kMaxValueBytes)
        return Invalid("value of " + std::to_string(v->len) + " bytes is over the 16 MiB limit");
      std::string s(v->data ? v->data : "", v->len);
      if (v->type == TANDEM_STRING) {
        if (!engine::IsValidUtf8(s)) return Invalid("string value is not valid UTF-8");
        *out = std::move(s);
      } else {
        *out = engine::Bytes{std::move(s)};
      }
      return {};
    }
  }
  if (v->type == TANDEM_BLOB)
    return Invalid("a blob reference is written by tandem_attach (or as JSON by tandem_put_json)");
  return Invalid("unknown value type " + std::to_string(v->type));
}

// A JSON object of scalars as register fields.
inline CStatus ParseFields(const char* json, size_t len,
                           std::vector<std::pair<std::string, engine::Value>>* out) {
  if (!json) return Invalid("json is NULL");
  const std::string_view text(json, len);
  // Never valid in JSON text, raw; the parser would stop there and ignore the rest.
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    return Invalid("not valid JSON (a NUL byte at offset " + std::to_string(nul) + ")");
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 7: ..." -> the rest
    const std::string why = e.what();
    const auto at = why.find("column");
    return Invalid("not valid JSON" +
                   (at == std::string::npos ? std::string() : " (" + why.substr(at) + ")"));
  } catch (const Json::exception&) {
    return Invalid("not valid JSON (a number is out of range)");  // 1e999
  }
  if (!j.is_object()) return Invalid("expected a JSON object of fields");
  if (j.empty()) return Invalid("no fields to put");
  if (tandem::bindings::NestedDeeperThan(text, 4))
    return Invalid("nested too deep for fields of scalars");
  // One pass over the text: a repeated key, and an integer literal outside int64, which
  // the parser turns into a double that, dumped again ("1.8446744073709552e+19"), would
  // get past ParseScalar's check for them.
  const tandem::bindings::JsonScan scan = tandem::bindings::ScanJson(text);
  if (auto key = tandem::bindings::RepeatedKey(text, j, &scan))
    return Invalid("key \"" + *key + "\" appears twice (which one is meant?)");
  if (!scan.oversized.empty()) return Invalid("an integer is out of the int64 range");
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto v = tandem::bindings::ParseScalar(it.value().dump());
    if (!v.ok()) return Invalid(it.key() + ": " + v.status().message());
    TANDEM_RETURN_IF_ERROR(engine::ValidateFieldName(it.key()));
    out->emplace_back(it.key(), std::move(v).value());
  }
  return {};
}

}  // namespace tandem::capi

// ---- Handle types shared by the files ---------------------------------------------

struct tandem_db {
  std::shared_ptr<tandem::device::Device> device;
};

struct tandem_batch {
  enum class Op { kPut, kIncr, kAdd, kRemove, kDelete };
  struct Entry {
    Op op;
    std::string collection, id, field;
    tandem::engine::Value value;
    int64_t by = 0;
  };
  std::vector<Entry> entries;
};

struct tandem_record {
  tandem::engine::Record record;
  std::vector<std::string> names;
};

struct tandem_iter {
  std::shared_ptr<tandem::device::Device> device;
  std::string collection, last;
  bool done = false;
};

namespace tandem::capi {

inline Result<std::shared_ptr<Device>> DeviceOf(tandem_db* db) {
  if (!db) return Status::Invalid("tandem_db is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(db);
  if (it == Handles().end() || it->second != Kind::kDb)
    return Status::Invalid("the tandem_db handle is closed or not a tandem_db");
  if (db->device->opened_by() != ::getpid())
    return Status::Invalid("this tandem_db was opened by process " +
                           std::to_string(db->device->opened_by()) +
                           ", which this one forked from: a replica handle does not survive "
                           "fork(); open the replica again in this process");
  return db->device;  // a copy: the replica stays open for this call even if closed meanwhile
}

#define DEVICE_OR_RETURN(var, db)                      \
  auto var##_r = DeviceOf(db);                         \
  if (!var##_r.ok()) return CStatus(var##_r.status()); \
  std::shared_ptr<Device> var = std::move(var##_r).value()

inline CStatus CheckHandle(const void* p, Kind k, const char* name) {
  if (!p) return Invalid(std::string(name) + " is NULL");
  if (!IsLive(p, k))
    return Invalid(std::string("the ") + name + " handle is freed or not a " + name);
  return {};
}

}  // namespace tandem::capi
