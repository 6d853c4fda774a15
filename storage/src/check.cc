// The integrity check of a replica (lmdb_store.h).
#include <algorithm>
#include <optional>
#include <set>

#include "lmdb_internal.h"
#include "tandem/storage/replica.h"

namespace tandem::storage {

Status Check(LmdbStore& store, CheckReport* report) {
  CheckReport rep;
  auto* impl = store.impl();
  // One raw snapshot for everything (fields, log, tables, meta), so writers in other
  // processes cannot make a healthy replica look inconsistent.
  std::shared_lock lock(impl->resize_mu);
  MDB_txn* raw;
  int rc = mdb_txn_begin(impl->env, nullptr, MDB_RDONLY, &raw);
  if (rc) return LmdbError(rc, "begin check");
  LmdbReader reader(impl, raw);
  ReplicaMeta meta;
  Status first = impl->RefreshTables(raw);
  if (first.ok()) first = reader.GetMeta(&meta);
  if (!first.ok()) {
    mdb_txn_abort(raw);
    return first;
  }
  engine::LogHull hull;
  if (Status h = reader.GetLogHull(&hull); !h.ok()) {
    mdb_txn_abort(raw);
    return h;
  }
  engine::VersionVector collected;  // read so that a malformed one is reported
  if (Status c = reader.GetCollected(&collected); !c.ok()) {
    mdb_txn_abort(raw);
    return c;
  }
  engine::ReadTxn::CollectedIn collected_in;
  if (Status c = reader.GetCollectedIn(&collected_in); !c.ok()) {
    mdb_txn_abort(raw);
    return c;
  }
  const uint64_t own = meta.vv.Get(meta.id);
  std::map<uint64_t, std::string> want;  // seq -> key, from the fields
  Status st;
  std::string last_record;
  // The fields as readers see them: a value in `fields` under one in `fresh` is the
  // field's past, and goes at the next fold.
  std::optional<FieldsCursor> cur(std::in_place, raw, impl->fresh, impl->fields);
  std::string previous;
  std::optional<Status> damaged;  // the first damaged value's
  std::vector<std::string> damaged_names;
  constexpr size_t kNamedDamaged = 8;
  uint64_t damaged_count = 0;
  std::set<engine::BlobHash> out_of_line;  // the entries out-of-line states name
  for (rc = cur->First(); rc == 0 && st.ok(); rc = cur->Next()) {
    std::string key(View(cur->key()));
    const MDB_val& v = cur->value();
    FieldKey fk;
    if (!previous.empty() && key <= previous) {  // a damaged page: LMDB keeps no checksums
      st = Status::Corrupt("field keys out of order");
      break;
    }
    previous = key;
    if (!impl->DecodeKey(key, &fk)) {
      st = Status::Corrupt("malformed field key");
      break;
    }
    std::string where = fk.Name();
    if (Status kv = engine::ValidateKey(fk); !kv.ok()) {  // stored, so damaged, not misused
      st = Status::Corrupt(where + ": " + kv.message());
      break;
    }
    uint64_t seq;
    std::string_view bytes;
    // A damaged value is named, and the check goes on to name the others.
    Status value = SplitValue(key, View(v), &seq, &bytes);
    std::optional<engine::FieldState> decoded;
    if (value.ok()) {
      // One stored out of line is read a chunk at a time to its outline: every item is
      // decoded and checked, none kept.
      engine::FieldState d;
      value = LmdbReader::IsOutOfLine(bytes) ? reader.DecodeOutOfLine(bytes, &d, true)
                                             : reader.DecodeState(bytes, &d);
      if (value.ok()) decoded = std::move(d);
    }
    if (decoded && LmdbReader::IsOutOfLine(bytes)) {
      const std::optional<engine::BlobHash> entry = OutOfLineEntry(View(v));
      if (entry && !out_of_line.insert(*entry).second) {
        st = Status::Corrupt(where + " names the chunks of another field's state");
        break;
      }
      ++rep.fields_out_of_line;
    }
    if (!decoded) {
      if (!damaged) damaged = value.With(where);
      if (damaged_names.size() < kNamedDamaged) damaged_names.push_back(where);
      ++damaged_count;
      continue;
    }
    if (decoded->ctx.Get(meta.id) > own) {
      st = Status::Corrupt(where + " holds an event of ours past the version vector");
      break;
    }
    // A hull that does not cover a field would let a sync skip it (LogHull).
    if (seq > hull.base) {
      auto cp =
          std::lower_bound(hull.checkpoints.begin(), hull.checkpoints.end(), seq,
                           [](const engine::LogCheckpoint& c, uint64_t s) { return c.seq < s; });
      if (!hull.hull.Covers(decoded->ctx) ||
          (cp != hull.checkpoints.end() && !cp->hull.Covers(decoded->ctx))) {
        st = Status::Corrupt(where + " lies outside the change log's hull");
        break;
      }
    }
    if (!want.emplace(seq, key).second) {
      st = Status::Corrupt(where + " shares change-log seq " + std::to_string(seq));
      break;
    }
    ++rep.fields;
    std::string rk = fk.collection + '\0' + fk.record;
    if (rk != last_record) ++rep.records, last_record = rk;
  }
  cur.reset();  // before the transaction ends
  if (st.ok() && rc != MDB_NOTFOUND) st = LmdbError(rc, "check fields");
  if (st.ok() && damaged_count > 1) {
    std::string names;
    for (const auto& n : damaged_names) names += (names.empty() ? "" : ", ") + n;
    st = Status::Corrupt(std::to_string(damaged_count) + " field values are damaged (" + names +
                         (damaged_count > damaged_names.size() ? ", ..." : "") +
                         "); the first: " + damaged->message());
  } else if (st.ok() && damaged) {
    st = *damaged;
  }
  if (st.ok()) {
    std::map<uint64_t, std::string> have;
    st = reader.ScanLog(0, [&](uint64_t seq, const FieldKey& key) {
      have.emplace(seq, impl->Key(key.collection, key.record, key.field, false).value_or(""));
      return true;
    });
    rep.log_entries = have.size();
    // The count of entries, live or stale, that compaction goes by.
    uint64_t total = 0, counted = 0;
    if (st.ok()) st = reader.CountLog(0, UINT64_MAX, &total);
    if (st.ok()) st = reader.LogEntries(&counted);
    if (st.ok() && total != counted)
      st = Status::Corrupt("the change log holds " + std::to_string(total) +
                           " entries but counts " + std::to_string(counted));
    // No entry lies where the log says it skipped (a gap where a process started).
    LogGaps gaps;
    if (st.ok()) st = reader.GetLogGaps(&gaps);
    for (const auto& [from, to] : gaps) {
      auto it = have.upper_bound(from);
      if (st.ok() && it != have.end() && it->first < to)
        st = Status::Corrupt("change-log entry " + std::to_string(it->first) +
                             " lies in a gap the log skipped (" + std::to_string(from) + ", " +
                             std::to_string(to) + ")");
    }
    if (st.ok() && have != want) {
      st = Status::Corrupt("change log (" + std::to_string(have.size()) + " entries) and fields (" +
                           std::to_string(want.size()) + ") disagree");
    }
  }
  // Quarantined states held in pieces name their chunks' entries as out-of-line states
  // do: each entry one, of state 4 and their size.
  if (st.ok()) {
    Status bad;
    st = reader.ListQuarantine([&](uint64_t id, std::string_view bytes) {
      auto e = engine::DecodeQuarantineEntry(bytes);
      const std::string where = "quarantined change " + std::to_string(id);
      if (!e.ok()) {
        bad = e.status().With(where);
        return false;
      }
      if (!e->pieces) return true;
      std::optional<engine::BlobInfo> info;
      bad = reader.GetBlob(e->pieces->entry, &info);
      if (bad.ok() && (!info || info->state != engine::BlobInfo::State::kState ||
                       info->size != e->pieces->size))
        bad = Status::Corrupt(where + ": the chunks of its state are not listed");
      if (bad.ok() && !out_of_line.insert(e->pieces->entry).second)
        bad = Status::Corrupt(where + " names the chunks of another state");
      return bad.ok();
    });
    if (st.ok()) st = bad;
  }
  // Blobs: each entry decodes; a stored blob's chunk list matches its address; the chunks
  // it holds (all, once complete) are there and match their hashes.
  if (st.ok()) {
    Status bad;
    std::string chunk;
    st = reader.ScanBlobs(false, [&](const engine::BlobHash& h, const engine::BlobInfo& info) {
      const std::string where = "blob " + engine::HexOf(h).substr(0, 16);
      // The chunks of a field state out of line go with that field's value.
      if (info.state == engine::BlobInfo::State::kState && !out_of_line.count(h)) {
        bad = Status::Corrupt(where + ": holds the chunks of a field state nothing names");
        return false;
      }
      if (info.state != engine::BlobInfo::State::kPending &&
          info.state != engine::BlobInfo::State::kState && info.listed &&
          engine::BlobId(Blake2b256Parts, info.size, info.chunks) != h) {
        bad = Status::Corrupt(where + ": its chunk list does not match its address");
        return false;
      }
      const uint64_t held = info.complete() ? info.chunks.size() : info.have;
      for (uint64_t i = 0; i < held && i < info.chunks.size(); ++i) {
        bool found = false;
        bad = reader.GetChunk(info.chunks[i], &chunk, &found);
        if (bad.ok() && !found)
          bad = Status::Corrupt(where + ": chunk " + std::to_string(i) + " is missing");
        if (bad.ok() && Blake2b256(chunk) != info.chunks[i])
          bad =
              Status::Corrupt(where + ": chunk " + std::to_string(i) + " does not match its hash");
        if (!bad.ok()) return false;
      }
      if (info.complete()) {
        ++rep.blobs;
        rep.blob_bytes += info.size;
      }
      return true;
    });
    if (st.ok()) st = bad;
  }
  // Records of refused fields: those damaged are counted, not failed (sync passes them
  // over, and a backup holding one must still restore).
  if (st.ok())
    st = reader.ListRefused(
        [](const engine::FieldKey&, const engine::VersionVector&) { return true; },
        &rep.refused_damaged);
  mdb_txn_abort(raw);
  TANDEM_RETURN_IF_ERROR(st);
  if (report) *report = rep;
  return Status::Ok();
}

}  // namespace tandem::storage
