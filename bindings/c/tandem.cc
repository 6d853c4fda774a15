// The C API: each function converts its arguments, calls the device module or the
// engine, and translates the result; everything goes through Guard, which catches
// whatever is thrown. Handles are checked against a table of the live ones, so a closed
// or foreign handle is an error instead of undefined behaviour (unless its address was
// reused by a newer handle).
#include "tandem.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <sstream>
#include <thread>
#include <type_traits>
#include <unordered_map>

#include "tandem/bindings/json.h"
#include "tandem/device/device.h"

namespace {

using tandem::Code;
using tandem::Result;
using tandem::Status;
using tandem::bindings::Json;
using tandem::device::Device;
namespace engine = tandem::engine;
namespace net = tandem::net;

constexpr const char* kVersion = "0.1.0";

// A status with the two codes the C API adds to the engine's.
struct CStatus {
  CStatus() = default;
  CStatus(const Status& s)  // NOLINT: implicit, so TANDEM_RETURN_IF_ERROR works
      : code(ToC(s.code())), message(s.message()) {}
  CStatus(int c, std::string m) : code(c), message(std::move(m)) {}
  static int ToC(Code c) {
    switch (c) {
      case Code::kOk:
        return TANDEM_OK;
      case Code::kNotFound:
        return TANDEM_NOT_FOUND;
      case Code::kInvalidArgument:
        return TANDEM_INVALID;
      case Code::kCorrupt:
        return TANDEM_CORRUPT;
      case Code::kUnauthorized:
        return TANDEM_UNAUTHORIZED;
      case Code::kIo:
        return TANDEM_IO;
      case Code::kBusy:
        return TANDEM_BUSY;
      case Code::kUnsupported:
        return TANDEM_UNSUPPORTED;
    }
    return TANDEM_INTERNAL;
  }
  int code = TANDEM_OK;
  std::string message;
};

CStatus Invalid(std::string m) { return {TANDEM_INVALID, std::move(m)}; }

// Tandem's own collections (the trust set) are not the app's: the feed leaves them out.
bool IsSystem(const std::string& collection) {
  return collection.rfind(tandem::net::kSystemPrefix, 0) == 0;
}

int Fill(tandem_error* err, const CStatus& st) {
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
int Guard(tandem_error* err, F&& f) noexcept {
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

std::mutex& HandlesMu() {
  static auto* mu = new std::mutex;  // never destroyed: handles may outlive main()
  return *mu;
}
std::unordered_map<const void*, Kind>& Handles() {
  static auto* h = new std::unordered_map<const void*, Kind>;
  return *h;
}
void Register(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  Handles()[p] = k;
}
// Removes the handle; false if it was not live (already freed, or not ours).
bool Unregister(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(p);
  if (it == Handles().end() || it->second != k) return false;
  Handles().erase(it);
  return true;
}
bool IsLive(const void* p, Kind k) {
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(p);
  return it != Handles().end() && it->second == k;
}

// Copies a string out to the caller, to be freed with tandem_free.
CStatus Out(const std::string& s, char** out, size_t* len) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (!p) return {TANDEM_IO, "out of memory"};
  std::memcpy(p, s.data(), s.size());
  p[s.size()] = '\0';
  *out = p;
  if (len) *len = s.size();
  return {};
}

CStatus NeedOut(const void* p, const char* what) {
  if (!p) return Invalid(std::string(what) + " is NULL");
  return {};
}

#define C_RETURN_IF(expr)                    \
  do {                                       \
    CStatus _cst = (expr);                   \
    if (_cst.code != TANDEM_OK) return _cst; \
  } while (0)

CStatus Name(const char* s, const char* what, std::string* out) {
  if (!s) return Invalid(std::string(what) + " is NULL");
  *out = s;
  return {};
}

CStatus ToValue(const tandem_value* v, engine::Value* out) {
  if (!v) return Invalid("value is NULL");
  switch (v->type) {
    case TANDEM_NULL:
      *out = std::monostate{};
      return {};
    case TANDEM_BOOL:
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
        return Invalid("value of " + std::to_string(v->len) + " bytes is over the 512 KiB limit");
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
  return Invalid("unknown value type " + std::to_string(v->type));
}

// Finds integer literals outside int64, which the parser turns into doubles; dumped again
// ("1.8446744073709552e+19") they would get past ParseScalar's check for them.
struct IntegerRangeCheck : Json::json_sax_t {
  bool out_of_range = false;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(Json::number_integer_t) override { return true; }
  bool number_unsigned(Json::number_unsigned_t) override { return true; }
  bool number_float(Json::number_float_t, const Json::string_t& text) override {
    if (text.find_first_of(".eE") == std::string::npos) out_of_range = true;
    return true;
  }
  bool string(Json::string_t&) override { return true; }
  bool binary(Json::binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(Json::string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const Json::exception&) override {
    return false;
  }
};

// A JSON object of scalars as register fields.
CStatus ParseFields(const char* json, size_t len,
                    std::vector<std::pair<std::string, engine::Value>>* out) {
  if (!json) return Invalid("json is NULL");
  Json j = Json::parse(std::string_view(json, len), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Invalid("expected a JSON object of fields");
  if (j.empty()) return Invalid("no fields to put");
  IntegerRangeCheck range;
  Json::sax_parse(std::string_view(json, len), &range);
  if (range.out_of_range) return Invalid("an integer is out of the int64 range");
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto v = tandem::bindings::ParseScalar(it.value().dump());
    if (!v.ok()) return Invalid(it.key() + ": " + v.status().message());
    TANDEM_RETURN_IF_ERROR(engine::ValidateFieldName(it.key()));
    out->emplace_back(it.key(), std::move(v).value());
  }
  return {};
}

}  // namespace

// ---- Handle types -------------------------------------------------------------------

struct tandem_db {
  std::shared_ptr<Device> device;
};

struct tandem_batch {
  enum class Op { kPut, kIncr, kAdd, kRemove, kDelete };
  struct Entry {
    Op op;
    std::string collection, id, field;
    engine::Value value;
    int64_t by = 0;
  };
  std::vector<Entry> entries;
};

struct tandem_record {
  engine::Record record;
  std::vector<std::string> names;
};

struct tandem_iter {
  std::shared_ptr<Device> device;
  std::string collection, last;
  bool done = false;
};

namespace {

// What a subscription's thread needs; shared with the thread, so that freeing the
// subscription from its own callback is safe.
struct WatchState {
  std::shared_ptr<Device> device;
  std::unique_ptr<tandem::storage::ChangeWatcher> watcher;  // after device: freed first
  std::mutex mu;                                            // polling mode: one drainer at a time
  uint64_t cursor = 0;
  tandem_change_fn fn = nullptr;
  void* context = nullptr;
  std::atomic<bool> stopping{false};
  int stop_fd = -1;
  std::thread thread;
  // The thread waits for `thread` to be assigned (a callback may free the subscription,
  // which reads it).
  std::mutex start_mu;
  std::condition_variable start_cv;
  bool started = false;
  ~WatchState() {
    if (thread.joinable()) {
      if (std::this_thread::get_id() == thread.get_id())
        thread.detach();
      else
        thread.join();
    }
    if (stop_fd >= 0) ::close(stop_fd);
  }
};

// Calls fn for each change after the cursor; false if stopping.
bool Deliver(WatchState& s) {
  for (;;) {
    auto page = s.device->replica().Changes(s.cursor, 1000);
    if (!page.ok()) return true;  // try again at the next notification
    for (const auto& c : page->changes) {
      if (s.stopping) return false;
      if (IsSystem(c.collection)) continue;
      const std::string j = tandem::bindings::Canonical(tandem::bindings::ChangeToJson(c));
      s.fn(j.c_str(), j.size(), c.cursor, s.context);
    }
    if (page->next_cursor == s.cursor) return true;
    s.cursor = page->next_cursor;
  }
}

void WatchThread(std::shared_ptr<WatchState> s) {
  {
    std::unique_lock lock(s->start_mu);
    s->start_cv.wait(lock, [&] { return s->started; });
  }
  while (!s->stopping) {
    if (!Deliver(*s)) break;
    pollfd fds[2] = {{s->watcher->fd(), POLLIN, 0}, {s->stop_fd, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0 && errno != EINTR) break;
    if (fds[1].revents) break;
    s->watcher->Clear();
  }
}

}  // namespace

struct tandem_watch {
  std::shared_ptr<WatchState> state;
};

namespace {
// The state of a live subscription handle, held for the call.
Result<std::shared_ptr<WatchState>> WatchOf(tandem_watch* w) {
  if (!w) return Status::Invalid("tandem_watch is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(w);
  if (it == Handles().end() || it->second != Kind::kWatch)
    return Status::Invalid("the tandem_watch handle is freed or not a tandem_watch");
  return w->state;
}
}  // namespace

struct tandem_node {
  std::shared_ptr<Device> device;
  std::shared_ptr<net::Node> node;  // copied by each call, so a concurrent free waits
};

namespace {

Result<std::shared_ptr<Device>> DeviceOf(tandem_db* db) {
  if (!db) return Status::Invalid("tandem_db is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(db);
  if (it == Handles().end() || it->second != Kind::kDb)
    return Status::Invalid("the tandem_db handle is closed or not a tandem_db");
  return db->device;  // a copy: the replica stays open for this call even if closed meanwhile
}

#define DEVICE_OR_RETURN(var, db)                      \
  auto var##_r = DeviceOf(db);                         \
  if (!var##_r.ok()) return CStatus(var##_r.status()); \
  std::shared_ptr<Device> var = std::move(var##_r).value()

CStatus CheckHandle(const void* p, Kind k, const char* name) {
  if (!p) return Invalid(std::string(name) + " is NULL");
  if (!IsLive(p, k))
    return Invalid(std::string("the ") + name + " handle is freed or not a " + name);
  return {};
}

tandem::device::OpenOptions OpenOptionsOf(const tandem_open_options* o, CStatus* st) {
  tandem::device::OpenOptions out;
  if (!o) return out;
  if (o->version < 1)
    *st = Invalid("tandem_open_options.version is 0: use TANDEM_OPEN_OPTIONS_INIT");
  if (o->durability == TANDEM_RELAXED)
    out.durability = tandem::storage::Durability::kRelaxed;
  else if (o->durability != TANDEM_DURABLE)
    *st = Invalid("unknown durability " + std::to_string(o->durability));
  return out;
}

CStatus Record(tandem_batch* b, tandem_batch::Op op, const char* coll, const char* id,
               const char* field, const tandem_value* v, int64_t by) {
  C_RETURN_IF(CheckHandle(b, Kind::kBatch, "tandem_batch"));
  tandem_batch::Entry e;
  e.op = op;
  e.by = by;
  C_RETURN_IF(Name(coll, "collection", &e.collection));
  C_RETURN_IF(Name(id, "id", &e.id));
  TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(e.collection));
  TANDEM_RETURN_IF_ERROR(engine::ValidateRecordId(e.id));
  if (op != tandem_batch::Op::kDelete) {
    C_RETURN_IF(Name(field, "field", &e.field));
    TANDEM_RETURN_IF_ERROR(engine::ValidateFieldName(e.field));
  }
  if (op == tandem_batch::Op::kPut || op == tandem_batch::Op::kAdd ||
      op == tandem_batch::Op::kRemove) {
    C_RETURN_IF(ToValue(v, &e.value));
    TANDEM_RETURN_IF_ERROR(engine::ValidateValue(e.value));
  }
  b->entries.push_back(std::move(e));
  return {};
}

Status Apply(engine::Batch& b, const tandem_batch::Entry& e) {
  using Op = tandem_batch::Op;
  switch (e.op) {
    case Op::kPut:
      return b.Put(e.collection, e.id, e.field, e.value);
    case Op::kIncr:
      return b.Incr(e.collection, e.id, e.field, e.by);
    case Op::kAdd:
      return b.Add(e.collection, e.id, e.field, e.value);
    case Op::kRemove:
      return b.Remove(e.collection, e.id, e.field, e.value);
    case Op::kDelete: {
      Status st = b.Delete(e.collection, e.id);
      return st.code() == Code::kNotFound ? Status::Ok() : st;
    }
  }
  return Status::Invalid("unknown operation");
}

CStatus RunSingle(tandem_db* db, tandem_batch::Op op, const char* coll, const char* id,
                  const char* field, const tandem_value* v, int64_t by) {
  DEVICE_OR_RETURN(d, db);
  tandem_batch b;
  Register(&b, Kind::kBatch);
  CStatus st = Record(&b, op, coll, id, field, v, by);
  Unregister(&b, Kind::kBatch);
  C_RETURN_IF(st);
  const auto& e = b.entries[0];
  if (op == tandem_batch::Op::kDelete) return d->replica().Delete(e.collection, e.id);
  return d->replica().Write([&](engine::Batch& wb) { return Apply(wb, e); });
}

const engine::FieldValue* FieldOf(const tandem_record* r, const char* field, CStatus* st) {
  *st = CheckHandle(r, Kind::kRecord, "tandem_record");
  if (st->code) return nullptr;
  if (!field) {
    *st = Invalid("field is NULL");
    return nullptr;
  }
  auto it = r->record.fields.find(field);
  if (it == r->record.fields.end()) {
    *st = CStatus(TANDEM_NOT_FOUND, "record " + r->record.id + " has no field " + field);
    return nullptr;
  }
  return &it->second;
}

CStatus WrongType(const char* field, const char* want) {
  return {TANDEM_WRONG_TYPE, std::string("field ") + field + " is not " + want};
}

}  // namespace

extern "C" {

const char* tandem_status_str(int status) {
  switch (status) {
    case TANDEM_OK:
      return "ok";
    case TANDEM_NOT_FOUND:
      return "not found";
    case TANDEM_INVALID:
      return "invalid argument";
    case TANDEM_CORRUPT:
      return "corrupt";
    case TANDEM_UNAUTHORIZED:
      return "unauthorized";
    case TANDEM_IO:
      return "I/O error";
    case TANDEM_BUSY:
      return "busy";
    case TANDEM_UNSUPPORTED:
      return "unsupported";
    case TANDEM_WRONG_TYPE:
      return "wrong type";
    case TANDEM_TOO_SMALL:
      return "buffer too small";
    case TANDEM_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

const char* tandem_version(void) { return kVersion; }

void tandem_free(void* p) { std::free(p); }

// ---- Replicas ----

static int OpenOrCreate(tandem_db** out, const char* dir, const tandem_open_options* options,
                        tandem_error* err, bool create) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    std::string d;
    C_RETURN_IF(Name(dir, "dir", &d));
    if (d.empty()) return Invalid("dir is empty");
    CStatus st;
    auto o = OpenOptionsOf(options, &st);
    C_RETURN_IF(st);
    auto dev = create ? Device::Create(d, o) : Device::Open(d, o);
    if (!dev.ok()) return dev.status();
    auto* h = new tandem_db{std::move(dev).value()};
    Register(h, Kind::kDb);
    *out = h;
    return {};
  });
}

int tandem_db_create(tandem_db** out, const char* dir, const tandem_open_options* options,
                     tandem_error* err) {
  return OpenOrCreate(out, dir, options, err, true);
}

int tandem_db_open(tandem_db** out, const char* dir, const tandem_open_options* options,
                   tandem_error* err) {
  return OpenOrCreate(out, dir, options, err, false);
}

void tandem_db_close(tandem_db* db) {
  if (!db || !Unregister(db, Kind::kDb)) return;
  delete db;
}

int tandem_db_info(char** json, size_t* len, tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    auto in = d->GetInfo();
    if (!in.ok()) return in.status();
    Json vv = Json::object();
    for (const auto& [rid, seq] : in->version_vector.entries()) vv[rid.Hex()] = seq;
    Json j{
        {"device_id", in->device_id}, {"replica_id", in->replica_id.Hex()}, {"version_vector", vv}};
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

int tandem_db_device_id(char** id, tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(id, "id"));
    DEVICE_OR_RETURN(d, db);
    TANDEM_RETURN_IF_ERROR(d->identity().status());
    return Out(d->device_id(), id, nullptr);
  });
}

// ---- Writing ----

int tandem_put(tandem_db* db, const char* collection, const char* id, const char* field,
               const tandem_value* value, tandem_error* err) {
  return Guard(
      err, [&] { return RunSingle(db, tandem_batch::Op::kPut, collection, id, field, value, 0); });
}

int tandem_put_json(tandem_db* db, const char* collection, const char* id, const char* json,
                    size_t len, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string c, i;
    C_RETURN_IF(Name(collection, "collection", &c));
    C_RETURN_IF(Name(id, "id", &i));
    std::vector<std::pair<std::string, engine::Value>> fields;
    C_RETURN_IF(ParseFields(json, len, &fields));
    return d->replica().Put(c, i, fields);
  });
}

int tandem_incr(tandem_db* db, const char* collection, const char* id, const char* field,
                int64_t by, tandem_error* err) {
  return Guard(err, [&] {
    return RunSingle(db, tandem_batch::Op::kIncr, collection, id, field, nullptr, by);
  });
}

int tandem_add(tandem_db* db, const char* collection, const char* id, const char* field,
               const tandem_value* element, tandem_error* err) {
  return Guard(err, [&] {
    return RunSingle(db, tandem_batch::Op::kAdd, collection, id, field, element, 0);
  });
}

int tandem_remove(tandem_db* db, const char* collection, const char* id, const char* field,
                  const tandem_value* element, tandem_error* err) {
  return Guard(err, [&] {
    return RunSingle(db, tandem_batch::Op::kRemove, collection, id, field, element, 0);
  });
}

int tandem_delete(tandem_db* db, const char* collection, const char* id, tandem_error* err) {
  return Guard(err, [&] {
    return RunSingle(db, tandem_batch::Op::kDelete, collection, id, nullptr, nullptr, 0);
  });
}

int tandem_batch_new(tandem_batch** out, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = new tandem_batch;
    Register(*out, Kind::kBatch);
    return {};
  });
}

void tandem_batch_free(tandem_batch* batch) {
  if (!batch || !Unregister(batch, Kind::kBatch)) return;
  delete batch;
}

int tandem_batch_clear(tandem_batch* batch, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(CheckHandle(batch, Kind::kBatch, "tandem_batch"));
    batch->entries.clear();
    return {};
  });
}

size_t tandem_batch_count(const tandem_batch* batch) {
  if (!batch || !IsLive(batch, Kind::kBatch)) return 0;
  return batch->entries.size();
}

int tandem_batch_put(tandem_batch* batch, const char* collection, const char* id, const char* field,
                     const tandem_value* value, tandem_error* err) {
  return Guard(
      err, [&] { return Record(batch, tandem_batch::Op::kPut, collection, id, field, value, 0); });
}

int tandem_batch_put_json(tandem_batch* batch, const char* collection, const char* id,
                          const char* json, size_t len, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(CheckHandle(batch, Kind::kBatch, "tandem_batch"));
    std::vector<std::pair<std::string, engine::Value>> fields;
    C_RETURN_IF(ParseFields(json, len, &fields));
    // All or nothing: check every field before recording any.
    tandem_batch staged;
    Register(&staged, Kind::kBatch);
    CStatus st;
    for (const auto& field : fields) {
      st = [&]() -> CStatus {
        tandem_batch::Entry e{tandem_batch::Op::kPut, "", "", field.first, field.second, 0};
        C_RETURN_IF(Name(collection, "collection", &e.collection));
        C_RETURN_IF(Name(id, "id", &e.id));
        TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(e.collection));
        TANDEM_RETURN_IF_ERROR(engine::ValidateRecordId(e.id));
        TANDEM_RETURN_IF_ERROR(engine::ValidateValue(e.value));
        staged.entries.push_back(std::move(e));
        return {};
      }();
      if (st.code) break;
    }
    Unregister(&staged, Kind::kBatch);
    C_RETURN_IF(st);
    for (auto& e : staged.entries) batch->entries.push_back(std::move(e));
    return {};
  });
}

int tandem_batch_incr(tandem_batch* batch, const char* collection, const char* id,
                      const char* field, int64_t by, tandem_error* err) {
  return Guard(err, [&] {
    return Record(batch, tandem_batch::Op::kIncr, collection, id, field, nullptr, by);
  });
}

int tandem_batch_add(tandem_batch* batch, const char* collection, const char* id, const char* field,
                     const tandem_value* element, tandem_error* err) {
  return Guard(err, [&] {
    return Record(batch, tandem_batch::Op::kAdd, collection, id, field, element, 0);
  });
}

int tandem_batch_remove(tandem_batch* batch, const char* collection, const char* id,
                        const char* field, const tandem_value* element, tandem_error* err) {
  return Guard(err, [&] {
    return Record(batch, tandem_batch::Op::kRemove, collection, id, field, element, 0);
  });
}

int tandem_batch_delete(tandem_batch* batch, const char* collection, const char* id,
                        tandem_error* err) {
  return Guard(err, [&] {
    return Record(batch, tandem_batch::Op::kDelete, collection, id, nullptr, nullptr, 0);
  });
}

int tandem_db_write(tandem_db* db, const tandem_batch* batch, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    C_RETURN_IF(CheckHandle(batch, Kind::kBatch, "tandem_batch"));
    if (batch->entries.empty()) return {};
    return d->replica().Write([&](engine::Batch& b) -> Status {
      for (const auto& e : batch->entries) TANDEM_RETURN_IF_ERROR(Apply(b, e));
      return Status::Ok();
    });
  });
}

// ---- Reading ----

int tandem_get_json(char** json, size_t* len, tandem_db* db, const char* collection, const char* id,
                    tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    std::string c, i;
    C_RETURN_IF(Name(collection, "collection", &c));
    C_RETURN_IF(Name(id, "id", &i));
    auto r = d->replica().Get(c, i);
    if (!r.ok()) return r.status();
    return Out(tandem::bindings::Canonical(tandem::bindings::RecordToJson(*r)), json, len);
  });
}

int tandem_get(tandem_record** out, tandem_db* db, const char* collection, const char* id,
               tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    std::string c, i;
    C_RETURN_IF(Name(collection, "collection", &c));
    C_RETURN_IF(Name(id, "id", &i));
    auto r = d->replica().Get(c, i);
    if (!r.ok()) return r.status();
    auto* h = new tandem_record{std::move(*r), {}};
    for (const auto& [name, v] : h->record.fields) h->names.push_back(name);
    Register(h, Kind::kRecord);
    *out = h;
    return {};
  });
}

void tandem_record_free(tandem_record* record) {
  if (!record || !Unregister(record, Kind::kRecord)) return;
  delete record;
}

size_t tandem_record_field_count(const tandem_record* record) {
  if (!record || !IsLive(record, Kind::kRecord)) return 0;
  return record->names.size();
}

const char* tandem_record_field_name(const tandem_record* record, size_t index) {
  if (!record || !IsLive(record, Kind::kRecord) || index >= record->names.size()) return nullptr;
  return record->names[index].c_str();
}

int tandem_record_kind(int* kind, int* type, const tandem_record* record, const char* field,
                       tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(kind, "kind"));
    CStatus st;
    const auto* f = FieldOf(record, field, &st);
    if (!f) return st;
    *kind = f->kind == engine::Kind::kRegister  ? TANDEM_REGISTER
            : f->kind == engine::Kind::kCounter ? TANDEM_COUNTER
                                                : TANDEM_SET;
    if (type) {
      *type = f->kind == engine::Kind::kRegister  ? static_cast<int>(f->scalar.index())
              : f->kind == engine::Kind::kCounter ? TANDEM_INT
                                                  : -1;
    }
    return {};
  });
}

}  // extern "C"

namespace {
// A register's scalar of type T (or, with counters_too, a counter's value), into *out.
template <typename T, typename Out>
int ReadScalar(Out* out, const tandem_record* record, const char* field, tandem_error* err,
               const char* what, bool counters_too = false) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "value"));
    CStatus st;
    const auto* f = FieldOf(record, field, &st);
    if (!f) return st;
    if constexpr (std::is_same_v<T, int64_t>) {
      if (counters_too && f->kind == engine::Kind::kCounter) {
        *out = f->count;
        return {};
      }
    }
    const auto* v = f->kind == engine::Kind::kRegister ? std::get_if<T>(&f->scalar) : nullptr;
    if (!v) return WrongType(field, what);
    *out = static_cast<Out>(*v);
    return {};
  });
}
}  // namespace

extern "C" {

int tandem_record_get_int(int64_t* value, const tandem_record* record, const char* field,
                          tandem_error* err) {
  return ReadScalar<int64_t>(value, record, field, err, "an integer or a counter", true);
}

int tandem_record_get_double(double* value, const tandem_record* record, const char* field,
                             tandem_error* err) {
  return ReadScalar<double>(value, record, field, err, "a double");
}

int tandem_record_get_bool(int* value, const tandem_record* record, const char* field,
                           tandem_error* err) {
  return ReadScalar<bool>(value, record, field, err, "a boolean");
}

static int CopyText(char* buf, size_t cap, size_t* len, const tandem_record* record,
                    const char* field, tandem_error* err, bool bytes) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(len, "len"));
    if (!buf && cap > 0) return Invalid("buf is NULL but cap is not 0");
    CStatus st;
    const auto* f = FieldOf(record, field, &st);
    if (!f) return st;
    const std::string* s = nullptr;
    if (f->kind == engine::Kind::kRegister) {
      if (bytes) {
        if (const auto* b = std::get_if<engine::Bytes>(&f->scalar)) s = &b->data;
      } else {
        s = std::get_if<std::string>(&f->scalar);
      }
    }
    if (!s) return WrongType(field, bytes ? "bytes" : "a string");
    *len = s->size();
    if (cap < s->size())
      return {TANDEM_TOO_SMALL, "field " + std::string(field) + " needs " +
                                    std::to_string(s->size()) + " bytes, the buffer has " +
                                    std::to_string(cap)};
    if (!s->empty()) std::memcpy(buf, s->data(), s->size());
    if (!bytes && cap > s->size()) buf[s->size()] = '\0';
    return {};
  });
}

int tandem_record_get_string(char* buf, size_t cap, size_t* len, const tandem_record* record,
                             const char* field, tandem_error* err) {
  return CopyText(buf, cap, len, record, field, err, false);
}

int tandem_record_get_bytes(char* buf, size_t cap, size_t* len, const tandem_record* record,
                            const char* field, tandem_error* err) {
  return CopyText(buf, cap, len, record, field, err, true);
}

int tandem_record_field_json(char** json, size_t* len, const tandem_record* record,
                             const char* field, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    CStatus st;
    const auto* f = FieldOf(record, field, &st);
    if (!f) return st;
    return Out(tandem::bindings::Canonical(tandem::bindings::FieldToJson(*f)), json, len);
  });
}

int tandem_collections(char** json, size_t* len, tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    auto c = d->replica().Collections();
    if (!c.ok()) return c.status();
    Json j = Json::array();
    for (const auto& name : *c)
      if (!IsSystem(name)) j.push_back(name);
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

int tandem_iter_new(tandem_iter** out, tandem_db* db, const char* collection, const char* after,
                    tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    std::string c;
    C_RETURN_IF(Name(collection, "collection", &c));
    TANDEM_RETURN_IF_ERROR(engine::ValidateCollection(c));
    auto* it = new tandem_iter{std::move(d), c, after ? after : "", false};
    Register(it, Kind::kIter);
    *out = it;
    return {};
  });
}

void tandem_iter_free(tandem_iter* it) {
  if (!it || !Unregister(it, Kind::kIter)) return;
  delete it;
}

int tandem_iter_next(char** json, size_t* len, tandem_iter* it, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    *json = nullptr;
    if (len) *len = 0;
    C_RETURN_IF(CheckHandle(it, Kind::kIter, "tandem_iter"));
    if (it->done) return {};
    std::optional<engine::Record> next;
    TANDEM_RETURN_IF_ERROR(
        it->device->replica().Scan(it->collection, it->last, [&](const engine::Record& r) {
          next = r;
          return false;
        }));
    if (!next) {
      it->done = true;
      return {};
    }
    it->last = next->id;
    return Out(tandem::bindings::Canonical(tandem::bindings::RecordToJson(*next)), json, len);
  });
}

int tandem_conflicts_json(char** json, size_t* len, tandem_db* db, const char* collection,
                          const char* id, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    std::string c, i;
    C_RETURN_IF(Name(collection, "collection", &c));
    C_RETURN_IF(Name(id, "id", &i));
    auto r = d->replica().Conflicts(c, i);
    if (!r.ok()) return r.status();
    return Out(tandem::bindings::Canonical(tandem::bindings::ConflictsToJson(*r)), json, len);
  });
}

// ---- The change feed ----

int tandem_changes(char** json, size_t* len, uint64_t* next, tandem_db* db, uint64_t since,
                   size_t limit, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    C_RETURN_IF(NeedOut(next, "next"));
    DEVICE_OR_RETURN(d, db);
    auto page = d->replica().Changes(since, limit ? limit : 1000);
    if (!page.ok()) return page.status();
    Json j = Json::array();
    for (const auto& c : page->changes)
      if (!IsSystem(c.collection)) j.push_back(tandem::bindings::ChangeToJson(c));
    *next = page->next_cursor;
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

int tandem_watch_new(tandem_watch** out, tandem_db* db, uint64_t since, tandem_change_fn fn,
                     void* context, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    auto s = std::make_shared<WatchState>();
    auto w = d->Watch();
    if (!w.ok()) return w.status();
    s->device = std::move(d);
    s->watcher = std::move(w).value();
    s->cursor = since;
    s->fn = fn;
    s->context = context;
    if (fn) {
      s->stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (s->stop_fd < 0) return {TANDEM_IO, std::string("eventfd: ") + std::strerror(errno)};
    }
    auto* h = new tandem_watch{s};
    Register(h, Kind::kWatch);
    *out = h;
    // Last: the first callback may free the subscription, so the handle must be out.
    if (fn) {
      s->thread = std::thread(WatchThread, s);
      std::lock_guard lock(s->start_mu);
      s->started = true;
      s->start_cv.notify_all();
    }
    return {};
  });
}

void tandem_watch_free(tandem_watch* w) {
  if (!w || !Unregister(w, Kind::kWatch)) return;
  auto s = std::move(w->state);
  delete w;
  s->stopping = true;
  if (s->stop_fd >= 0) {
    uint64_t one = 1;
    if (::write(s->stop_fd, &one, sizeof one) < 0) {
      // The counter cannot overflow here; stopping is set anyway.
    }
  }
  if (s->thread.joinable()) {
    if (std::this_thread::get_id() == s->thread.get_id())
      s->thread.detach();  // from the callback: the thread ends after it returns
    else
      s->thread.join();
  }
}

int tandem_watch_fd(int* fd, tandem_watch* w, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(fd, "fd"));
    auto ws = WatchOf(w);
    if (!ws.ok()) return ws.status();
    if ((*ws)->fn) return Invalid("a subscription with a callback has no descriptor to poll");
    *fd = (*ws)->watcher->fd();
    return {};
  });
}

int tandem_watch_drain(char** json, size_t* len, uint64_t* cursor, tandem_watch* w,
                       tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto ws = WatchOf(w);
    if (!ws.ok()) return ws.status();
    WatchState& s = **ws;
    if (s.fn) return Invalid("a subscription with a callback delivers its changes itself");
    std::lock_guard lock(s.mu);
    s.watcher->Clear();  // before reading: a commit after this makes it readable again
    Json j = Json::array();
    for (;;) {
      auto page = s.device->replica().Changes(s.cursor, 1000);
      if (!page.ok()) return page.status();
      for (const auto& c : page->changes)
        if (!IsSystem(c.collection)) j.push_back(tandem::bindings::ChangeToJson(c));
      if (page->next_cursor == s.cursor) break;
      s.cursor = page->next_cursor;
    }
    if (cursor) *cursor = s.cursor;
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

// ---- Pairing ----

int tandem_invite(char** code, size_t* len, tandem_db* db, const char* const* addresses,
                  size_t address_count, int expires_minutes, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(code, "code"));
    DEVICE_OR_RETURN(d, db);
    if (address_count > 0 && !addresses) return Invalid("addresses is NULL");
    tandem::device::InviteOptions o;
    for (size_t i = 0; i < address_count; ++i) {
      if (!addresses[i]) return Invalid("an address is NULL");
      o.addresses.emplace_back(addresses[i]);
    }
    o.expires_minutes = expires_minutes == 0 ? 24 * 60 : expires_minutes;
    auto c = d->Invite(o);
    if (!c.ok()) return c.status();
    return Out(*c, code, len);
  });
}

int tandem_join(tandem_db* db, const char* code, size_t len, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    if (!code) return Invalid("code is NULL");
    std::string c(code, len);
    while (!c.empty() && (c.back() == '\n' || c.back() == '\r' || c.back() == ' ')) c.pop_back();
    return d->Join(c).status();
  });
}

int tandem_join_cancel(tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    return d->CancelJoin();
  });
}

int tandem_devices(char** json, size_t* len, tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    auto m = d->Devices();
    if (!m.ok()) return m.status();
    Json j = Json::array();
    for (const auto& member : *m)
      j.push_back(tandem::bindings::MemberToJson(member, member.device == d->device_id()));
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

int tandem_revoke(tandem_db* db, const char* device_id, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string id;
    C_RETURN_IF(Name(device_id, "device_id", &id));
    return d->Revoke(id);
  });
}

// ---- Backup and checks ----

int tandem_backup(tandem_db* db, const char* dest, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string to;
    C_RETURN_IF(Name(dest, "dest", &to));
    if (to.empty()) return Invalid("dest is empty");
    return d->Backup(to);
  });
}

int tandem_restore(const char* backup, const char* dir, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    std::string from, to;
    C_RETURN_IF(Name(backup, "backup", &from));
    C_RETURN_IF(Name(dir, "dir", &to));
    if (from.empty() || to.empty()) return Invalid("backup and dir must not be empty");
    return Device::Restore(from, to);
  });
}

int tandem_check(char** json, size_t* len, tandem_db* db, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    auto rep = d->Check();
    if (!rep.ok()) return rep.status();
    Json j{{"ok", true},
           {"records", rep->records},
           {"fields", rep->fields},
           {"log_entries", rep->log_entries}};
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

// ---- The sync node ----

static CStatus ParseList(const char* list, const char* what, engine::CollectionFilter* out) {
  if (!list) return {};
  std::set<std::string> names;
  std::string s(list), item;
  std::stringstream ss(s);
  while (std::getline(ss, item, ',')) {
    Status st = engine::ValidateCollection(item);
    if (!st.ok()) return Invalid(std::string(what) + ": " + st.message());
    names.insert(item);
  }
  *out = engine::CollectionFilter::Only(std::move(names));
  return {};
}

int tandem_node_new(tandem_node** out, tandem_db* db, const tandem_node_options* options,
                    tandem_node_event_fn fn, void* context, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(out, "out"));
    *out = nullptr;
    DEVICE_OR_RETURN(d, db);
    if (!options) return Invalid("options is NULL: use TANDEM_NODE_OPTIONS_INIT");
    if (options->version < 1)
      return Invalid("tandem_node_options.version is 0: use TANDEM_NODE_OPTIONS_INIT");
    net::NodeOptions o;
    if (options->listen) o.listen = options->listen;
    if (options->peer_count > 0 && !options->peers) return Invalid("peers is NULL");
    for (size_t i = 0; i < options->peer_count; ++i) {
      if (!options->peers[i]) return Invalid("a peer is NULL");
      o.peers.emplace_back(options->peers[i]);
    }
    switch (options->mode) {
      case TANDEM_NODE_LIVE:
        o.mode = net::NodeMode::kLive;
        break;
      case TANDEM_NODE_INTERVAL:
        o.mode = net::NodeMode::kInterval;
        break;
      case TANDEM_NODE_ONCE:
        o.mode = net::NodeMode::kOnce;
        break;
      default:
        return Invalid("unknown node mode " + std::to_string(options->mode));
    }
    o.interval_s = options->interval_s;
    o.discover = options->discover != 0;
    C_RETURN_IF(ParseList(options->send, "send", &o.send));
    C_RETURN_IF(ParseList(options->receive, "receive", &o.receive));
    if (options->idle_timeout_s < 1 || options->idle_timeout_s > 3600)
      return Invalid("idle_timeout_s must be 1 to 3600");
    if (options->stop_timeout_ms < 0) return Invalid("stop_timeout_ms must not be negative");
    o.idle_timeout_s = options->idle_timeout_s;
    o.keepalive_s = std::max(1, options->idle_timeout_s / 3);
    o.stop_timeout_ms = options->stop_timeout_ms;
    auto n = d->NewNode(std::move(o));
    if (!n.ok()) return n.status();
    if (fn) {
      (*n)->SetEventCallback([fn, context](const net::NodeEvent& e) {
        tandem_node_event ce{static_cast<int>(e.kind),
                             e.device.c_str(),
                             e.address.c_str(),
                             e.message.c_str(),
                             e.ok ? 1 : 0,
                             e.fields_received,
                             e.fields_sent};
        fn(&ce, context);
      });
    }
    auto* h = new tandem_node{std::move(d), std::shared_ptr<net::Node>(std::move(n).value())};
    Register(h, Kind::kNode);
    *out = h;
    return {};
  });
}

// The node of a live handle, held for the call (a concurrent free cannot pull it away).
static Result<std::shared_ptr<net::Node>> NodeOf(tandem_node* node) {
  if (!node) return Status::Invalid("tandem_node is NULL");
  std::lock_guard lock(HandlesMu());
  auto it = Handles().find(node);
  if (it == Handles().end() || it->second != Kind::kNode)
    return Status::Invalid("the tandem_node handle is freed or not a tandem_node");
  return node->node;
}

int tandem_node_start(tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return (*n)->Start();
  });
}

int tandem_node_stop(tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    (*n)->Stop();
    return {};
  });
}

int tandem_node_wait(tandem_node* node, int timeout_ms, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    if (!(*n)->Wait(timeout_ms)) return {TANDEM_BUSY, "the node is still running"};
    return {};
  });
}

void tandem_node_free(tandem_node* node) {
  if (!node || !Unregister(node, Kind::kNode)) return;
  // From another thread Stop() returns once the last event was delivered; from the
  // node's own callback it only begins stopping, and the events still to come
  // (disconnected, stopped) must not reach a callback whose context the app may free
  // with the node.
  node->node->Stop();
  node->node->SetEventCallback(nullptr);
  delete node;  // (from its own callback: the thread finishes on its own)
}

int tandem_node_status(char** json, size_t* len, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return Out(tandem::bindings::Canonical(tandem::bindings::NodeSnapshotToJson((*n)->Snapshot())),
               json, len);
  });
}

int tandem_node_listen_address(char** address, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(address, "address"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    return Out((*n)->Snapshot().listen, address, nullptr);
  });
}

int tandem_node_event_fd(int* fd, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(fd, "fd"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    *fd = (*n)->event_fd();
    return {};
  });
}

int tandem_node_drain_events(char** json, size_t* len, tandem_node* node, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    auto n = NodeOf(node);
    if (!n.ok()) return n.status();
    Json j = Json::array();
    for (const auto& e : (*n)->DrainEvents()) j.push_back(tandem::bindings::NodeEventToJson(e));
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

}  // extern "C"
