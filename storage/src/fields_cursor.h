// The two tables of field values, `fields` and `fresh` over it, read as one
// (format.md; storage/src/txn.cc writes them, FoldFresh in log.cc folds one into the
// other).
#pragma once

#include <lmdb.h>

#include <string_view>

#include "lmdb_val.h"

namespace tandem::storage {

// A field's stored value as readers see it: its entry in `fresh`, else in `fields`.
// Returns 0, MDB_NOTFOUND or an LMDB error, as mdb_get.
inline int FieldValue(MDB_txn* txn, MDB_dbi fresh, MDB_dbi fields, MDB_val key, MDB_val* value) {
  MDB_val k = key;
  const int rc = mdb_get(txn, fresh, &k, value);
  return rc == MDB_NOTFOUND ? mdb_get(txn, fields, &key, value) : rc;
}

// The fields in key order as readers see them: `fresh` over `fields`, a key in both
// read from `fresh`. Seek, First and Next return 0 (key() and value() are then the
// entry's), MDB_NOTFOUND past the end, or an LMDB error.
class FieldsCursor {
 public:
  FieldsCursor(MDB_txn* txn, MDB_dbi fresh, MDB_dbi fields) {
    rc_ = mdb_cursor_open(txn, fresh, &fresh_);
    if (!rc_) rc_ = mdb_cursor_open(txn, fields, &fields_);
  }
  ~FieldsCursor() {
    if (fresh_) mdb_cursor_close(fresh_);
    if (fields_) mdb_cursor_close(fields_);
  }
  FieldsCursor(const FieldsCursor&) = delete;
  FieldsCursor& operator=(const FieldsCursor&) = delete;

  // The first entry at or after `start`.
  int Seek(std::string_view start) {
    if (rc_) return rc_;
    fresh_key_ = fields_key_ = Val(start);
    return Settle(mdb_cursor_get(fresh_, &fresh_key_, &fresh_value_, MDB_SET_RANGE),
                  mdb_cursor_get(fields_, &fields_key_, &fields_value_, MDB_SET_RANGE));
  }
  int First() {
    if (rc_) return rc_;
    return Settle(mdb_cursor_get(fresh_, &fresh_key_, &fresh_value_, MDB_FIRST),
                  mdb_cursor_get(fields_, &fields_key_, &fields_value_, MDB_FIRST));
  }
  int Next() {
    if (rc_) return rc_;
    return Settle(
        on_fresh_ ? mdb_cursor_get(fresh_, &fresh_key_, &fresh_value_, MDB_NEXT) : fresh_rc_,
        on_fields_ ? mdb_cursor_get(fields_, &fields_key_, &fields_value_, MDB_NEXT) : fields_rc_);
  }
  const MDB_val& key() const { return on_fresh_ ? fresh_key_ : fields_key_; }
  const MDB_val& value() const { return on_fresh_ ? fresh_value_ : fields_value_; }

 private:
  // The lesser of the two cursors' entries is the current one (both move on from a key
  // they share).
  int Settle(int fresh_rc, int fields_rc) {
    fresh_rc_ = fresh_rc;
    fields_rc_ = fields_rc;
    on_fresh_ = on_fields_ = false;
    if (fresh_rc && fresh_rc != MDB_NOTFOUND) return fresh_rc;
    if (fields_rc && fields_rc != MDB_NOTFOUND) return fields_rc;
    if (fresh_rc && fields_rc) return MDB_NOTFOUND;
    if (fresh_rc) return on_fields_ = true, 0;
    if (fields_rc) return on_fresh_ = true, 0;
    const int c = View(fresh_key_).compare(View(fields_key_));
    on_fresh_ = c <= 0;
    on_fields_ = c >= 0;
    return 0;
  }
  MDB_cursor *fresh_ = nullptr, *fields_ = nullptr;
  int rc_ = 0, fresh_rc_ = MDB_NOTFOUND, fields_rc_ = MDB_NOTFOUND;
  MDB_val fresh_key_{}, fresh_value_{}, fields_key_{}, fields_value_{};
  bool on_fresh_ = false, on_fields_ = false;
};

}  // namespace tandem::storage
