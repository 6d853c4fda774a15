// The C API: each function converts its arguments, calls the device module or the
// engine, and translates the result; everything goes through Guard, which catches
// whatever is thrown. Handles are checked against a table of the live ones, so a closed
// or foreign handle is an error instead of undefined behaviour (unless its address was
// reused by a newer handle).
#include "tandem.h"

#include <set>
#include <sstream>
#include <type_traits>

#include "capi_internal.h"
#include "tandem/data/schema.h"

namespace {
using namespace tandem::capi;  // its using-declarations (Status, Json, Device, ...) too
}  // namespace

namespace {

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
  TANDEM_RETURN_IF_ERROR(Writable(e.collection));
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

namespace {
// A role's name, as invites and role changes take it.
CStatus RoleArg(const char* role, tandem::net::Role* out) {
  if (!role) return Invalid("role is NULL");
  auto r = tandem::net::ParseRole(role);
  if (!r) return Invalid(std::string("not a role (reader, member, admin, owner): ") + role);
  *out = *r;
  return CStatus();
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
    TANDEM_RETURN_IF_ERROR(Writable(c));
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
        TANDEM_RETURN_IF_ERROR(Writable(e.collection));
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

// ---- Schemas ----

int tandem_schema_set(tandem_db* db, const char* collection, const char* json, int64_t* version,
                      tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string c;
    C_RETURN_IF(Name(collection, "collection", &c));
    if (!json) return Status::Invalid("json is NULL");
    TANDEM_RETURN_IF_ERROR(Writable(c));
    auto v = tandem::data::SaveSchema(d->replica(), c, json);
    if (!v.ok()) return v.status();
    if (version) *version = *v;
    return Status::Ok();
  });
}

int tandem_schema_get(char** json, size_t* len, int64_t* version, tandem_db* db,
                      const char* collection, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    *json = nullptr;
    if (len) *len = 0;
    if (version) *version = 0;
    DEVICE_OR_RETURN(d, db);
    std::string c;
    C_RETURN_IF(Name(collection, "collection", &c));
    auto stored = tandem::data::LoadSchema(d->replica(), c);
    if (!stored.ok()) return stored.status();
    if (!*stored) return Status::Ok();
    if (version) *version = (*stored)->version;
    return Out((*stored)->text, json, len);
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

// ---- Pairing ----

int tandem_invite(char** code, size_t* len, tandem_db* db, const char* const* addresses,
                  size_t address_count, int expires_minutes, tandem_error* err) {
  return tandem_invite_role(code, len, db, addresses, address_count, expires_minutes, "member",
                            err);
}

int tandem_invite_role(char** code, size_t* len, tandem_db* db, const char* const* addresses,
                       size_t address_count, int expires_minutes, const char* role,
                       tandem_error* err) {
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
    C_RETURN_IF(RoleArg(role, &o.role));
    auto c = d->Invite(o);
    if (!c.ok()) return c.status();
    return Out(*c, code, len);
  });
}

namespace {
int Join(tandem_db* db, const char* code, size_t len, bool merge, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    if (!code) return Invalid("code is NULL");
    std::string c(code, len);
    while (!c.empty() && (c.back() == '\n' || c.back() == '\r' || c.back() == ' ')) c.pop_back();
    return d->Join(c, merge).status();
  });
}
}  // namespace

int tandem_join(tandem_db* db, const char* code, size_t len, tandem_error* err) {
  return Join(db, code, len, false, err);
}

int tandem_join_merge(tandem_db* db, const char* code, size_t len, tandem_error* err) {
  return Join(db, code, len, true, err);
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

int tandem_set_role(tandem_db* db, const char* device_id, const char* role, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string id;
    C_RETURN_IF(Name(device_id, "device_id", &id));
    tandem::net::Role r;
    C_RETURN_IF(RoleArg(role, &r));
    return d->SetRole(id, r);
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
    // The data is whole, but a device that lost its key cannot pair or sync.
    if (Status intact = d->IdentityIntact(); !intact.ok()) return intact;
    if (Status root = d->RootIntact(); !root.ok()) return root;
    Json j{{"ok", true},
           {"records", rep->records},
           {"fields", rep->fields},
           {"log_entries", rep->log_entries},
           {"blobs", rep->blobs},
           {"blob_bytes", rep->blob_bytes}};
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

}  // extern "C"
