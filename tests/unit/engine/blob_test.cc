// Blobs: storing, reading, syncing (eager, lazy, resumed, against a lying peer) and
// collecting them.
#include "tandem/engine/blob.h"

#include <cstring>
#include <random>

#include "sync_harness.h"

namespace tandem::engine {
namespace {

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Yields `data` in pieces of awkward sizes (never a whole chunk at once).
BlobSource SourceOf(const std::string& data) {
  auto at = std::make_shared<size_t>(0);
  return [&data, at](char* buf, size_t cap) -> Result<size_t> {
    const size_t n = std::min({cap, data.size() - *at, size_t{100'003}});
    std::memcpy(buf, data.data() + *at, n);
    *at += n;
    return n;
  };
}

std::string Read(Replica& r, const BlobHash& h, uint64_t offset = 0) {
  std::string out;
  Status st = r.ReadBlob(
      h,
      [&](std::string_view b) {
        out.append(b);
        return Status::Ok();
      },
      offset);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

size_t CountChunks(Replica& r) {
  auto txn = r.store().BeginRead();
  size_t n = 0;
  EXPECT_TRUE((*txn)->ScanChunks(nullptr, [&](const BlobHash&) { return ++n; }).ok());
  return n;
}

BlobRef AttachTo(Node& n, const std::string& id, const std::string& data,
                 const std::string& coll = "photos") {
  auto ref = n.replica.Attach(coll, id, "img", SourceOf(data), "image/png");
  EXPECT_TRUE(ref.ok()) << ref.status().ToString();
  return ref.ok() ? *ref : BlobRef{};
}

const size_t kSize = kBlobChunkBytes * 7 / 2;  // three whole chunks and a half

TEST(Blob, WrittenInChunksReadBackAndStoredOnce) {
  Node a(1);
  const std::string data = RandomBytes(kSize, 1);
  BlobRef ref = AttachTo(a, "p1", data);
  EXPECT_EQ(ref.size, kSize);
  EXPECT_EQ(ref.type, "image/png");
  auto rec = a.replica.Get("photos", "p1");
  ASSERT_TRUE(rec.ok());
  EXPECT_TRUE(SameValue(rec->fields.at("img").scalar, Value{ref}));
  EXPECT_EQ(Read(a.replica, ref.hash), data);
  EXPECT_EQ(Read(a.replica, ref.hash, kBlobChunkBytes + 5), data.substr(kBlobChunkBytes + 5));
  EXPECT_EQ(Read(a.replica, ref.hash, kSize), "");
  EXPECT_EQ(a.replica
                .ReadBlob(
                    ref.hash, [](std::string_view) { return Status::Ok(); }, kSize + 1)
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(CountChunks(a.replica), 4u);
  // The same content again: the same address, nothing more stored.
  BlobRef again = AttachTo(a, "p2", data);
  EXPECT_EQ(again.hash, ref.hash);
  EXPECT_EQ(CountChunks(a.replica), 4u);
  // A blob sharing its first chunks stores only what differs.
  std::string other = data;
  other.back() ^= 1;
  BlobRef third = AttachTo(a, "p3", other);
  EXPECT_NE(third.hash, ref.hash);
  EXPECT_EQ(CountChunks(a.replica), 5u);
  EXPECT_EQ(Read(a.replica, third.hash), other);
  // The address is the documented function of the content.
  std::vector<BlobHash> chunks;
  for (size_t at = 0; at < data.size(); at += kBlobChunkBytes)
    chunks.push_back(storage::Blake2b256(std::string_view(data).substr(at, kBlobChunkBytes)));
  EXPECT_EQ(BlobId(storage::Blake2b256Parts, data.size(), chunks), ref.hash);
}

TEST(Blob, EmptyAndUnknownBlobs) {
  Node a(1);
  BlobRef empty = AttachTo(a, "e", "");
  EXPECT_EQ(empty.size, 0u);
  EXPECT_EQ(Read(a.replica, empty.hash), "");
  BlobHash unknown{};
  unknown[0] = 7;
  Status st = a.replica.ReadBlob(unknown, [](std::string_view) { return Status::Ok(); });
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(a.replica.RequestBlob(unknown).code(), Code::kNotFound);
  // A failing source stores nothing and references nothing.
  auto bad = a.replica.Attach(
      "photos", "x", "img", [](char*, size_t) -> Result<size_t> { return Status::Io("gone"); }, "");
  EXPECT_EQ(bad.status().code(), Code::kIo);
  EXPECT_EQ(a.replica.Get("photos", "x").status().code(), Code::kNotFound);
}

TEST(Blob, AnEmptyBlobSyncsLikeAnyOther) {
  Node a(1), b(2);
  BlobRef ref = AttachTo(a, "e", "");
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  auto info = b.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_TRUE((*info)->complete());
  EXPECT_EQ(Read(b.replica, ref.hash), "");
}

TEST(Blob, TheEmptyBlobIsHeldAsSoonAsItIsNamed) {
  Node a(1), b(2);
  EXPECT_EQ(a.replica.BlobAddress(0, {}), kEmptyBlob);
  // A reference typed in by hand, on a replica that never stored the empty blob: no peer
  // need have it, and none did.
  BlobRef ref;
  ref.hash = kEmptyBlob;
  ASSERT_TRUE(
      a.replica.Write([&](Batch& bt) { return bt.Put("photos", "e", "img", Value{ref}); }).ok());
  auto info = a.replica.Blob(kEmptyBlob);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_TRUE((*info)->complete());
  EXPECT_EQ(Read(a.replica, kEmptyBlob), "");
  // Its size is known without it: a reference that says otherwise is refused.
  ref.size = 5;
  Status st = a.replica.Write([&](Batch& bt) { return bt.Put("photos", "f", "img", Value{ref}); });
  EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
  // A peer that receives the reference holds the blob at once too.
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  info = b.replica.Blob(kEmptyBlob);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_TRUE((*info)->complete());
  // One an older build left wanted is held once a reader asks for it.
  BlobInfo wanted;
  wanted.refs = {FieldKey{"photos", "e", "img"}};
  {
    auto txn = b.replica.store().BeginWrite();
    ASSERT_TRUE(txn.ok());
    ASSERT_TRUE((*txn)->PutBlob(kEmptyBlob, wanted).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  bool complete = false;
  ASSERT_TRUE(b.replica.RequestBlob(kEmptyBlob, &complete).ok());
  EXPECT_TRUE(complete);
  EXPECT_EQ(Read(b.replica, kEmptyBlob), "");
}

TEST(Blob, ADamagedChunkIsNeverReturned) {
  Node a(1);
  const std::string data = RandomBytes(kBlobChunkBytes + 10, 2);
  BlobRef ref = AttachTo(a, "p", data);
  auto info = a.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  {
    auto txn = a.replica.store().BeginWrite();
    ASSERT_TRUE((*txn)->DeleteChunk((*info)->chunks[1]).ok());
    ASSERT_TRUE((*txn)->PutChunk((*info)->chunks[1], "tampered").ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  std::string got;
  Status st = a.replica.ReadBlob(ref.hash, [&](std::string_view b) {
    got.append(b);
    return Status::Ok();
  });
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.ToString();
  EXPECT_EQ(got, data.substr(0, kBlobChunkBytes));  // only the verified first chunk
}

// A blob damaged on the device that would send it: nothing it cannot vouch for is
// sent, the others still reach the peer, and the damaged one is fetched again from a
// device that has it whole.
TEST(Blob, ADamagedBlobOnTheSenderBlocksNoOtherAndIsFetchedAgain) {
  Node a(1), b(2), c(3);
  std::vector<std::string> data;
  std::vector<BlobRef> refs;
  for (int i = 0; i < 4; ++i) {
    data.push_back(RandomBytes(kBlobChunkBytes * 2 + 7, 20 + i));
    refs.push_back(AttachTo(a, "p" + std::to_string(i), data.back()));
  }
  {
    Link whole(a, c);
    ASSERT_TRUE(whole.Run().ok());
  }
  auto info = a.replica.Blob(refs[2].hash);
  ASSERT_TRUE(info.ok() && *info);
  {
    auto txn = a.replica.store().BeginWrite();
    ASSERT_TRUE((*txn)->PutChunk((*info)->chunks[1], std::string(kBlobChunkBytes, 'z')).ok());
    ASSERT_TRUE((*txn)->Commit().ok());
  }
  // The first session may end at the damage; the next sends every other blob.
  for (int i = 0; i < 2; ++i) {
    Link link(a, b);
    (void)link.Run();
  }
  for (int i : {0, 1, 3}) EXPECT_EQ(Read(b.replica, refs[i].hash), data[i]) << i;
  EXPECT_FALSE(b.replica.Blob(refs[2].hash).value()->complete());
  EXPECT_FALSE(a.replica.Blob(refs[2].hash).value()->complete()) << "wanted again";
  // From c, whole: a mends it, and then b gets it from a.
  {
    Link mend(a, c);
    ASSERT_TRUE(mend.Run().ok());
  }
  EXPECT_EQ(Read(a.replica, refs[2].hash), data[2]);
  Link last(a, b);
  ASSERT_TRUE(last.Run().ok());
  EXPECT_EQ(Read(b.replica, refs[2].hash), data[2]);
}

TEST(Blob, SyncFetchesReferencedBlobsBothWays) {
  Node a(1), b(2);
  const std::string da = RandomBytes(kSize, 3), db = RandomBytes(1000, 4);
  BlobRef ra = AttachTo(a, "pa", da);
  BlobRef rb = AttachTo(b, "pb", db);
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sa.caught_up());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_EQ(Read(b.replica, ra.hash), da);
  EXPECT_EQ(Read(a.replica, rb.hash), db);
  EXPECT_EQ(link.sb.stats().blobs_received, 1u);
  EXPECT_EQ(link.sb.stats().blob_bytes_received, kSize);
  EXPECT_EQ(link.sa.stats().blobs_sent, 1u);
  EXPECT_EQ(link.sa.stats().blobs_received, 1u);
  // Nothing is fetched twice.
  Link again(a, b);
  ASSERT_TRUE(again.Run().ok());
  EXPECT_EQ(again.sb.stats().blob_bytes_received + again.sa.stats().blob_bytes_received, 0u);
}

TEST(Blob, LazyBlobsWaitForAReader) {
  Node a(1), b(2);
  const std::string data = RandomBytes(kSize, 5);
  BlobRef ref = AttachTo(a, "p", data);
  SessionOptions lazy;
  lazy.lazy_blobs = [](const std::string& c) { return c == "photos"; };
  Link link(a, b, {}, lazy);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  ASSERT_TRUE(b.replica.Get("photos", "p").ok());
  auto info = b.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_FALSE((*info)->complete());
  EXPECT_EQ(b.replica.ReadBlob(ref.hash, [](std::string_view) { return Status::Ok(); }).code(),
            Code::kNotFound);
  // A reader asks: the live session fetches it.
  bool complete = true;
  ASSERT_TRUE(b.replica.RequestBlob(ref.hash, &complete).ok());
  EXPECT_FALSE(complete);
  ASSERT_TRUE(link.Poll().ok());
  EXPECT_EQ(Read(b.replica, ref.hash), data);
  EXPECT_TRUE(link.sb.caught_up());
}

// A device asked for a blob it lacks, and takes lazily, fetches it (a peer's request
// is a read) and tells the peer when it has it: the live session carries it on.
TEST(Blob, ALazyRelayFetchesWhatItIsAskedForAndPassesItOn) {
  Node a(1), b(2), c(3);
  const std::string data = RandomBytes(kSize, 15);
  BlobRef ref = AttachTo(a, "p", data);
  SessionOptions lazy;
  lazy.lazy_blobs = [](const std::string& coll) { return coll == "photos"; };
  {
    Link ab(a, b, {}, lazy);
    ASSERT_TRUE(ab.Run().ok());
  }
  Link bc(b, c, lazy, {});
  ASSERT_TRUE(bc.Run().ok());
  ASSERT_TRUE(c.replica.Get("photos", "p").ok());
  auto info = b.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_TRUE((*info)->requested) << "the peer's request counts as a read";
  EXPECT_EQ(bc.sb.stats().blobs_missing, 0u) << "promised, not missing";
  EXPECT_TRUE(bc.sb.complete()) << "a one-shot sync does not wait for it";
  // b's session with a fetches it, being requested now; then b's live session with c says
  // so and c asks again.
  {
    Link ab(a, b, {}, lazy);
    ASSERT_TRUE(ab.Run().ok());
    EXPECT_EQ(ab.sb.stats().blobs_received, 1u);
  }
  ASSERT_TRUE(bc.Poll().ok());
  EXPECT_TRUE(Read(c.replica, ref.hash) == data);
  EXPECT_EQ(bc.sb.stats().blobs_received, 1u);
  EXPECT_TRUE(bc.sb.complete());
}

// An eager device asked for a blob still on its way to it answers that it comes later.
TEST(Blob, ABlobStillOnItsWayIsPassedOnOnceItArrives) {
  Node a(1), b(2), c(3);
  const std::string data = RandomBytes(kBlobChunkBytes * 9 + 5, 16);
  BlobRef ref = AttachTo(a, "p", data);
  // Cut a's link to b inside the transfer.
  for (size_t cut = 6;; ++cut) {
    ASSERT_LT(cut, 100u);
    Link ab(a, b);
    ASSERT_TRUE(ab.Run(cut).ok());
    auto info = b.replica.Blob(ref.hash);
    ASSERT_TRUE(info.ok());
    if (*info) {
      ASSERT_FALSE((*info)->complete()) << "no cut fell before the transfer ended";
      break;
    }
  }
  Link bc(b, c);
  ASSERT_TRUE(bc.Run().ok());
  EXPECT_EQ(bc.sb.stats().blobs_missing, 0u);
  EXPECT_EQ(c.replica.ReadBlob(ref.hash, [](std::string_view) { return Status::Ok(); }).code(),
            Code::kNotFound);
  {
    Link ab(a, b);
    ASSERT_TRUE(ab.Run().ok());
  }
  ASSERT_TRUE(bc.Poll().ok());
  EXPECT_TRUE(Read(c.replica, ref.hash) == data);
}

// A peer of an older build, which does not read `later`, hears `missing` as before.
TEST(Blob, APeerThatCannotBeToldLaterHearsMissing) {
  Node a(1), b(2), c(3);
  BlobRef ref = AttachTo(a, "p", RandomBytes(1000, 17));
  SessionOptions lazy;
  lazy.lazy_blobs = [](const std::string& coll) { return coll == "photos"; };
  {
    Link ab(a, b, {}, lazy);
    ASSERT_TRUE(ab.Run().ok());
  }
  Link bc(b, c, lazy, {});
  bc.from_b = [](Message& m) {
    if (auto* h = std::get_if<Hello>(&m)) h->blob_later = false;
  };
  ASSERT_TRUE(bc.Run().ok());
  EXPECT_EQ(bc.sb.stats().blobs_missing, 1u);
  auto info = b.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_FALSE((*info)->requested);
  EXPECT_TRUE(bc.sb.complete());
}

TEST(Blob, ACutTransferResumesWhereItStopped) {
  Node a(1), b(2);
  const std::string data = RandomBytes(kBlobChunkBytes * 9 + 17, 6);
  BlobRef ref = AttachTo(a, "p", data);
  // Cut the link after more and more messages until some chunks are stored, not all.
  uint64_t have = 0;
  for (size_t cut = 8; have == 0; ++cut) {
    ASSERT_LT(cut, 100u);
    Link link(a, b);
    ASSERT_TRUE(link.Run(cut).ok());
    auto info = b.replica.Blob(ref.hash);
    ASSERT_TRUE(info.ok());
    if (*info) {
      ASSERT_FALSE((*info)->complete()) << "no cut fell inside the transfer";
      have = (*info)->have;
    }
  }
  EXPECT_GE(have, kBlobCommitChunks);
  // The next session fetches only the chunks not stored.
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_EQ(link.sb.stats().blob_bytes_received, data.size() - have * kBlobChunkBytes);
  EXPECT_EQ(Read(b.replica, ref.hash), data);
}

// A link cut before kBlobCommitChunks chunks arrive, every time: what was checked is
// stored as the session ends, so each session gets further.
TEST(Blob, ALinkCutSoonerThanAStoringGroupStillMakesProgress) {
  Node a(1), b(2);
  const std::string data = RandomBytes(kBlobChunkBytes * 6 + 3, 18);
  BlobRef ref = AttachTo(a, "p", data);
  auto have = [&]() -> uint64_t {
    auto info = b.replica.Blob(ref.hash);
    return info.ok() && *info ? (*info)->have : 0;
  };
  for (int round = 0; round < 3; ++round) {
    const uint64_t before = have();
    // The first cut at which this session received two chunks: fewer than a group.
    for (size_t cut = 1;; ++cut) {
      ASSERT_LT(cut, 200u);
      Link link(a, b);
      ASSERT_TRUE(link.Run(cut).ok());
      if (link.sb.stats().blob_bytes_received < 2 * kBlobChunkBytes) continue;
      EXPECT_EQ(have(), before) << "held, not stored yet";
      ASSERT_TRUE(link.sb.StoreHeld().ok());  // the link is gone
      break;
    }
    EXPECT_EQ(have(), before + 2) << "round " << round;
  }
  Link link(a, b);
  ASSERT_TRUE(link.Run().ok());
  EXPECT_EQ(link.sb.stats().blob_bytes_received, data.size() - 6 * kBlobChunkBytes);
  EXPECT_TRUE(Read(b.replica, ref.hash) == data);
}

TEST(Blob, ALyingPeerIsCaughtAndNothingOfItStored) {
  Node a(1), b(2);
  const std::string data = RandomBytes(kBlobChunkBytes * 2, 7);
  BlobRef ref = AttachTo(b, "p", data);
  {
    Link link(a, b);
    link.from_b = [](Message& m) {
      if (auto* c = std::get_if<BlobChunk>(&m); c && c->index == 1) c->bytes[3] ^= 1;
    };
    Status st = link.Run();
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << st.ToString();
    EXPECT_NE(st.message().find("does not match its hash"), std::string::npos) << st.ToString();
  }
  auto info = a.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_FALSE((*info)->complete());
  EXPECT_EQ(CountChunks(a.replica), 0u);
  {
    Link link(a, b);
    link.from_b = [](Message& m) {
      if (auto* h = std::get_if<BlobHead>(&m); h && !h->chunks.empty()) h->chunks[0][0] ^= 1;
    };
    Status st = link.Run();
    EXPECT_NE(st.message().find("chunk list does not match"), std::string::npos) << st.ToString();
  }
  Link honest(a, b);
  ASSERT_TRUE(honest.Run().ok());
  EXPECT_EQ(Read(a.replica, ref.hash), data);
}

TEST(Blob, APeerGetsOnlyBlobsItMayRead) {
  Node a(1), b(2);
  // a keeps the blob in a collection b may not read; b learned its address somehow and
  // references it from one it may.
  BlobRef ref = AttachTo(a, "p", RandomBytes(100, 8), "vault");
  ASSERT_TRUE(b.replica.Put("photos", "guess", {{"img", Value{ref}}}).ok());
  SessionOptions oa;
  oa.send = CollectionFilter::Only({"photos"});
  oa.accept = CollectionFilter::None();
  Link link(a, b, oa, {});
  ASSERT_TRUE(link.Run().ok());
  EXPECT_TRUE(link.sb.caught_up());
  EXPECT_EQ(link.sb.stats().blobs_missing, 1u);
  EXPECT_EQ(link.sa.stats().blob_bytes_sent, 0u);
  auto info = b.replica.Blob(ref.hash);
  ASSERT_TRUE(info.ok() && *info);
  EXPECT_FALSE((*info)->complete());
}

TEST(Blob, CollectedOnceUnreferencedAndEveryMemberCaughtUp) {
  Node a(1);
  const std::string data = RandomBytes(kSize, 9);
  BlobRef ref = AttachTo(a, "p", data);
  BlobRef kept = AttachTo(a, "q", RandomBytes(1000, 10));
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(a.Vv(), &stats).ok());
  EXPECT_EQ(stats.blobs_collected, 0u);
  // The field moves on: the blob is released, and goes at the next collection that
  // finds every member holding what replaced it.
  ASSERT_TRUE(a.replica.Put("photos", "p", {{"img", Value{int64_t{0}}}}).ok());
  const VersionVector before = a.Vv();
  ASSERT_TRUE(a.replica.Collect(a.Vv(), &stats).ok());
  EXPECT_EQ(stats.blobs_released, 1u);
  EXPECT_EQ(stats.blobs_collected, 0u);
  ASSERT_TRUE(a.replica.Collect(VersionVector(), &stats).ok());  // a member lags
  EXPECT_EQ(stats.blobs_collected, 0u);
  ASSERT_TRUE(a.replica.Collect(before, &stats).ok());
  EXPECT_EQ(stats.blobs_collected, 1u);
  EXPECT_EQ(stats.blob_bytes, kSize);
  EXPECT_EQ(stats.chunks_freed, 4u);
  EXPECT_EQ(CountChunks(a.replica), 1u);
  EXPECT_FALSE(a.replica.Blob(ref.hash).value());
  EXPECT_EQ(Read(a.replica, kept.hash).size(), 1000u);
}

TEST(Blob, AReferenceWrittenAgainKeepsAReleasedBlob) {
  Node a(1);
  BlobRef ref = AttachTo(a, "p", RandomBytes(5000, 11));
  ASSERT_TRUE(a.replica.Put("photos", "p", {{"img", Value{int64_t{0}}}}).ok());
  Replica::CollectStats stats;
  ASSERT_TRUE(a.replica.Collect(a.Vv(), &stats).ok());
  EXPECT_EQ(stats.blobs_released, 1u);
  // Referenced again before the next collection: it stays.
  ASSERT_TRUE(a.replica.Put("photos", "r", {{"img", Value{ref}}}).ok());
  ASSERT_TRUE(a.replica.Collect(a.Vv(), &stats).ok());
  EXPECT_EQ(stats.blobs_collected, 0u);
  EXPECT_EQ(Read(a.replica, ref.hash).size(), 5000u);
}

}  // namespace
}  // namespace tandem::engine
