// The C API's blobs (tandem.h): attaching from a reader, reading to a writer.
#include "capi_internal.h"

namespace {
using namespace tandem::capi;  // its using-declarations (Status, Json, Device, ...) too

CStatus HashOf(const char* hex, engine::BlobHash* out) {
  if (!hex) return Invalid("hash is NULL");
  auto h = engine::BlobHashFromHex(hex);
  if (!h.ok()) return h.status();
  *out = *h;
  return {};
}

// A status a callback returned that stops the call: the call returns it as it is (the
// engine carries only codes of its own, which TANDEM_WRONG_TYPE, TANDEM_TOO_SMALL,
// TANDEM_INTERNAL and an app's own numbers are not).
class CallbackStop {
 public:
  Status Note(int rc, const char* what) {
    rc_ = rc;
    const Code code = CStatus::FromC(rc);
    return Status(code == Code::kOk ? Code::kIo : code,
                  std::string(what) + " callback returned " + std::to_string(rc));
  }
  CStatus Of(const Status& s) const {
    return rc_ != TANDEM_OK && !s.ok() ? CStatus(rc_, s.message()) : CStatus(s);
  }

 private:
  int rc_ = TANDEM_OK;
};

}  // namespace

extern "C" {

int tandem_attach(char** ref, size_t* len, tandem_db* db, const char* collection, const char* id,
                  const char* field, tandem_read_fn read, void* context, const char* type,
                  tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    std::string c, i, f;
    C_RETURN_IF(Name(collection, "collection", &c));
    C_RETURN_IF(Name(id, "id", &i));
    C_RETURN_IF(Name(field, "field", &f));
    if (!read) return Invalid("read is NULL");
    TANDEM_RETURN_IF_ERROR(Writable(c));
    CallbackStop stop;
    engine::BlobSource src = [&](char* buf, size_t cap) -> tandem::Result<size_t> {
      size_t n = 0;
      const int rc = read(buf, cap, &n, context);
      if (rc != TANDEM_OK) return stop.Note(rc, "read");
      if (n > cap) return Status::Invalid("read callback returned more bytes than asked for");
      return n;
    };
    auto r = d->replica().Attach(c, i, f, src, type ? type : "");
    if (!r.ok()) return stop.Of(r.status());
    if (!ref) return {};
    return Out(tandem::bindings::Canonical(tandem::bindings::ValueToJson(engine::Value{*r})), ref,
               len);
  });
}

int tandem_blob_read(tandem_db* db, const char* hash, uint64_t offset, tandem_write_fn write,
                     void* context, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    DEVICE_OR_RETURN(d, db);
    engine::BlobHash h;
    C_RETURN_IF(HashOf(hash, &h));
    if (!write) return Invalid("write is NULL");
    auto& r = d->replica();
    bool complete = false;
    Status asked = r.RequestBlob(h, &complete);
    if (!asked.ok()) return asked;
    if (!complete) {
      auto info = r.Blob(h);
      if (!info.ok()) return info.status();
      const uint64_t have = *info ? (*info)->have : 0,
                     of = *info ? engine::ChunkCount((*info)->size) : 0;
      return CStatus(TANDEM_NOT_FOUND, "blob " + std::string(hash) + " is not here yet (" +
                                           std::to_string(have) + " of " + std::to_string(of) +
                                           " chunks): requested from the peers");
    }
    CallbackStop stop;
    return stop.Of(r.ReadBlob(
        h,
        [&](std::string_view bytes) -> Status {
          const int rc = write(bytes.data(), bytes.size(), context);
          return rc == TANDEM_OK ? Status::Ok() : stop.Note(rc, "write");
        },
        offset));
  });
}

int tandem_blob_info(char** json, size_t* len, tandem_db* db, const char* hash, tandem_error* err) {
  return Guard(err, [&]() -> CStatus {
    C_RETURN_IF(NeedOut(json, "json"));
    DEVICE_OR_RETURN(d, db);
    engine::BlobHash h;
    C_RETURN_IF(HashOf(hash, &h));
    auto info = d->replica().Blob(h);
    if (!info.ok()) return info.status();
    if (!*info)
      return CStatus(TANDEM_NOT_FOUND, "blob " + std::string(hash) + " is not in this replica");
    const auto& b = **info;
    const uint64_t chunks = engine::ChunkCount(b.size);
    Json j{{"hash", engine::HexOf(h)},
           {"size", b.size},
           {"state", b.complete()  ? "complete"
                     : b.requested ? "requested"
                                   : "wanted"},
           {"chunks", chunks},
           {"chunks_held", b.complete() ? chunks : b.have}};
    return Out(tandem::bindings::Canonical(j), json, len);
  });
}

}  // extern "C"
