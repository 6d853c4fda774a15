// A replica's LMDB databases read and written directly, as a foreign program, an older
// or a newer Tandem would.
#pragma once

#include <gtest/gtest.h>
#include <lmdb.h>

#include <string>

namespace tandem::testing {

// A write transaction on the environment in `dir`, committed by Commit (aborted if not).
struct RawWriter {
  explicit RawWriter(const std::string& dir) {
    EXPECT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 8);
    EXPECT_EQ(mdb_env_open(env, dir.c_str(), 0, 0644), 0);
    EXPECT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  }
  ~RawWriter() {
    if (txn) mdb_txn_abort(txn);
    mdb_env_close(env);
  }
  // Database `db` (made if missing).
  MDB_dbi Open(const char* db, unsigned flags = 0) {
    MDB_dbi dbi = 0;
    EXPECT_EQ(mdb_dbi_open(txn, db, MDB_CREATE | flags, &dbi), 0);
    return dbi;
  }
  void Commit() {
    EXPECT_EQ(mdb_txn_commit(txn), 0);
    txn = nullptr;
  }
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
};

// Sets `key` to *value in database `db` of the environment in `dir` (the database is
// made if missing); a null value deletes the key.
inline void RawPut(const std::string& dir, const char* db, const std::string& key,
                   const std::string* value) {
  RawWriter w(dir);
  const MDB_dbi dbi = w.Open(db);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  if (value) {
    MDB_val v{value->size(), const_cast<char*>(value->data())};
    ASSERT_EQ(mdb_put(w.txn, dbi, &k, &v, 0), 0);
  } else {
    ASSERT_EQ(mdb_del(w.txn, dbi, &k, nullptr), 0);
  }
  w.Commit();
}
inline void RawPut(const std::string& dir, const char* db, const std::string& key,
                   const std::string& value) {
  RawPut(dir, db, key, &value);
}

// A read-only transaction on database `db` of the environment in `dir`.
struct RawReader {
  RawReader(const std::string& dir, const char* db, unsigned flags = 0) {
    EXPECT_EQ(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 8);
    EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644), 0);
    EXPECT_EQ(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), 0);
    EXPECT_EQ(mdb_dbi_open(txn, db, flags, &dbi), 0);
  }
  ~RawReader() {
    mdb_txn_abort(txn);
    mdb_env_close(env);
  }
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  MDB_dbi dbi = 0;
};

// The value of `key` in database `db`; empty if there is none.
inline std::string RawGet(const std::string& dir, const char* db, const std::string& key) {
  RawReader r(dir, db);
  MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
  std::string out;
  if (mdb_get(r.txn, r.dbi, &k, &v) == 0) out.assign(static_cast<char*>(v.mv_data), v.mv_size);
  return out;
}

// The database that holds the value of the field stored under `key`: `fresh` if it has
// the key (a write inside the table goes there until it is folded), else `fields`.
inline const char* RawFieldTable(const std::string& dir, const std::string& key) {
  MDB_env* env = nullptr;
  EXPECT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 8);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0644), 0);
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn), 0);
  MDB_dbi dbi = 0;
  MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
  const bool fresh = mdb_dbi_open(txn, "fresh", 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &v) == 0;
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return fresh ? "fresh" : "fields";
}

// How many entries database `db` holds (`flags` as it was made with: MDB_INTEGERKEY).
inline size_t RawCount(const std::string& dir, const char* db, unsigned flags = 0) {
  RawReader r(dir, db, flags);
  MDB_stat st{};
  EXPECT_EQ(mdb_stat(r.txn, r.dbi, &st), 0);
  return st.ms_entries;
}

// Changes one byte inside `needle` in the first field value (of `fields` or `fresh`)
// that holds it, as damage on disk would; whether one did.
inline bool RawDamageValue(const std::string& dir, const std::string& needle) {
  RawWriter w(dir);
  for (const char* db : {"fresh", "fields"}) {
    MDB_dbi dbi = 0;
    if (mdb_dbi_open(w.txn, db, 0, &dbi) != 0) continue;
    MDB_cursor* cur = nullptr;
    EXPECT_EQ(mdb_cursor_open(w.txn, dbi, &cur), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      std::string value(static_cast<char*>(v.mv_data), v.mv_size);
      const size_t at = value.find(needle);
      if (at == std::string::npos) continue;
      value[at] = static_cast<char>(value[at] ^ 1);
      std::string key(static_cast<char*>(k.mv_data), k.mv_size);
      mdb_cursor_close(cur);
      MDB_val kk{key.size(), key.data()}, vv{value.size(), value.data()};
      EXPECT_EQ(mdb_put(w.txn, dbi, &kk, &vv, 0), 0);
      w.Commit();
      return true;
    }
    mdb_cursor_close(cur);
  }
  return false;
}

}  // namespace tandem::testing
