#include "tandem/net/wire.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <zstd.h>

#include <cstring>
#include <map>
#include <memory>

#include "columns.h"
#include "sync.capnp.h"
#include "tandem/engine/codec.h"

namespace tandem::net {

using engine::FieldDelta;
using engine::Message;
using engine::ReplicaId;

namespace {

// One compression and one decompression context per thread, made once: the one-shot
// ZSTD_compress and ZSTD_decompress make and free one at every call (570 KB to compress
// at level 1), for every batch.
ZSTD_CCtx* CompressionContext() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(),
                                                                    &ZSTD_freeCCtx);
  return c.get();
}
ZSTD_DCtx* DecompressionContext() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> d(ZSTD_createDCtx(),
                                                                    &ZSTD_freeDCtx);
  return d.get();
}

capnp::Data::Reader AsData(const ReplicaId& id) {
  return capnp::Data::Reader(id.bytes.data(), id.bytes.size());
}
capnp::Data::Reader AsData(const engine::BlobHash& h) {
  return capnp::Data::Reader(h.data(), h.size());
}

void SetFilter(wire::Filter::Builder b, const engine::CollectionFilter& f) {
  b.setAll(f.all);
  auto names = b.initNames(static_cast<unsigned>(f.names.size()));
  unsigned i = 0;
  for (const auto& n : f.names) names.set(i++, n);
}

void SetVv(wire::VersionVector::Builder b, const engine::VersionVector& vv) {
  auto ids = b.initReplicas(static_cast<unsigned>(vv.size()));
  auto seqs = b.initSeqs(static_cast<unsigned>(vv.size()));
  unsigned i = 0;
  for (const auto& [r, s] : vv.entries()) {
    ids.set(i, AsData(r));
    seqs.set(i, s);
    ++i;
  }
}

// Validation failures while reading; the first one wins.
struct Check {
  Status st;
  bool ok() const { return st.ok(); }
  void Fail(const std::string& why) {
    if (st.ok()) st = Status::Corrupt(why);
  }
};

engine::BlobHash ReadHash(capnp::Data::Reader d, Check& c) {
  engine::BlobHash h{};
  if (d.size() != h.size())
    c.Fail("a blob hash is not 32 bytes");
  else
    std::memcpy(h.data(), d.begin(), h.size());
  return h;
}

ReplicaId ReadId(capnp::Data::Reader d, Check& c, const char* what) {
  if (d.size() != 16) {
    c.Fail(std::string(what) + " is not 16 bytes");
    return {};
  }
  return ReplicaId::FromBytes(d.begin());
}

// `excludes`: `all` with names is every collection but those (sendFull); else every
// collection, as older builds read it.
engine::CollectionFilter ReadFilter(wire::Filter::Reader r, Check& c, bool excludes = false) {
  engine::CollectionFilter f;
  f.all = r.getAll();
  for (auto n : r.getNames()) {
    std::string_view s(n.cStr(), n.size());
    if (Status v = engine::ValidateCollection(s); !v.ok()) c.Fail("filter: " + v.message());
    f.names.emplace(s);
  }
  if (f.all && !excludes) f.names.clear();
  return f;
}

engine::VersionVector ReadVv(wire::VersionVector::Reader r, Check& c) {
  engine::VersionVector vv;
  auto ids = r.getReplicas();
  auto seqs = r.getSeqs();
  if (ids.size() != seqs.size()) {
    c.Fail("version vector lists differ in length");
    return vv;
  }
  ReplicaId prev;
  for (unsigned i = 0; i < ids.size() && c.ok(); ++i) {
    ReplicaId id = ReadId(ids[i], c, "version vector replica");
    if (i > 0 && !(prev < id)) c.Fail("version vector not in ascending order");
    if (seqs[i] == 0) c.Fail("version vector entry with sequence 0");
    vv.Raise(id, seqs[i]);
    prev = id;
  }
  return vv;
}

void SetRequest(wire::SyncRequest::Builder w, const engine::SyncRequest& r) {
  SetVv(w.initVv(), r.vv);
  w.setCursor(r.cursor);
  w.setHoldsOfYours(r.holds_of_yours);
  w.setMark(r.mark);
  w.setWhole(r.whole);
  if (r.piece_offset) {
    w.setPieceOffset(r.piece_offset);
    w.setPieceDigest(AsData(r.piece_digest));
  }
}

engine::SyncRequest ReadRequest(wire::SyncRequest::Reader r, Check& c) {
  engine::SyncRequest m{ReadVv(r.getVv(), c), r.getCursor(), r.getHoldsOfYours(), r.getMark(),
                        r.getWhole()};
  m.piece_offset = r.getPieceOffset();
  if (m.piece_offset) m.piece_digest = ReadHash(r.getPieceDigest(), c);
  return m;
}

// A batch's field states: replica and name tables, and the entries in the layout the
// peer reads, compressed when that pays.
Status SetEntries(const engine::DeltaBatch& d, const EncodeOptions& opt,
                  wire::DeltaBatch::Builder w) {
  engine::VectorReplicaTable table;
  std::map<std::string, uint64_t> name_index;
  std::vector<const std::string*> names;
  auto name = [&](const std::string& n) {
    auto [it, added] = name_index.emplace(n, names.size());
    if (added) names.push_back(&it->first);
    return it->second;
  };
  if (!(opt.peer_features & kFeatureBlobs)) {
    bool refs = false;
    for (const auto& fd : d.deltas) engine::ForEachBlobRef(fd.state, [&](auto&) { refs = true; });
    if (refs)
      return Status::Unsupported(
          "a field holds a blob reference, and the peer's version of tandem cannot take one: "
          "upgrade it");
  }
  std::string entries;
  const bool columns2 = opt.peer_features & kFeatureColumns2;
  const bool columns = columns2 || (opt.peer_features & kFeatureColumns);
  if (columns) {
    TANDEM_RETURN_IF_ERROR(EncodeColumns(d.deltas, name, table, columns2, &entries));
  } else {
    engine::Writer ew(&entries);
    for (const auto& fd : d.deltas) {
      ew.Varint(name(fd.key.collection));
      ew.LengthPrefixed(fd.key.record);
      ew.Varint(name(fd.key.field));
      TANDEM_RETURN_IF_ERROR(engine::EncodeFieldState(fd.state, table, &entries)
                                 .With("field " + fd.key.field + " of " + fd.key.record));
    }
  }
  w.setLayout(columns2  ? wire::Layout::COLUMNS2
              : columns ? wire::Layout::COLUMNS
                        : wire::Layout::ROWS);
  auto ids = w.initReplicas(static_cast<unsigned>(table.ids().size()));
  for (unsigned i = 0; i < table.ids().size(); ++i) ids.set(i, AsData(table.ids()[i]));
  auto ns = w.initNames(static_cast<unsigned>(names.size()));
  for (unsigned i = 0; i < names.size(); ++i) ns.set(i, *names[i]);
  // Compress the body when it pays: keys, clocks and dots repeat across entries.
  std::string packed;
  ZSTD_CCtx* cctx = CompressionContext();
  if (entries.size() >= 128 && cctx) {
    packed.resize(ZSTD_compressBound(entries.size()));
    size_t n =
        ZSTD_compressCCtx(cctx, packed.data(), packed.size(), entries.data(), entries.size(), 1);
    if (ZSTD_isError(n) || n >= entries.size()) {
      packed.clear();
    } else {
      packed.resize(n);
    }
  }
  const std::string& body_bytes = packed.empty() ? entries : packed;
  w.setCompression(packed.empty() ? wire::Compression::NONE : wire::Compression::ZSTD);
  w.setRawSize(static_cast<uint32_t>(entries.size()));
  w.setEntries(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(body_bytes.data()),
                                   body_bytes.size()));
  return Status::Ok();
}

}  // namespace

Result<std::string> EncodeMessage(const Message& m, const EncodeOptions& opt) {
  capnp::MallocMessageBuilder b;
  auto env = b.initRoot<wire::Envelope>();
  env.setVersion(kWireVersion);
  auto body = env.initBody();
  if (const auto* h = std::get_if<engine::Hello>(&m)) {
    auto w = body.initHello();
    w.setProtocol(h->protocol);
    w.setReplica(AsData(h->replica));
    // An older build would read a filter that leaves collections out as every one.
    if (h->send.Excludes() || h->accept.Excludes())
      return Status::Invalid("a Hello's send and accept filters name no collection left out");
    SetFilter(w.initSend(), h->send);
    SetFilter(w.initAccept(), h->accept);
    if (h->send_full) SetFilter(w.initSendFull(), *h->send_full);
    w.setFeatures(kFeatureColumns | kFeatureColumns2 | (h->pieces ? kFeaturePieces : 0) |
                  (h->blobs ? kFeatureBlobs : 0) | (h->takes_early ? kFeatureEarly : 0) |
                  (h->send_full ? kFeatureExclusions : 0) |
                  (h->reads_collected_in ? kFeatureCollectedIn : 0) |
                  (h->blob_later ? kFeatureBlobLater : 0) | (h->digests ? kFeatureDigests : 0));
    SetVv(w.initCollected(), h->collected);
    w.setIdleTimeoutMs(h->idle_timeout_ms);
    w.setCompare(h->digests && h->compare);
    if (!h->collected_in.empty()) {
      auto list = w.initCollectedIn(static_cast<unsigned>(h->collected_in.size()));
      unsigned i = 0;
      for (const auto& [collection, vv] : h->collected_in) {
        list[i].setCollection(collection);
        SetVv(list[i].initVv(), vv);
        ++i;
      }
    }
    if (h->early) {
      SetRequest(w.initEarly(), *h->early);
      if (!h->expect.IsZero()) w.setExpect(AsData(h->expect));
    }
  } else if (const auto* r = std::get_if<engine::SyncRequest>(&m)) {
    SetRequest(body.initSyncRequest(), *r);
  } else if (const auto* d = std::get_if<engine::DeltaBatch>(&m)) {
    auto w = body.initDeltaBatch();
    w.setFrom(d->from);
    w.setCursor(d->cursor);
    w.setMark(d->mark);
    if (d->piece) {
      if (!d->deltas.empty() || d->piece->total == 0 || d->piece->bytes.empty())
        return Status::Invalid("a batch carries a piece of a field state, and nothing else");
      if (!(opt.peer_features & kFeaturePieces))
        return Status::Unsupported("the peer cannot take a field state in pieces");
      w.setPieceTotal(d->piece->total);
      w.setPieceOffset(d->piece->offset);
      w.setPiece(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(d->piece->bytes.data()),
                                     d->piece->bytes.size()));
      if (d->piece->digest != engine::BlobHash{}) w.setPieceDigest(AsData(d->piece->digest));
    } else {
      TANDEM_RETURN_IF_ERROR(SetEntries(*d, opt, w));
    }
  } else if (const auto* c = std::get_if<engine::CaughtUp>(&m)) {
    auto w = body.initCaughtUp();
    w.setCursor(c->cursor);
    SetVv(w.initVv(), c->vv);
    if (!c->collected.entries().empty()) SetVv(w.initCollected(), c->collected);
  } else if (const auto* a = std::get_if<engine::Ack>(&m)) {
    body.initAck().setCursor(a->cursor);
  } else if (const auto* dg = std::get_if<engine::Digests>(&m)) {
    if (!(opt.peer_features & kFeatureDigests))
      return Status::Unsupported("the peer compares no states");
    auto w = body.initDigests();
    w.setComparable(dg->comparable);
    if (dg->comparable) {
      SetVv(w.initVv(), dg->vv);
      SetVv(w.initHull(), dg->hull);
      w.setRepair(dg->repair);
      auto names = w.initCollections(static_cast<unsigned>(dg->sums.size()));
      std::string sums;
      unsigned i = 0;
      for (const auto& [collection, sum] : dg->sums) {
        names.set(i++, collection);
        sums.append(reinterpret_cast<const char*>(sum.data()), sum.size());
      }
      w.setSums(
          capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(sums.data()), sums.size()));
    }
  } else {
    if (!(opt.peer_features & kFeatureBlobs)) return Status::Unsupported("the peer takes no blobs");
    if (const auto* bw = std::get_if<engine::BlobWant>(&m)) {
      auto w = body.initBlobWant();
      w.setHash(AsData(bw->hash));
      w.setCollection(bw->ref.collection);
      w.setRecord(bw->ref.record);
      w.setField(bw->ref.field);
      w.setFrom(bw->from);
      w.setList(bw->list);
      w.setIdle(bw->idle);
    } else if (const auto* bh = std::get_if<engine::BlobHead>(&m)) {
      auto w = body.initBlobHead();
      w.setHash(AsData(bh->hash));
      w.setMissing(bh->missing);
      w.setSize(bh->size);
      w.setChunks(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(bh->chunks.data()),
                                      bh->chunks.size() * 32));
      if (bh->later || bh->ready) {
        if (!(opt.peer_features & kFeatureBlobLater))
          return Status::Unsupported("the peer cannot be told a blob comes later");
        w.setLater(bh->later);
        w.setReady(bh->ready);
      }
    } else if (const auto* bc = std::get_if<engine::BlobChunk>(&m)) {
      auto w = body.initBlobChunk();
      w.setHash(AsData(bc->hash));
      w.setIndex(bc->index);
      w.setBytes(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(bc->bytes.data()),
                                     bc->bytes.size()));
    } else if (const auto* ba = std::get_if<engine::BlobAck>(&m)) {
      auto w = body.initBlobAck();
      w.setHash(AsData(ba->hash));
      w.setIndex(ba->index);
    }
  }
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

Result<Message> DecodeMessage(std::string_view bytes, uint32_t* features) {
  if (bytes.empty() || bytes.size() > kMaxFrameBytes || bytes.size() % 8 != 0)
    return Status::Corrupt("message of " + std::to_string(bytes.size()) + " bytes");
  // FlatArrayMessageReader needs word alignment: copy into words we own.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / 8);
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  capnp::ReaderOptions opt;
  opt.traversalLimitInWords = bytes.size() / 8 + 8;  // nothing may be read twice
  opt.nestingLimit = 8;
  Check c;
  try {
    capnp::FlatArrayMessageReader reader(words, opt);
    if (reader.getEnd() != words.end()) return Status::Corrupt("trailing bytes after message");
    auto env = reader.getRoot<wire::Envelope>();
    if (env.getVersion() != kWireVersion)
      return Status::Unsupported("wire version " + std::to_string(env.getVersion()));
    auto body = env.getBody();
    switch (body.which()) {
      case wire::Envelope::Body::HELLO: {
        auto r = body.getHello();
        engine::Hello h;
        h.protocol = r.getProtocol();
        h.replica = ReadId(r.getReplica(), c, "hello replica");
        h.send = ReadFilter(r.getSend(), c);
        h.accept = ReadFilter(r.getAccept(), c);
        if (r.getFeatures() & kFeatureExclusions) {
          if (!r.hasSendFull()) c.Fail("hello: bit 5 set but no sendFull");
          h.send_full = ReadFilter(r.getSendFull(), c, true);
        }
        h.collected = ReadVv(r.getCollected(), c);
        if (r.getCollectedIn().size() > engine::ReadTxn::kMaxCollectedIn)
          c.Fail("hello: more than " + std::to_string(engine::ReadTxn::kMaxCollectedIn) +
                 " collections in collectedIn");
        for (auto e : r.getCollectedIn()) {
          if (!c.ok()) break;
          std::string name(e.getCollection().cStr(), e.getCollection().size());
          if (Status v = engine::ValidateCollection(name); !v.ok())
            c.Fail("hello collectedIn: " + v.message());
          if (!h.collected_in.empty() && !(h.collected_in.rbegin()->first < name))
            c.Fail("hello collectedIn: collections not in ascending order");
          engine::VersionVector vv = ReadVv(e.getVv(), c);
          if (c.ok())
            h.collected_in.emplace_hint(h.collected_in.end(), std::move(name), std::move(vv));
        }
        if (!c.ok()) return c.st;
        h.pieces = r.getFeatures() & kFeaturePieces;
        h.blobs = r.getFeatures() & kFeatureBlobs;
        h.takes_early = r.getFeatures() & kFeatureEarly;
        h.reads_collected_in = r.getFeatures() & kFeatureCollectedIn;
        h.blob_later = r.getFeatures() & kFeatureBlobLater;
        h.digests = r.getFeatures() & kFeatureDigests;
        h.compare = h.digests && r.getCompare();
        h.idle_timeout_ms = r.getIdleTimeoutMs();
        if (r.hasEarly()) {
          h.early = ReadRequest(r.getEarly(), c);
          if (r.hasExpect()) h.expect = ReadId(r.getExpect(), c, "hello expected replica");
          if (!c.ok()) return c.st;
        }
        if (features) *features = r.getFeatures();
        return Message{std::move(h)};
      }
      case wire::Envelope::Body::SYNC_REQUEST: {
        engine::SyncRequest m = ReadRequest(body.getSyncRequest(), c);
        if (!c.ok()) return c.st;
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::DELTA_BATCH: {
        auto r = body.getDeltaBatch();
        engine::DeltaBatch m;
        m.from = r.getFrom();
        m.cursor = r.getCursor();
        m.mark = r.getMark();
        if (m.cursor < m.from) return Status::Corrupt("batch ends before it starts");
        if (r.getPieceTotal() != 0) {
          // A piece of one field state: nothing else in the batch.
          auto piece = r.getPiece();
          if (r.getEntries().size() != 0 || r.getReplicas().size() != 0 ||
              r.getNames().size() != 0 || r.getRawSize() != 0)
            return Status::Corrupt("a batch with both entries and a piece");
          if (piece.size() == 0 || r.getPieceOffset() > r.getPieceTotal() ||
              piece.size() > r.getPieceTotal() - r.getPieceOffset())
            return Status::Corrupt("a field state piece outside its state");
          m.piece = engine::StatePiece{
              r.getPieceTotal(), r.getPieceOffset(),
              std::string(reinterpret_cast<const char*>(piece.begin()), piece.size())};
          // Older builds send no digest: zero, and the pieces cannot resume.
          if (r.hasPieceDigest()) m.piece->digest = ReadHash(r.getPieceDigest(), c);
          if (!c.ok()) return c.st;
          return Message{std::move(m)};
        } else if (r.getPiece().size() != 0 || r.getPieceOffset() != 0) {
          return Status::Corrupt("a field state piece without its total");
        }
        engine::VectorReplicaTable table;
        for (auto id : r.getReplicas()) {
          ReplicaId rid = ReadId(id, c, "batch replica");
          if (!c.ok()) return c.st;
          const size_t before = table.ids().size();
          table.IndexOf(rid);
          if (table.ids().size() != before + 1)
            return Status::Corrupt("duplicate replica in batch table");
        }
        std::vector<std::string> names;
        for (auto n : r.getNames()) {
          std::string_view s(n.cStr(), n.size());
          TANDEM_RETURN_IF_ERROR(
              engine::ValidateName(s, engine::kMaxFieldName, "batch name").With("batch"));
          names.emplace_back(s);
        }
        auto data = r.getEntries();
        std::string_view batch_bytes(reinterpret_cast<const char*>(data.begin()), data.size());
        std::string unpacked;
        if (r.getCompression() == wire::Compression::ZSTD) {
          const size_t raw = r.getRawSize();
          if (raw > kMaxBatchBodyBytes) return Status::Corrupt("batch body too large");
          ZSTD_DCtx* dctx = DecompressionContext();
          if (!dctx) return Status::Io("cannot allocate a context to decompress a batch");
          unpacked.resize(raw);
          size_t n = ZSTD_decompressDCtx(dctx, unpacked.data(), raw, batch_bytes.data(),
                                         batch_bytes.size());
          if (ZSTD_isError(n) || n != raw) return Status::Corrupt("batch body does not decompress");
          batch_bytes = unpacked;
        } else if (r.getCompression() != wire::Compression::NONE) {
          return Status::Unsupported("unknown batch compression");
        } else if (r.getRawSize() != batch_bytes.size()) {
          return Status::Corrupt("batch body size mismatch");
        }
        if (r.getLayout() == wire::Layout::COLUMNS || r.getLayout() == wire::Layout::COLUMNS2) {
          TANDEM_RETURN_IF_ERROR(DecodeColumns(batch_bytes, names, table, kMaxBatchEntries,
                                               r.getLayout() == wire::Layout::COLUMNS2, &m.deltas));
          return Message{std::move(m)};
        }
        if (r.getLayout() != wire::Layout::ROWS) return Status::Unsupported("unknown batch layout");
        engine::Reader er(batch_bytes);
        auto name_at = [&](uint64_t i) -> const std::string* {
          return i < names.size() ? &names[i] : nullptr;
        };
        while (er.ok() && er.remaining() > 0) {
          FieldDelta fd;
          const std::string* coll = name_at(er.Varint());
          std::string_view rec = er.LengthPrefixed(engine::kMaxRecordId);
          const std::string* field = name_at(er.Varint());
          if (!er.ok()) break;
          if (!coll || !field) return Status::Corrupt("batch entry names an unknown name");
          fd.key = {*coll, std::string(rec), *field};
          fd.state = engine::DecodeFieldState(er, table);
          if (!er.ok()) break;
          TANDEM_RETURN_IF_ERROR(engine::ValidateKey(fd.key).With("batch entry"));
          if (m.deltas.size() >= kMaxBatchEntries)
            return Status::Corrupt("batch has more than " + std::to_string(kMaxBatchEntries) +
                                   " entries");
          m.deltas.push_back(std::move(fd));
        }
        if (!er.ok()) return er.status().With("batch entries");
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::CAUGHT_UP: {
        auto r = body.getCaughtUp();
        engine::CaughtUp m{r.getCursor(), ReadVv(r.getVv(), c), ReadVv(r.getCollected(), c)};
        if (!c.ok()) return c.st;
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::ACK:
        return Message{engine::Ack{body.getAck().getCursor()}};
      case wire::Envelope::Body::BLOB_WANT: {
        auto r = body.getBlobWant();
        engine::BlobWant m;
        m.hash = ReadHash(r.getHash(), c);
        m.idle = r.getIdle();
        m.from = r.getFrom();
        m.list = r.getList();
        m.ref = {std::string(r.getCollection().cStr(), r.getCollection().size()),
                 std::string(r.getRecord().cStr(), r.getRecord().size()),
                 std::string(r.getField().cStr(), r.getField().size())};
        if (!m.idle) {
          if (!c.ok()) return c.st;
          TANDEM_RETURN_IF_ERROR(engine::ValidateKey(m.ref).With("blob want"));
          if (m.from > engine::kMaxBlobChunks) return Status::Corrupt("blob want past any blob");
        }
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::BLOB_HEAD: {
        auto r = body.getBlobHead();
        engine::BlobHead m;
        m.hash = ReadHash(r.getHash(), c);
        if (!c.ok()) return c.st;
        m.missing = r.getMissing();
        m.later = r.getLater();
        m.ready = r.getReady();
        m.size = r.getSize();
        auto chunks = r.getChunks();
        if (m.size > engine::kMaxBlobBytes || chunks.size() % 32 != 0 ||
            chunks.size() / 32 > engine::kMaxBlobChunks)
          return Status::Corrupt("blob head out of bounds");
        if ((m.later && !m.missing) ||
            (m.ready && (m.missing || m.later || m.size != 0 || chunks.size() != 0)))
          return Status::Corrupt("blob head says both that it is ready and something else");
        m.chunks.resize(chunks.size() / 32);
        if (!m.chunks.empty()) std::memcpy(m.chunks.data(), chunks.begin(), chunks.size());
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::BLOB_CHUNK: {
        auto r = body.getBlobChunk();
        engine::BlobChunk m;
        m.hash = ReadHash(r.getHash(), c);
        if (!c.ok()) return c.st;
        m.index = r.getIndex();
        auto chunk = r.getBytes();
        if (chunk.size() > engine::kBlobChunkBytes || m.index >= engine::kMaxBlobChunks)
          return Status::Corrupt("blob chunk out of bounds");
        m.bytes.assign(reinterpret_cast<const char*>(chunk.begin()), chunk.size());
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::BLOB_ACK: {
        auto r = body.getBlobAck();
        engine::BlobAck m;
        m.hash = ReadHash(r.getHash(), c);
        if (!c.ok()) return c.st;
        m.index = r.getIndex();
        return Message{std::move(m)};
      }
      case wire::Envelope::Body::DIGESTS: {
        auto r = body.getDigests();
        engine::Digests m;
        m.comparable = r.getComparable();
        if (!m.comparable) return Message{std::move(m)};
        m.vv = ReadVv(r.getVv(), c);
        m.hull = ReadVv(r.getHull(), c);
        m.repair = r.getRepair();
        auto names = r.getCollections();
        auto sums = r.getSums();
        if (sums.size() != size_t{names.size()} * 16)
          return Status::Corrupt("digests: " + std::to_string(names.size()) + " collections but " +
                                 std::to_string(sums.size()) + " bytes of sums");
        for (unsigned i = 0; i < names.size() && c.ok(); ++i) {
          auto text = names[i];  // read once: the traversal limit counts every read
          std::string name(text.cStr(), text.size());
          if (Status v = engine::ValidateCollection(name); !v.ok())
            c.Fail("digests: " + v.message());
          if (!m.sums.empty() && !(m.sums.rbegin()->first < name))
            c.Fail("digests: collections not in ascending order");
          std::array<uint8_t, 16> sum;
          std::memcpy(sum.data(), sums.begin() + size_t{i} * 16, 16);
          if (sum == std::array<uint8_t, 16>{}) c.Fail("digests: a sum of zero is not listed");
          if (c.ok()) m.sums.emplace_hint(m.sums.end(), std::move(name), sum);
        }
        if (!c.ok()) return c.st;
        return Message{std::move(m)};
      }
      default:
        return Status::Unsupported("unknown message kind");
    }
  } catch (const kj::Exception& e) {
    return Status::Corrupt(std::string("malformed message: ") + e.getDescription().cStr());
  }
}

}  // namespace tandem::net
