// Writes to the `blobs` and `chunks` tables (their reads are LmdbReader's).
#include <cstring>

#include "lmdb_internal.h"
#include "tandem/engine/codec.h"

namespace tandem::storage {

// A blob has one entry, under the letter of its state: the others go.
Status PutBlobEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h,
                    const engine::BlobInfo& info) {
  const char letter = LmdbReader::BlobLetter(info.state);
  for (char other : {'b', 'w', 'p', 's'}) {
    if (other == letter) continue;
    std::string key = LmdbReader::BlobKey(other, h);
    MDB_val k = Val(key);
    int rc = mdb_del(txn, impl.blobs, &k, nullptr);
    if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "write blob entry");
  }
  std::string key = LmdbReader::BlobKey(letter, h), v = engine::EncodeBlobInfo(info);
  MDB_val k = Val(key), val = Val(v);
  int rc = mdb_put(txn, impl.blobs, &k, &val, 0);
  return rc ? impl.Note(rc, "write blob entry") : Status::Ok();
}

Status DeleteBlobEntries(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h) {
  for (char state : {'b', 'w', 'p', 's'}) {
    std::string key = LmdbReader::BlobKey(state, h);
    MDB_val k = Val(key);
    int rc = mdb_del(txn, impl.blobs, &k, nullptr);
    if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "delete blob entry");
  }
  return Status::Ok();
}

// Chunks are stored once, under their hash: the caller passes bytes that hash to `h`, so
// a chunk already there with other bytes is damaged (below).
Status PutChunkEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h,
                     std::string_view bytes) {
  MDB_val k{h.size(), const_cast<uint8_t*>(h.data())}, v = Val(bytes);
  int rc = mdb_put(txn, impl.chunks, &k, &v, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {
    // Stored once; but bytes that differ from these (which hash to h) are damaged, and
    // storing the chunk again is how they are mended.
    if (v.mv_size == bytes.size() && std::memcmp(v.mv_data, bytes.data(), bytes.size()) == 0)
      return Status::Ok();
    v = Val(bytes);
    rc = mdb_put(txn, impl.chunks, &k, &v, 0);
  }
  return rc ? impl.Note(rc, "write chunk") : Status::Ok();
}

Status DeleteChunkEntry(LmdbStore::Impl& impl, MDB_txn* txn, const engine::BlobHash& h) {
  MDB_val k{h.size(), const_cast<uint8_t*>(h.data())};
  int rc = mdb_del(txn, impl.chunks, &k, nullptr);
  if (rc && rc != MDB_NOTFOUND) return impl.Note(rc, "delete chunk");
  return Status::Ok();
}

}  // namespace tandem::storage
