# The Tandem sync protocol on the wire. One Envelope per frame (frames are
# length-prefixed, at most 1 MiB; see docs/protocol.md). Readers use explicit
# ReaderOptions limits and validate every field before anything touches storage.
#
# Evolving: add fields at the end of a struct and new union members; never renumber.
# `version` is the wire schema version; the protocol version is negotiated in Hello.
@0xa4b55da49b5b8d83;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tandem::net::wire");

struct Envelope {
  version @0 :UInt16;
  body :union {
    hello @1 :Hello;
    syncRequest @2 :SyncRequest;
    deltaBatch @3 :DeltaBatch;
    caughtUp @4 :CaughtUp;
    ack @5 :Ack;
    blobWant @6 :BlobWant;
    blobHead @7 :BlobHead;
    blobChunk @8 :BlobChunk;
    blobAck @9 :BlobAck;
    digests @10 :Digests;
  }
}

struct Filter {
  all @0 :Bool;
  names @1 :List(Text);
}

struct Hello {
  protocol @0 :UInt32;
  replica @1 :Data;     # 16 bytes
  send @2 :Filter;
  accept @3 :Filter;
  features @4 :UInt32;  # what this build's decoder understands (bit 0: columnar batches,
                        # bit 1: field states in pieces, bit 2: blobs, bit 3: columns2,
                        # bit 4: takes a request in the peer's Hello,
                        # bit 5: sendFull, and reads the peer's, bit 6: reads
                        # collectedIn, bit 7: reads BlobHead.later and .ready)
  collected @5 :VersionVector;  # what the sender collected (docs/design.md#collection)
  early @6 :SyncRequest;  # the sender's request, ahead of the peer's Hello (if set)
  expect @7 :Data;        # the replica it is made for: 16 bytes, or empty for any
  # With bit 5: the sender's whole send policy, which it follows toward a peer that sets
  # bit 5 too (`send` toward one that does not). Here `all` with names means every
  # collection but those; in `send` and `accept` it means every collection.
  sendFull @8 :Filter;
  # What the sender collected in single collections beyond `collected` (ascending by
  # collection, each named once; docs/design.md#collection).
  collectedIn @9 :List(CollectedIn);
  # The sender's idle timeout in ms (0: unsaid, as from older builds): the receiver sends
  # keepalives at least every third of it.
  idleTimeoutMs @10 :UInt32;
  compare @11 :Bool;  # the sender asks for a comparison of states (with feature bit 8)
}

struct CollectedIn {
  collection @0 :Text;
  vv @1 :VersionVector;
}

struct VersionVector {
  replicas @0 :List(Data);  # 16 bytes each, ascending, no duplicates
  seqs @1 :List(UInt64);    # same length, each >= 1
}

struct SyncRequest {
  vv @0 :VersionVector;
  cursor @1 :UInt64;
  holdsOfYours @2 :UInt64;  # the receiver's newest event the requester holds (0: unknown)
  mark @3 :UInt64;          # where the receiver's log ended when the requester last read it
  whole @4 :Bool;           # a rebase: every field state from cursor 0, whatever vv covers
  pieceOffset @5 :UInt64;   # bytes the requester holds of a state in pieces at cursor
  pieceDigest @6 :Data;     # that state's digest (32 bytes) when pieceOffset > 0
}

# Field states travel in Tandem's own compact encoding (docs/format.md) inside `entries`,
# so dots, clocks and keys cost bytes rather than 8-byte words. Layout `rows`:
#   entries := (varint collection_name varint record_len record varint field_name state)*
# where names index `names` and states name replicas by index into `replicas`. Layouts
# `columns` and `columns2`: the same entries split into columns (docs/protocol.md, "Batch
# bodies").
struct DeltaBatch {
  from @0 :UInt64;
  cursor @1 :UInt64;
  replicas @2 :List(Data);
  names @3 :List(Text);
  entries @4 :Data;
  compression @5 :Compression;  # of `entries`
  rawSize @6 :UInt32;           # size of `entries` once decompressed
  layout @7 :Layout;            # of `entries` once decompressed
  # Instead of entries (which are then empty): a piece of one field state too large for
  # a batch, sent only to a peer whose Hello announced pieces (docs/protocol.md).
  pieceTotal @8 :UInt64;        # bytes of the whole state's encoding; 0: no piece
  pieceOffset @9 :UInt64;
  piece @10 :Data;
  mark @11 :UInt64;             # the newest position in the sender's log as it read it
  pieceDigest @12 :Data;        # BLAKE2b-256 of the whole state's encoding (with a piece)
}

enum Compression {
  none @0;
  zstd @1;
}

# `columns` only to a peer whose Hello announced it (older builds read rows alone);
# `columns2` (logical clocks as differences) likewise.
enum Layout {
  rows @0;
  columns @1;
  columns2 @2;
}

struct CaughtUp {
  cursor @0 :UInt64;
  vv @1 :VersionVector;
  collected @2 :VersionVector;  # what the sender had collected when it sent this
}

struct Ack {
  cursor @0 :UInt64;
}

# Blob transfer (docs/protocol.md#blobs), only between peers whose Hello announced blobs.
# Hashes are 32 bytes of BLAKE2b.
struct BlobWant {
  hash @0 :Data;
  collection @1 :Text;  # the field of the requester's that references the blob
  record @2 :Text;
  field @3 :Text;
  from @4 :UInt64;      # the first chunk wanted
  list @5 :Bool;        # send the chunk list
  idle @6 :Bool;        # instead: the requester wants nothing more for now
}

struct BlobHead {
  hash @0 :Data;
  missing @1 :Bool;
  size @2 :UInt64;
  chunks @3 :Data;      # the chunk hashes, 32 bytes each, when asked for
  # With feature bit 7 only. With `missing`: the sender is fetching it, and says `ready`
  # once it is here (or no longer coming).
  later @4 :Bool;
  ready @5 :Bool;       # instead of an answer: a blob promised `later` may be asked again
}

struct BlobChunk {
  hash @0 :Data;
  index @1 :UInt64;
  bytes @2 :Data;
}

struct BlobAck {
  hash @0 :Data;
  index @1 :UInt64;
}

# What the sender's field states mean, per collection (docs/protocol.md#comparing-states).
struct Digests {
  comparable @0 :Bool;
  vv @1 :VersionVector;
  collections @2 :List(Text);  # ascending, no duplicates
  sums @3 :Data;               # 16 bytes per collection, none all zero
  hull @4 :VersionVector;      # what the sender's written field states have seen
  repair @5 :Bool;             # the sender saw a difference: the receiver ends the session
}
