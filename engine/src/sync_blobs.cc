// Blob transfer within a sync session (see sync.h and docs/protocol.md#blobs).
#include <algorithm>

#include "tandem/engine/sync.h"

namespace tandem::engine {

namespace {

std::string Short(const BlobHash& h) { return "blob " + HexOf(h).substr(0, 16); }

uint64_t ChunkLength(uint64_t size, uint64_t index) {
  return std::min<uint64_t>(kBlobChunkBytes, size - index * kBlobChunkBytes);
}

}  // namespace

Status Session::PumpWants(std::vector<Message>* out) {
  if (!peer_blobs_ || in_blob_) return Status::Ok();
  std::optional<InBlob> next;
  FieldKey ref;
  {
    TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
    Status bad;
    TANDEM_RETURN_IF_ERROR(txn->ScanBlobs(true, [&](const BlobHash& h, const BlobInfo& info) {
      if (lacking_.count(h) || awaited_.count(h)) return true;
      // Asked for through a field that still references it here (the peer checks that
      // its own state of that field does too, and that we may read it), in a collection
      // the peer sends us; newest first.
      for (const auto& k : info.refs) {
        const std::string& c = k.collection;
        if (!peer_send_.Allows(c) || !opt_.accept.Allows(c)) continue;
        if (!info.requested && opt_.lazy_blobs && opt_.lazy_blobs(c)) continue;
        std::optional<FieldState> state;
        bad = txn->GetFieldOrDamaged(k, &state, nullptr);  // damaged: references nothing
        if (!bad.ok()) return false;
        bool still = false;
        if (state) ForEachBlobRef(*state, [&](const BlobRef& r) { still |= r.hash == h; });
        if (!still) continue;
        next = InBlob{};  // not emplace(): clang judges a nested struct with member
                          // initializers not default-constructible for std::optional
        next->hash = h;
        next->info = info;
        next->next = info.have;
        ref = k;
        return false;
      }
      return true;
    }));
    TANDEM_RETURN_IF_ERROR(bad);
  }
  if (!next) {
    if (received_caught_up_ && !idle_sent_) {
      BlobWant idle;
      idle.idle = true;
      out->emplace_back(std::in_place_type<BlobWant>, std::move(idle));
      idle_sent_ = true;
    }
    return Status::Ok();
  }
  BlobWant want;
  want.hash = next->hash;
  want.ref = ref;
  want.from = next->info.have;
  want.list = !next->info.listed;
  in_blob_ = std::move(next);
  idle_sent_ = false;
  out->emplace_back(std::in_place_type<BlobWant>, std::move(want));
  return Status::Ok();
}

Status Session::PumpOwed(std::vector<Message>* out) {
  if (owed_.empty()) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
  for (auto it = owed_.begin(); it != owed_.end();) {
    std::optional<BlobInfo> info;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(*it, &info));
    // Still on its way here: the promise stands.
    if (info && info->state == BlobInfo::State::kWanted) {
      ++it;
      continue;
    }
    // Here (or no longer referenced, so never coming): the peer asks again and hears.
    BlobHead ready;
    ready.hash = *it;
    ready.ready = true;
    out->emplace_back(std::in_place_type<BlobHead>, std::move(ready));
    it = owed_.erase(it);
  }
  return Status::Ok();
}

Status Session::PumpBlob(std::vector<Message>* out) {
  if (!out_blob_) return Status::Ok();
  OutBlob& b = *out_blob_;
  if (b.next >= b.chunks.size() || b.next - b.acked >= kBlobWindow) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
  while (b.next < b.chunks.size() && b.next - b.acked < kBlobWindow) {
    BlobChunk c;
    c.hash = b.hash;
    c.index = b.next;
    bool found = false;
    TANDEM_RETURN_IF_ERROR(txn->GetChunk(b.chunks[b.next], &c.bytes, &found));
    if (!found) return Status::NotFound(Short(b.hash) + " was collected while being sent");
    // Damaged here: nothing we cannot vouch for is sent, and the blob is wanted again (the
    // peer, told it is missing here from now on, fetches it and the others elsewhere).
    if (replica_.Hash(c.bytes) != b.chunks[b.next]) {
      txn.reset();
      TANDEM_RETURN_IF_ERROR(replica_.WantDamagedBlob(b.hash, b.next, b.ref));
      return Status::Corrupt(Short(b.hash) + ": chunk " + std::to_string(b.next) +
                             " is damaged here; the blob is wanted again from the other devices");
    }
    ++b.next;
    stats_.blob_bytes_sent += c.bytes.size();
    out->emplace_back(std::in_place_type<BlobChunk>, std::move(c));
  }
  return Status::Ok();
}

Status Session::StoreHeld() {
  if (!in_blob_ || in_blob_->held.empty()) return Status::Ok();
  InBlob& b = *in_blob_;
  TANDEM_RETURN_IF_ERROR(replica_.PutChunks(b.hash, b.info, b.next - b.held.size(), b.held));
  b.held.clear();
  return Status::Ok();
}

// Stores the chunks held, with our entry brought up to date, in one transaction; then
// acknowledges them.
Status Session::StoreChunks(std::vector<Message>* out) {
  InBlob& b = *in_blob_;
  const bool complete = b.next == b.info.chunks.size();
  TANDEM_RETURN_IF_ERROR(replica_.PutChunks(b.hash, b.info, b.next - b.held.size(), b.held));
  if (!b.held.empty()) out->emplace_back(std::in_place_type<BlobAck>, BlobAck{b.hash, b.next - 1});
  b.held.clear();
  if (complete) {
    ++stats_.blobs_received;
    in_blob_.reset();
    return PumpWants(out);
  }
  return Status::Ok();
}

Status Session::ReceiveBlob(const Message& in, std::vector<Message>* out) {
  if (!peer_blobs_) return Status::Invalid("blob transfer with a peer that said it takes none");
  // Requesting side: the answer to our want.
  if (const auto* h = std::get_if<BlobHead>(&in)) {
    if (h->ready) {
      if (!awaited_.erase(h->hash))
        return Status::Invalid("BlobHead ready for a blob not promised");
      return PumpWants(out);
    }
    if (!in_blob_ || in_blob_->head || h->hash != in_blob_->hash)
      return Status::Invalid("BlobHead for a blob not asked for");
    InBlob& b = *in_blob_;
    if (h->missing) {
      if (h->later && peer_blob_later_) {
        awaited_.insert(b.hash);  // asked for again once the peer says it is ready
      } else {
        lacking_.insert(b.hash);
        ++stats_.blobs_missing;
      }
      in_blob_.reset();
      return PumpWants(out);
    }
    if (h->size > kMaxBlobBytes) return Status::Invalid(Short(b.hash) + ": size over the limit");
    if (b.info.listed) {
      if (h->size != b.info.size || !h->chunks.empty())
        return Status::Invalid(Short(b.hash) + ": head does not match the chunk list held");
    } else {
      // Nothing unverified is kept: the list must hash to the address asked for.
      if (h->chunks.size() != ChunkCount(h->size) ||
          replica_.BlobAddress(h->size, h->chunks) != b.hash)
        return Status::Invalid(Short(b.hash) +
                               ": the peer's chunk list does not match its address");
      b.info.size = h->size;
      b.info.chunks = h->chunks;
      b.info.listed = true;
    }
    b.head = true;
    if (b.next > b.info.chunks.size())
      return Status::Invalid(Short(b.hash) + ": more chunks held than it has");
    // Nothing left to fetch (an empty blob, or all chunks held but not marked so).
    if (b.next == b.info.chunks.size()) return StoreChunks(out);
    return Status::Ok();
  }
  if (const auto* c = std::get_if<BlobChunk>(&in)) {
    if (!in_blob_ || !in_blob_->head || c->hash != in_blob_->hash)
      return Status::Invalid("BlobChunk for a blob not being fetched");
    InBlob& b = *in_blob_;
    if (c->index != b.next || b.next >= b.info.chunks.size())
      return Status::Invalid(Short(b.hash) + ": chunk " + std::to_string(c->index) +
                             " out of order (expected " + std::to_string(b.next) + ")");
    if (c->bytes.size() != ChunkLength(b.info.size, c->index) ||
        replica_.Hash(c->bytes) != b.info.chunks[c->index])
      return Status::Invalid(Short(b.hash) + ": chunk " + std::to_string(c->index) +
                             " does not match its hash");
    stats_.blob_bytes_received += c->bytes.size();
    b.held.push_back(c->bytes);
    ++b.next;
    if (b.held.size() >= kBlobCommitChunks || b.next == b.info.chunks.size())
      return StoreChunks(out);
    return Status::Ok();
  }
  // Sending side.
  if (const auto* w = std::get_if<BlobWant>(&in)) {
    if (out_blob_) return Status::Invalid("BlobWant while a blob is still being sent");
    if (w->idle) {
      peer_idle_ = true;
      return Status::Ok();
    }
    peer_idle_ = false;
    TANDEM_RETURN_IF_ERROR(ValidateKey(w->ref).With("BlobWant"));
    BlobHead head;
    head.hash = w->hash;
    head.missing = true;
    std::optional<BlobInfo> info;
    if (Sendable(w->ref)) {
      // Only a blob a field the peer may read references, here as there.
      TANDEM_ASSIGN_OR_RETURN(auto txn, replica_.store().BeginRead());
      std::optional<FieldState> state;
      // Damaged here, the field references nothing we can vouch for: the blob is missing.
      TANDEM_RETURN_IF_ERROR(txn->GetFieldOrDamaged(w->ref, &state, nullptr));
      bool referenced = false;
      if (state) ForEachBlobRef(*state, [&](const BlobRef& r) { referenced |= r.hash == w->hash; });
      if (referenced) TANDEM_RETURN_IF_ERROR(txn->GetBlob(w->hash, &info));
      if (info && info->complete()) head.missing = false;
    }
    if (head.missing && info && info->state == BlobInfo::State::kWanted && peer_blob_later_) {
      // Wanted here too: the peer hears once it is here. A peer's request is a read, so
      // a blob fetched lazily here is fetched now (the device behind this one may have
      // no other route to it).
      if (!info->requested && opt_.lazy_blobs && opt_.lazy_blobs(w->ref.collection))
        TANDEM_RETURN_IF_ERROR(replica_.RequestBlob(w->hash));  // eager: wanted already
      head.later = true;
      owed_.insert(w->hash);
    }
    if (head.missing) {
      out->emplace_back(std::in_place_type<BlobHead>, std::move(head));
      return Status::Ok();
    }
    if (w->from > info->chunks.size())
      return Status::Invalid(Short(w->hash) + ": asked from chunk " + std::to_string(w->from) +
                             " of " + std::to_string(info->chunks.size()));
    head.size = info->size;
    if (w->list) head.chunks = info->chunks;
    out->emplace_back(std::in_place_type<BlobHead>, std::move(head));
    if (w->from == info->chunks.size()) {
      ++stats_.blobs_sent;
      return Status::Ok();
    }
    out_blob_ = OutBlob{w->hash, std::move(info->chunks), info->size, w->from, w->from, w->ref};
    return PumpBlob(out);
  }
  const auto& a = std::get<BlobAck>(in);
  if (!out_blob_ || a.hash != out_blob_->hash || a.index < out_blob_->acked ||
      a.index >= out_blob_->next)
    return Status::Invalid("BlobAck for a chunk not in flight");
  out_blob_->acked = a.index + 1;
  if (out_blob_->acked == out_blob_->chunks.size()) {
    ++stats_.blobs_sent;
    out_blob_.reset();
    return Status::Ok();
  }
  return PumpBlob(out);
}

}  // namespace tandem::engine
