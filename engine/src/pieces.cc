// A field state that arrives from a peer in pieces: held as it comes (a cut resumes where
// it stopped), read to its outline or decoded, stored as it came, or joined with the
// field's state here a part at a time (JoinPieces).
#include <algorithm>

#include "tandem/engine/codec.h"
#include "tandem/engine/join_encoded.h"
#include "tandem/engine/replica.h"

namespace tandem::engine {

namespace {
// The pending blob entry that lists the pieces held from a peer.
BlobHash PiecesKey(ContentHash hash, const ReplicaId& peer) {
  return HashOf(hash, "tandem pieces " + peer.Hex());
}
// How many times a join of a state in pieces is made before they are decoded whole, where
// the field is written each time while it is made.
constexpr int kJoinTries = 3;
}  // namespace

Status Replica::HoldPiece(const ReplicaId& peer, PieceProgress progress, std::string_view bytes) {
  if (bytes.size() != kBlobChunkBytes || progress.held % kBlobChunkBytes != 0)
    return Status::Invalid("a piece held is a whole chunk");
  TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    const BlobHash key = PiecesKey(hash_, peer);
    std::optional<BlobInfo> held;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(key, &held));
    BlobInfo info;
    info.state = BlobInfo::State::kPending;
    info.listed = true;
    // Appending to what is held, or starting over.
    if (progress.held > 0) {
      if (!held || !ps.pieces || ps.pieces->digest != progress.digest ||
          ps.pieces->held != progress.held || held->size != progress.held)
        return Status::Invalid("a piece that does not follow the pieces held");
      info = *held;
    }
    const BlobHash h = Hash(bytes);
    TANDEM_RETURN_IF_ERROR(txn->PutChunk(h, bytes));
    info.chunks.push_back(h);
    info.size += bytes.size();
    info.have = info.chunks.size();
    info.touched_ms = now_();
    TANDEM_RETURN_IF_ERROR(txn->PutBlob(key, info));
    progress.held += bytes.size();
    ps.pieces = progress;
    TANDEM_RETURN_IF_ERROR(txn->PutPeer(peer, ps));
    return txn->Commit();
  }));
  return Status::Ok();
}

Result<std::optional<PieceProgress>> Replica::PiecesHeld(const ReplicaId& peer) {
  std::optional<PieceProgress> out;
  std::optional<BlobInfo> joined;  // left by a join cut short: never resumed
  {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(JoinedEntry(PiecesKey(hash_, peer)), &joined));
    if (!ps.pieces && !joined) return out;
    std::optional<BlobInfo> held;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(PiecesKey(hash_, peer), &held));
    if (ps.pieces && ps.pieces->from == ps.cursor && held && held->size == ps.pieces->held)
      out = ps.pieces;
  }
  if (!out) TANDEM_RETURN_IF_ERROR(DropPieces(peer));
  if (out && joined) {
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(JoinedEntry(PiecesKey(hash_, peer))));
      return txn->Commit();
    }));
  }
  return out;
}

namespace {
// The pieces held from a peer, then the last piece, handed out a chunk at a time, each
// read by `read` (in a read transaction of its own: a long one would hold up the map's
// growth; or in the write transaction that applies them).
class HeldPieces : public Reader::More {
 public:
  using ReadFn = std::function<Status(const BlobHash&, std::string*, bool*)>;
  HeldPieces(ReadFn read, ContentHash hash, std::vector<BlobHash> chunks, std::string_view last)
      : read_(std::move(read)), hash_(hash), chunks_(std::move(chunks)), last_(last) {
    Rewind();
  }

  // From the first piece again.
  void Rewind() {
    next_ = 0;
    left_ = chunks_.size() * kBlobChunkBytes + last_.size();
  }
  // The next piece (a view valid until the next call); false at the end, or at an error.
  bool Next(std::string_view* part) {
    if (!status_.ok()) return false;
    if (next_ > chunks_.size()) return false;
    if (next_ == chunks_.size()) {
      ++next_;
      *part = last_;
    } else {
      status_ = Read(chunks_[next_++]);
      if (!status_.ok()) return false;
      *part = buf_;
    }
    left_ -= part->size();
    return true;
  }
  bool Append(std::string* out) override {
    std::string_view part;
    if (!Next(&part)) return false;
    out->append(part);
    return true;
  }
  size_t left() const override { return left_; }
  const Status& status() const { return status_; }

 private:
  Status Read(const BlobHash& h) {
    bool found = false;
    TANDEM_RETURN_IF_ERROR(read_(h, &buf_, &found));
    if (!found || buf_.size() != kBlobChunkBytes || HashOf(hash_, buf_) != h)
      return Status::Corrupt("a piece held is missing or damaged");
    return Status::Ok();
  }

  ReadFn read_;
  ContentHash hash_;
  std::vector<BlobHash> chunks_;
  std::string_view last_;
  size_t next_ = 0, left_ = 0;
  std::string buf_;
  Status status_;
};

HeldPieces::ReadFn ReadEach(Store& store) {
  return [&store](const BlobHash& h, std::string* out, bool* found) -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store.BeginRead());
    return txn->GetChunk(h, out, found);
  };
}
}  // namespace

Result<std::vector<BlobHash>> Replica::PieceChunks(const BlobHash& entry, uint64_t held) {
  std::vector<BlobHash> chunks;
  if (held > 0) {  // none held: an entry left by another session is not these pieces
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginRead());
    std::optional<BlobInfo> info;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(entry, &info));
    if (info) chunks = std::move(info->chunks);
  }
  if (chunks.size() * kBlobChunkBytes != held)
    return Status::Corrupt("the pieces held do not add up to what was recorded");
  return chunks;
}

Result<std::pair<FieldKey, FieldState>> Replica::DecodePieces(const ReplicaId& peer, uint64_t held,
                                                              std::string_view last,
                                                              const BlobHash& digest) {
  TANDEM_ASSIGN_OR_RETURN(auto chunks, PieceChunks(PiecesKey(hash_, peer), held));
  // Pieces put together across sessions must be the state the peer hashed.
  return DecodeChunks(std::move(chunks), last, digest, Code::kInvalidArgument);
}

Result<FieldState> Replica::DecodeInPieces(const FieldKey& key, const StateInPieces& p) {
  auto d = DecodeChunks(p.chunks, p.last, p.content, Code::kCorrupt);
  if (!d.ok()) return d.status().With(key.Name());
  if (!(d->first == key)) return Status::Corrupt(key.Name() + ": pieces of another field");
  return std::move(d->second);
}

Result<std::pair<FieldKey, FieldState>> Replica::DecodeChunks(std::vector<BlobHash> chunks,
                                                              std::string_view last,
                                                              const BlobHash& digest,
                                                              Code mismatch) {
  HeldPieces pieces(ReadEach(*store_), hash_, std::move(chunks), last);
  if (digest != BlobHash{}) {
    const BlobHash got = hash_([&](std::string_view* part) { return pieces.Next(part); });
    TANDEM_RETURN_IF_ERROR(pieces.status());
    if (got != digest) return Status(mismatch, "a field state in pieces does not match its digest");
  }
  // Each chunk is checked again as it is decoded: storage may change between the passes.
  pieces.Rewind();
  Reader r({}, &pieces);  // reads into windows of its own: the pieces' buffer is reused
  auto d = DecodeDelta(r);
  TANDEM_RETURN_IF_ERROR(pieces.status());
  if (!d.ok()) return d.status().With("field state in pieces");
  return d;
}

Status Replica::ApplyJoining(const FieldDelta& came, const ApplyFn& apply, bool* joined) {
  const StateInPieces& in = *came.pieces;
  std::vector<FieldDelta> one{came};
  Status st = apply(one);
  if (st.ok() || !in.whole || !in.joins) return st;
  // Both sides wrote the field, or what either collected cuts it: their join, made a
  // part at a time, takes ours' place. Where the field is written meanwhile, it is
  // judged and made again.
  for (int tries = 0; tries < kJoinTries; ++tries) {
    if (tries > 0) {  // judged again, against the field as it is now
      one.assign(1, came);
      st = apply(one);
      if (st.ok() || !in.whole || !in.joins) break;
    }
    auto made = JoinPieces(came);
    if (!made.ok() && made.status().code() == Code::kBusy) continue;
    if (!made.ok()) break;
    const std::shared_ptr<StateInPieces> j = made->pieces;
    one.assign(1, std::move(*made));
    st = apply(one);
    if (st.ok()) *joined = true;
    if (st.ok() || !j->stale) break;
  }
  return st;
}

Result<FieldDelta> Replica::OutlinePieces(const ReplicaId& peer, uint64_t held,
                                          std::string_view last, const BlobHash& digest) {
  return OutlineHeld(peer, PiecesKey(hash_, peer), held, std::string(last), digest, kMaxStateItems);
}

Result<FieldDelta> Replica::OutlineHeld(const ReplicaId& peer, const BlobHash& entry, uint64_t held,
                                        std::string last, const BlobHash& digest, uint64_t most) {
  auto in = std::make_shared<StateInPieces>();
  in->peer = peer;
  in->entry = entry;
  in->last = std::move(last);
  TANDEM_ASSIGN_OR_RETURN(in->chunks, PieceChunks(entry, held));
  HeldPieces pieces(ReadEach(*store_), hash_, in->chunks, in->last);
  in->size = pieces.left();
  // Hashed always: the hash names the stored state's chunks (PutInPieces).
  in->content = hash_([&](std::string_view* part) { return pieces.Next(part); });
  TANDEM_RETURN_IF_ERROR(pieces.status());
  if (digest != BlobHash{} && in->content != digest)
    return Status::Invalid("a field state in pieces does not match its digest");
  pieces.Rewind();
  Reader r({}, &pieces);
  StateItems bound;
  bound.most = most;
  auto d = OutlineDelta(r, &bound);
  if (most && !d.ok() && d.status().message().find(kPastMostItems) != std::string::npos)
    return Status::Unsupported("a field state in pieces of more than " + std::to_string(most) +
                               " markers and set elements: a peer withholds one so large");
  TANDEM_RETURN_IF_ERROR(pieces.status());
  if (!d.ok()) return d.status().With("field state in pieces");
  in->header = d->header;
  in->state_at = d->state_at;
  return FieldDelta{std::move(d->key), std::move(d->outline), std::move(in)};
}

Status Replica::ReadInPieces(ReadTxn& txn, const StateInPieces& p, const StateItems& items) {
  HeldPieces pieces([&txn](const BlobHash& h, std::string* out,
                           bool* found) { return txn.GetChunk(h, out, found); },
                    hash_, p.chunks, p.last);
  Reader r({}, &pieces);
  auto d = OutlineDelta(r, &items);
  TANDEM_RETURN_IF_ERROR(pieces.status());
  return d.status().With("field state in pieces");
}

Result<std::optional<BlobInfo>> Replica::StateEntry(WriteTxn& txn, const StateInPieces& p) {
  std::optional<BlobInfo> out;
  // Its chunks are whole ones but for the last (ReceivePiece refuses a longer piece).
  if (p.last.size() > kBlobChunkBytes) return out;
  // The pieces the outline was read from, still held.
  if (!p.chunks.empty()) {
    std::optional<BlobInfo> held;
    TANDEM_RETURN_IF_ERROR(txn.GetBlob(p.entry, &held));
    if (!held || held->chunks.size() < p.chunks.size() ||
        !std::equal(p.chunks.begin(), p.chunks.end(), held->chunks.begin()))
      return out;
  }
  BlobInfo& info = out.emplace();
  info.state = BlobInfo::State::kState;
  info.size = p.size;
  info.listed = true;
  info.chunks = p.chunks;
  if (!p.last.empty()) {
    const BlobHash h = Hash(p.last);
    TANDEM_RETURN_IF_ERROR(txn.PutChunk(h, p.last));
    info.chunks.push_back(h);
  }
  info.have = info.chunks.size();
  info.touched_ms = now_();
  return out;
}

Status Replica::PutInPieces(WriteTxn& txn, const FieldDelta& d, bool* stored) {
  *stored = false;
  const StateInPieces& p = *d.pieces;
  TANDEM_ASSIGN_OR_RETURN(std::optional<BlobInfo> info, StateEntry(txn, p));
  if (!info) return Status::Ok();
  const BlobHash entry = HashOf(hash_, "tandem state " + HexOf(p.content));
  TANDEM_RETURN_IF_ERROR(
      txn.PutFieldOutOfLine(d.key, d.state.ctx, p.header, entry, p.state_at, stored));
  if (*stored) TANDEM_RETURN_IF_ERROR(txn.PutBlob(entry, *info));
  return Status::Ok();
}

namespace {
// A field's stored state as its delta encoding (ReadTxn::ReadDelta), a window at a time,
// each read in a transaction of its own (a long one would hold up the map's growth): Busy
// if the field is not at log position `seq`, or moves between two readings.
class StoredDelta : public Reader::More {
 public:
  static constexpr size_t kWindow = kBlobChunkBytes;
  StoredDelta(Store& store, const FieldKey& key, uint64_t seq)
      : store_(store), key_(key), seq_(seq) {}
  // The first window; with `check`, the bytes are checked against their checksum first
  // (a pass over all of them).
  Status Open(bool check, std::string* out) { return Read(check, out); }
  bool Append(std::string* out) override {
    if (offset_ >= size_) return false;
    const size_t before = out->size();
    status_ = Read(false, out);
    if (status_.ok() && out->size() == before)
      status_ = Status::Corrupt(key_.Name() + " ends before its size");
    return status_.ok();
  }
  size_t left() const override { return static_cast<size_t>(size_ - offset_); }
  const Status& status() const { return status_; }

 private:
  Status Read(bool check, std::string* out) {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_.BeginRead());
    uint64_t size = 0, seq = 0;
    const size_t before = out->size();
    TANDEM_RETURN_IF_ERROR(txn->ReadDelta(key_, offset_, kWindow, check, &size, &seq, out));
    if (seq != seq_ || (offset_ > 0 && size != size_))
      return Status::Busy(key_.Name() + " was written while it was joined");
    size_ = size;
    offset_ += out->size() - before;
    return Status::Ok();
  }

  Store& store_;
  const FieldKey& key_;
  uint64_t seq_;
  uint64_t offset_ = 0, size_ = 0;
  Status status_;
};
}  // namespace

// Chunks of a join stored per transaction: held in memory until then, and again by LMDB
// as the transaction's pages (2 MiB each way).
constexpr size_t kJoinTxnChunks = 4;

Result<FieldDelta> Replica::JoinPieces(const FieldDelta& d) {
  const StateInPieces& p = *d.pieces;
  const BlobHash entry = JoinedEntry(p.entry);
  uint64_t held = 0;              // bytes stored in chunks the entry lists
  std::vector<BlobHash> listed;   // those chunks
  std::string part;               // the chunk being filled
  std::vector<std::string> full;  // whole chunks not stored yet
  // Stores `full`, listed by the entry, in one transaction; the first starts it afresh.
  auto store_full = [&]() -> Status {
    std::vector<BlobHash> hashes;
    for (const std::string& c : full) hashes.push_back(Hash(c));
    TANDEM_RETURN_IF_ERROR(Retrying([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
      std::optional<BlobInfo> info;
      if (held > 0) TANDEM_RETURN_IF_ERROR(txn->GetBlob(entry, &info));
      if (held > 0 && (!info || info->chunks != listed))
        return Status::NotFound("the join of a field state in pieces was dropped meanwhile");
      BlobInfo b;
      b.state = BlobInfo::State::kPending;
      b.listed = true;
      b.chunks = listed;
      for (size_t i = 0; i < full.size(); ++i) {
        TANDEM_RETURN_IF_ERROR(txn->PutChunk(hashes[i], full[i]));
        b.chunks.push_back(hashes[i]);
      }
      b.size = b.chunks.size() * kBlobChunkBytes;
      b.have = b.chunks.size();
      b.touched_ms = now_();
      TANDEM_RETURN_IF_ERROR(txn->PutBlob(entry, b));
      return txn->Commit();
    }));
    listed.insert(listed.end(), hashes.begin(), hashes.end());
    held += full.size() * kBlobChunkBytes;
    full.clear();
    return Status::Ok();
  };
  auto out = [&](std::string_view bytes) -> Status {
    while (!bytes.empty()) {
      const size_t take = std::min(bytes.size(), kBlobChunkBytes - part.size());
      part.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (part.size() < kBlobChunkBytes) continue;
      full.push_back(std::move(part));
      part.clear();
      if (full.size() == kJoinTxnChunks) TANDEM_RETURN_IF_ERROR(store_full());
    }
    return Status::Ok();
  };
  // Ours as it was judged (StateInPieces::judged_at), the same in both passes; where the
  // field held nothing, an empty state. Else Busy: it was written since.
  const uint64_t seq = p.judged_at;
  bool checked = false;  // against their checksum, at the first pass
  std::string nothing;
  const DeltaSource ours = [&](const std::function<void(Reader&)>& read) -> Status {
    StoredDelta more(*store_, d.key, seq);
    std::string first;
    const Status st = more.Open(!checked, &first);
    if (st.code() == Code::kNotFound && seq == 0) {
      if (nothing.empty()) {
        TANDEM_ASSIGN_OR_RETURN(nothing, EncodeDelta(d.key, FieldState{}));
      }
      Reader r(nothing);
      read(r);
      return Status::Ok();
    }
    if (st.code() == Code::kNotFound || (st.ok() && seq == 0))
      return Status::Busy(d.key.Name() + " was written while it was joined");
    TANDEM_RETURN_IF_ERROR(st);
    checked = true;
    Reader r(first, &more);
    read(r);
    return more.status();
  };
  const DeltaSource theirs = [&](const std::function<void(Reader&)>& read) -> Status {
    HeldPieces pieces(ReadEach(*store_), hash_, p.chunks, p.last);
    Reader r({}, &pieces);
    read(r);
    return pieces.status();
  };
  const JoinCuts cuts{p.cut_theirs ? &*p.cut_theirs : nullptr, p.cut_ours ? &*p.cut_ours : nullptr};
  JoinFacts facts;
  TANDEM_RETURN_IF_ERROR(JoinDeltas(ours, theirs, out, cuts, &facts));
  if (!full.empty()) TANDEM_RETURN_IF_ERROR(store_full());
  // Read back as a state in pieces: its outline, and the hash that names it once stored.
  TANDEM_ASSIGN_OR_RETURN(FieldDelta joined,
                          OutlineHeld(p.peer, entry, held, std::move(part), BlobHash{}));
  StateInPieces& j = *joined.pieces;
  j.joined = true;
  j.came = std::make_shared<const FieldDelta>(d);
  j.joined_at = seq;
  j.changes_ours = facts.changes_ours;
  j.dropped_ours = facts.dropped_ours;
  return joined;
}

Status Replica::DropPieces(const ReplicaId& peer) {
  return Retrying([&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto txn, store_->BeginWrite());
    PeerState ps;
    TANDEM_RETURN_IF_ERROR(txn->GetPeer(peer, &ps));
    std::optional<BlobInfo> held, joined;
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(PiecesKey(hash_, peer), &held));
    TANDEM_RETURN_IF_ERROR(txn->GetBlob(JoinedEntry(PiecesKey(hash_, peer)), &joined));
    if (!ps.pieces && !held && !joined) return Status::Ok();
    // The chunks go with the next collection (no entry lists them then).
    TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(PiecesKey(hash_, peer)));
    TANDEM_RETURN_IF_ERROR(txn->DeleteBlob(JoinedEntry(PiecesKey(hash_, peer))));
    if (ps.pieces) {
      ps.pieces.reset();
      TANDEM_RETURN_IF_ERROR(txn->PutPeer(peer, ps));
    }
    return txn->Commit();
  });
}

}  // namespace tandem::engine
