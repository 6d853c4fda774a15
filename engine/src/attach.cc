// A replica's blobs: writing, reading, wanting and collecting them
// (docs/design.md#attachments). Sync moves them (sync.cc).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <set>

#include "tandem/engine/codec.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {

// A pending write is abandoned (and collected) when untouched this long.
constexpr uint64_t kPendingGraceMs = 24 * 3600 * 1000;

std::string Describe(const BlobHash& h) { return "blob " + HexOf(h).substr(0, 16); }

}  // namespace

Status NoteBlobRef(WriteTxn& txn, const FieldKey& key, const BlobRef& ref, uint64_t now_ms) {
  std::optional<BlobInfo> have;
  TANDEM_RETURN_IF_ERROR(txn.GetBlob(ref.hash, &have));
  // The empty blob is held as soon as it is named: there is nothing to fetch, and no peer
  // need ever have stored it.
  if (ref.hash == kEmptyBlob && (!have || have->state == BlobInfo::State::kWanted)) {
    BlobInfo empty;
    empty.state = BlobInfo::State::kComplete;
    empty.listed = true;
    empty.touched_ms = now_ms;
    return txn.PutBlob(ref.hash, empty);
  }
  if (!have) {
    BlobInfo want;
    want.state = BlobInfo::State::kWanted;
    want.size = ref.size;
    want.refs = {key};
    want.touched_ms = now_ms;
    return txn.PutBlob(ref.hash, want);
  }
  // A wanted blob is asked for through the field that referenced it last (an earlier
  // one may have moved on since).
  const bool rekey = have->state == BlobInfo::State::kWanted &&
                     (have->refs.empty() || !(have->refs.front() == key));
  if (have->released || rekey) {
    have->released.reset();
    if (rekey) {
      auto& refs = have->refs;
      refs.erase(std::remove(refs.begin(), refs.end(), key), refs.end());
      refs.insert(refs.begin(), key);
      if (refs.size() > BlobInfo::kMaxWantRefs) refs.resize(BlobInfo::kMaxWantRefs);
    }
    have->touched_ms = now_ms;
    return txn.PutBlob(ref.hash, *have);
  }
  return Status::Ok();
}

Status NoteOwnBlobRef(WriteTxn& txn, const FieldKey& key, const BlobRef& ref, uint64_t now_ms) {
  std::optional<BlobInfo> have;
  TANDEM_RETURN_IF_ERROR(txn.GetBlob(ref.hash, &have));
  std::optional<uint64_t> size;  // known once the blob is here (the empty one always is)
  if (have && have->state == BlobInfo::State::kComplete) size = have->size;
  if (ref.hash == kEmptyBlob) size = 0;
  if (size && *size != ref.size)
    return Status::Invalid("blob " + HexOf(ref.hash) + " holds " + std::to_string(*size) +
                           " bytes, not the " + std::to_string(ref.size) + " its reference says");
  return NoteBlobRef(txn, key, ref, now_ms);
}

Result<BlobRef> Replica::StoreBlob(
    const BlobSource& src, std::string type,
    const std::function<Status(WriteTxn&, ReplicaMeta&, const BlobRef&)>& finish) {
  BlobRef ref;
  ref.type = std::move(type);
  TANDEM_RETURN_IF_ERROR(ValidateValue(Value{ref}));
  // A temporary key for the pending entry: unique to this write.
  static std::atomic<uint64_t> counter{0};
  BlobHash pending_key;
  {
    TANDEM_ASSIGN_OR_RETURN(ReplicaMeta meta, Meta());
    std::string seed = meta.id.Hex() + "/" + std::to_string(now_()) + "/" +
                       std::to_string(counter.fetch_add(1)) + "/pending";
    pending_key = Hash(seed);
  }
  BlobInfo pending;
  pending.state = BlobInfo::State::kPending;
  pending.listed = true;
  std::string buf(kBlobChunkBytes, '\0');
  std::vector<std::string> batch;  // chunks read, not yet stored
  bool end = false;
  auto store_batch = [&](bool last) -> Status {
    return Retrying([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      for (const auto& c : batch) TANDEM_RETURN_IF_ERROR(txn->PutChunk(Hash(c), c));
      pending.touched_ms = now_();
      if (!last) {
        TANDEM_RETURN_IF_ERROR(txn->PutBlob(pending_key, pending));
        return txn->Commit();
      }
      ref.hash = BlobAddress(pending.size, pending.chunks);
      ref.size = pending.size;
      TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(pending_key));
      std::optional<BlobInfo> have;
      TANDEM_RETURN_IF_ERROR(txn->GetBlob(ref.hash, &have));
      BlobInfo done = pending;
      done.state = BlobInfo::State::kComplete;
      done.have = done.chunks.size();
      if (have && have->complete()) {
        done = *have;  // already here: keep it, but no longer released
        done.released.reset();
      }
      done.touched_ms = pending.touched_ms;
      TANDEM_RETURN_IF_ERROR(txn->PutBlob(ref.hash, done));
      ReplicaMeta meta;
      TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
      const ReplicaMeta before = meta;
      if (finish) TANDEM_RETURN_IF_ERROR(finish(*txn, meta, ref));
      if (!(meta == before)) TANDEM_RETURN_IF_ERROR(txn->PutMeta(meta));
      return txn->Commit();
    });
  };
  while (!end) {
    size_t filled = 0;
    while (filled < buf.size()) {
      TANDEM_ASSIGN_OR_RETURN(size_t n, src(buf.data() + filled, buf.size() - filled));
      if (n == 0) {
        end = true;
        break;
      }
      if (n > buf.size() - filled) return Status::Invalid("blob source overran its buffer");
      filled += n;
    }
    if (filled == 0) break;
    if (pending.size + filled > kMaxBlobBytes)
      return Status::Invalid("blob is over the " + std::to_string(kMaxBlobBytes >> 30) +
                             " GiB limit");
    batch.emplace_back(buf.data(), filled);
    pending.chunks.push_back(Hash(batch.back()));
    pending.size += filled;
    pending.have = pending.chunks.size();
    if (batch.size() == kBlobTxnChunks && !end) {
      TANDEM_RETURN_IF_ERROR(store_batch(false).With("store blob"));
      batch.clear();
    }
  }
  TANDEM_RETURN_IF_ERROR(store_batch(true).With("store blob"));
  Committed();
  return ref;
}

Result<BlobRef> Replica::WriteBlob(const BlobSource& src, std::string type) {
  return StoreBlob(src, std::move(type), nullptr);
}

Result<BlobRef> Replica::Attach(std::string_view c, std::string_view id, std::string_view f,
                                const BlobSource& src, std::string type) {
  TANDEM_RETURN_IF_ERROR(ValidateKey(FieldKey{std::string(c), std::string(id), std::string(f)}));
  return StoreBlob(src, std::move(type),
                   [&](WriteTxn& txn, ReplicaMeta& meta, const BlobRef& ref) -> Status {
                     std::shared_ptr<WritePolicy> policy = Policy();
                     Batch batch(txn, meta, now_, policy.get());
                     TANDEM_RETURN_IF_ERROR(batch.Put(c, id, f, Value{ref}));
                     return batch.Finish();
                   });
}

Result<std::optional<BlobInfo>> Replica::Blob(const BlobHash& hash) {
  TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
  std::optional<BlobInfo> info;
  TANDEM_RETURN_IF_ERROR(txn->GetBlob(hash, &info));
  if (info && info->state == BlobInfo::State::kPending) info.reset();
  return info;
}

Status Replica::ReadBlob(const BlobHash& hash, const BlobSink& sink, uint64_t offset) {
  std::optional<BlobInfo> info;
  uint64_t index = offset / kBlobChunkBytes;
  size_t skip = static_cast<size_t>(offset % kBlobChunkBytes);
  bool first = true;
  std::vector<std::string> chunks;
  Status damage;
  do {
    // A few chunks from a fresh snapshot, checked, then handed to the sink with no
    // transaction open: a slow sink pins no pages, and one that writes to this replica
    // (or waits for a thread that does) never waits on its own snapshot.
    chunks.clear();
    {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
      TANDEM_RETURN_IF_ERROR(txn->GetBlob(hash, &info));
      if (!info || info->state == BlobInfo::State::kPending)
        return Status::NotFound(Describe(hash) + " is not in this replica" +
                                (first ? "" : " any more (collected while read)"));
      if (!info->complete())
        return Status::NotFound(Describe(hash) + " is not here yet: " + std::to_string(info->have) +
                                " of " + std::to_string(ChunkCount(info->size)) +
                                " chunks (sync with a device that has it)");
      if (first && offset > info->size)
        return Status::Invalid("offset " + std::to_string(offset) + " is past the end of " +
                               Describe(hash) + " (" + std::to_string(info->size) + " bytes)");
      first = false;
      for (size_t n = 0; n < kReadChunksAtOnce && index < info->chunks.size(); ++n, ++index) {
        bool found = false;
        std::string chunk;
        TANDEM_RETURN_IF_ERROR(txn->GetChunk(info->chunks[index], &chunk, &found));
        if (!found)
          damage =
              Status::Corrupt(Describe(hash) + ": chunk " + std::to_string(index) + " is missing");
        else if (Hash(chunk) != info->chunks[index])
          damage = Status::Corrupt(Describe(hash) + ": chunk " + std::to_string(index) +
                                   " does not match its hash");
        if (!damage.ok()) break;  // the sink gets what was checked before it
        chunks.push_back(std::move(chunk));
      }
    }
    for (const std::string& chunk : chunks) {
      TANDEM_RETURN_IF_ERROR(sink(std::string_view(chunk).substr(std::min(skip, chunk.size()))));
      skip = 0;
    }
    TANDEM_RETURN_IF_ERROR(damage);
  } while (index < info->chunks.size());
  return Status::Ok();
}

Status Replica::PutChunks(const BlobHash& hash, const BlobInfo& listed, uint64_t first,
                          const std::vector<std::string>& chunks) {
  const uint64_t end = first + chunks.size();
  if (!listed.listed || end > listed.chunks.size())
    return Status::Invalid("chunks past the end of " + Describe(hash));
  for (size_t i = 0; i < chunks.size(); ++i)
    if (Hash(chunks[i]) != listed.chunks[first + i])
      return Status::Invalid(Describe(hash) + ": chunk " + std::to_string(first + i) +
                             " does not match its hash");
  TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    for (size_t i = 0; i < chunks.size(); ++i)
      TANDEM_RETURN_IF_ERROR(txn->PutChunk(listed.chunks[first + i], chunks[i]));
    std::optional<BlobInfo> have;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(hash, &have));
    // Gone meanwhile (collected: no field references it now): kept as wanted, and the
    // next collection decides again.
    BlobInfo info = have && have->state != BlobInfo::State::kPending ? *have : listed;
    if (!info.complete()) {
      // Held chunks count only as a prefix: `first` must not leave a gap.
      const uint64_t held = info.listed ? info.have : 0;
      info.listed = true;
      info.size = listed.size;
      info.chunks = listed.chunks;
      info.have = first <= held ? std::max(held, end) : held;
      if (info.have == info.chunks.size()) {
        info.state = BlobInfo::State::kComplete;
        info.requested = false;
      }
    }
    info.touched_ms = now_();
    TANDEM_RETURN_IF_ERROR(txn->PutBlob(hash, info));
    return txn->Commit();
  }));
  Committed();
  return Status::Ok();
}

Status Replica::RequestBlob(const BlobHash& hash, bool* complete) {
  bool done = false;
  Status st = Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::optional<BlobInfo> info;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(hash, &info));
    if (!info || info->state == BlobInfo::State::kPending)
      return Status::NotFound(Describe(hash) + " is not referenced by any field here");
    done = info->complete();
    if (!done && hash == kEmptyBlob) {
      // Wanted by a build that fetched even the empty blob: held, as it has no bytes.
      *info = BlobInfo{};
      info->state = BlobInfo::State::kComplete;
      info->listed = true;
      info->touched_ms = now_();
      TANDEM_RETURN_IF_ERROR(txn->PutBlob(hash, *info));
      TANDEM_RETURN_IF_ERROR(txn->Commit());
      done = true;
      return Status::Ok();
    }
    if (done || info->requested) return Status::Ok();
    info->requested = true;
    info->touched_ms = now_();
    TANDEM_RETURN_IF_ERROR(txn->PutBlob(hash, *info));
    return txn->Commit();
  });
  if (complete) *complete = done;
  if (st.ok() && !done) Committed();
  return st;
}

Status Replica::WantDamagedBlob(const BlobHash& hash, uint64_t index, const FieldKey& ref) {
  bool wrote = false;
  Status st = Retrying([&]() -> Status {
    wrote = false;
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    std::optional<BlobInfo> info;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(hash, &info));
    if (!info || !info->complete()) return Status::Ok();
    info->state = BlobInfo::State::kWanted;
    info->have = std::min<uint64_t>(index, info->chunks.size());
    info->refs = {ref};
    info->requested = true;  // it was here: fetched again whatever the collection's mode
    info->touched_ms = now_();
    TANDEM_RETURN_IF_ERROR(txn->PutBlob(hash, *info));
    wrote = true;
    return txn->Commit();
  });
  if (st.ok() && wrote) Committed();
  return st;
}

Status Replica::CollectBlobs(const VersionVector& absorbed,
                             const std::map<BlobHash, FieldKey>& referenced, uint64_t started_ms,
                             CollectStats* stats) {
  // Entries: release the unreferenced, remove the released every member has caught up
  // with (the mark must be in the snapshot that saw no reference and still be there in
  // the transaction that removes: a new reference clears it, NoteBlobRef), the unwanted
  // and the abandoned.
  TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
    CollectStats step;
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    ReplicaMeta meta;
    TANDEM_RETURN_IF_ERROR(txn->GetMeta(&meta));
    const VersionVector frontier = VersionVector::Meet(absorbed, meta.vv);
    const uint64_t now = now_();
    std::vector<std::pair<BlobHash, std::optional<BlobInfo>>> changes;  // nullopt: remove
    Status bad;
    TANDEM_RETURN_IF_ERROR(txn->ScanBlobs(false, [&](const BlobHash& h, const BlobInfo& info) {
      if (info.state == BlobInfo::State::kState) return true;  // goes with its field's value
      if (info.state == BlobInfo::State::kPending) {
        if (now > info.touched_ms + kPendingGraceMs) changes.emplace_back(h, std::nullopt);
        return true;
      }
      const bool used = referenced.count(h) > 0;
      if (info.state == BlobInfo::State::kWanted) {
        // Wanted since the sweep began: its reference may lie where the sweep had been.
        if (!used && info.touched_ms < started_ms) changes.emplace_back(h, std::nullopt);
        // Asked for through fields that reference it no more: add one that does.
        if (used) {
          bool still = false;
          for (const auto& k : info.refs) {
            std::optional<FieldState> s;
            bad = txn->GetField(k, &s);
            if (s) ForEachBlobRef(*s, [&](const BlobRef& r) { still |= r.hash == h; });
            if (!bad.ok() || still) break;
          }
          if (bad.ok() && !still) {
            BlobInfo moved = info;
            moved.refs.insert(moved.refs.begin(), referenced.at(h));
            if (moved.refs.size() > BlobInfo::kMaxWantRefs)
              moved.refs.resize(BlobInfo::kMaxWantRefs);
            changes.emplace_back(h, std::move(moved));
          }
        }
        return bad.ok();
      }
      if (used) {
        if (info.released) {
          BlobInfo kept = info;
          kept.released.reset();
          changes.emplace_back(h, std::move(kept));
        }
      } else if (!info.released) {
        BlobInfo released = info;
        released.released = meta.vv;
        changes.emplace_back(h, std::move(released));
        ++step.blobs_released;
      } else if (frontier.Covers(*info.released)) {
        changes.emplace_back(h, std::nullopt);
        ++step.blobs_collected;
        step.blob_bytes += info.size;
      } else {
        ++step.blobs_released;
      }
      return true;
    }));
    TANDEM_RETURN_IF_ERROR(bad);
    for (const auto& [h, info] : changes) {
      if (info)
        TANDEM_RETURN_IF_ERROR(txn->PutBlob(h, *info));
      else
        TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(h));
    }
    if (changes.empty()) return Status::Ok();
    TANDEM_RETURN_IF_ERROR(txn->Commit());
    stats->blobs_collected += step.blobs_collected;
    stats->blob_bytes += step.blob_bytes;
    stats->blobs_released += step.blobs_released;
    return Status::Ok();
  }));
  // Chunks no entry lists, in transactions of at most 64 (32 MiB) each. The entries are
  // read in the same transaction as the chunks go: a write that lists a chunk again
  // either committed before (and keeps it) or waits.
  for (;;) {
    uint64_t freed = 0;
    bool more = false;
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
      freed = 0;
      more = false;
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      std::set<BlobHash> listed;
      TANDEM_RETURN_IF_ERROR(txn->ScanBlobs(false, [&](const BlobHash&, const BlobInfo& info) {
        listed.insert(info.chunks.begin(), info.chunks.end());
        return true;
      }));
      std::vector<BlobHash> gone;
      TANDEM_RETURN_IF_ERROR(txn->ScanChunks(nullptr, [&](const BlobHash& h) {
        if (!listed.count(h)) gone.push_back(h);
        more = gone.size() > 64;
        return !more;
      }));
      if (more) gone.pop_back();
      for (const auto& h : gone) TANDEM_RETURN_IF_ERROR(txn->DeleteChunk(h));
      if (gone.empty()) return Status::Ok();
      freed = gone.size();
      return txn->Commit();
    }));
    stats->chunks_freed += freed;
    if (!more) break;
  }
  return Status::Ok();
}

}  // namespace tandem::engine
