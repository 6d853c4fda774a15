// Blobs: content too large for a field (photos, PDFs), stored in the replica apart from
// the fields and referenced from them by a BlobRef value (value.h).
//
// A blob is cut into chunks of kBlobChunkBytes (the last one shorter). Each chunk is
// stored once, under its own hash, whatever blobs share it; a blob's entry lists its
// chunks' hashes. Its address is BlobId: BLAKE2b-256 over a domain tag, its size and the
// chunk hashes in order. So a receiver checks the chunk list against the address it
// asked for, then each chunk against the list as it arrives: nothing unverified is ever
// stored, and a transfer cut short resumes at the first chunk it lacks
// (docs/design.md#attachments, docs/format.md).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/engine/field.h"
#include "tandem/engine/ids.h"
#include "tandem/engine/value.h"

namespace tandem::engine {

inline constexpr size_t kBlobChunkBytes = 512 << 10;
inline constexpr uint64_t kMaxBlobChunks = (kMaxBlobBytes + kBlobChunkBytes - 1) / kBlobChunkBytes;

// Hands out bytes to hash in order, a part per call; false once none is left.
using HashInput = std::function<bool(std::string_view* part)>;
// BLAKE2b-256 (unkeyed, 32 bytes) of the bytes `input` hands out, as if joined: how
// chunks and field-state pieces are named and checked (a state in pieces is hashed a
// piece at a time, never joined). Injected, as the engine has no cryptography of its
// own; storage supplies libsodium's (storage::Blake2b256Parts).
using ContentHash = BlobHash (*)(const HashInput& input);
// Of one run of bytes.
BlobHash HashOf(ContentHash hash, std::string_view bytes);
// A blob's address from its size and its chunks' hashes: `hash` over the domain tag
// "tandem blob 1" with its NUL, the size (8 bytes, little-endian) and the hashes in order.
BlobHash BlobId(ContentHash hash, uint64_t size, const std::vector<BlobHash>& chunks);
// The address of the empty blob (BlobId of size 0 and no chunks): every replica holds it
// without fetching it, as it has nothing to fetch.
inline constexpr BlobHash kEmptyBlob = {
    0x63, 0x87, 0xa7, 0x7a, 0xd8, 0xa0, 0xfe, 0x05, 0xf6, 0x88, 0x62, 0x67, 0xd2, 0xfb, 0x65, 0x23,
    0x20, 0x9a, 0xda, 0x04, 0xd5, 0x6f, 0xa7, 0x59, 0xb9, 0xf1, 0xc8, 0xf0, 0x0f, 0x17, 0xde, 0x8e};
// How many chunks a blob of `size` bytes has (an empty blob has none).
inline uint64_t ChunkCount(uint64_t size) { return (size + kBlobChunkBytes - 1) / kBlobChunkBytes; }

// What a replica knows of one blob: an entry of its blob table.
//   complete  every chunk is stored: it can be read and served
//   wanted    a field references it and some chunks (or the chunk list) are missing;
//             `have` chunks, a prefix, are stored
//   pending   a local write in progress (Replica::WriteBlob), under a temporary key: its
//             chunks so far, kept from collection for a day
//   state     a field state stored out of line (WriteTxn::PutFieldOutOfLine), under a key
//             of its own: its chunks, which go with the field's value (the store removes
//             the entry when it replaces or removes that value)
struct BlobInfo {
  enum class State : uint8_t { kComplete = 1, kWanted = 2, kPending = 3, kState = 4 };
  State state = State::kWanted;
  uint64_t size = 0;
  bool listed = false;           // `chunks` is known (always, unless wanted)
  std::vector<BlobHash> chunks;  // each chunk's hash, in order
  uint64_t have = 0;             // chunks stored, from the first
  // Fields that referenced it when it was wanted, newest first, at most kMaxWantRefs:
  // it is asked for through one that still does (the peer checks it may send it).
  std::vector<FieldKey> refs;
  static constexpr size_t kMaxWantRefs = 8;
  bool requested = false;  // wanted, and a reader asked for it (lazy fetching)
  // No field referenced it when collection last looked: this replica's version vector
  // then. It goes once every member holds that (they hold what replaced the reference).
  std::optional<VersionVector> released;
  uint64_t touched_ms = 0;  // last change (pending writes older than a day are abandoned)

  bool complete() const { return state == State::kComplete; }
  bool operator==(const BlobInfo&) const = default;
};
std::string EncodeBlobInfo(const BlobInfo& info);
Result<BlobInfo> DecodeBlobInfo(std::string_view bytes);

// Every blob reference among the state's current values (register siblings, set
// elements), in no particular order, possibly repeated.
void ForEachBlobRef(const FieldState& s, const std::function<void(const BlobRef&)>& fn);

// Streams: a source fills `buf` with up to `cap` bytes and returns how many (0: the end);
// a sink takes the bytes in order.
using BlobSource = std::function<Result<size_t>(char* buf, size_t cap)>;
using BlobSink = std::function<Status(std::string_view bytes)>;

}  // namespace tandem::engine
