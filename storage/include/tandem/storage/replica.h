// Opening a replica directory as an engine::Replica (the local API), with the system
// clock. This is the entry point for apps and the CLI.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "tandem/engine/replica.h"
#include "tandem/storage/lmdb_store.h"

namespace tandem::storage {

// Milliseconds since the Unix epoch from the system clock.
uint64_t SystemClockMs();
// BLAKE2b-256 (libsodium) of some bytes, and of the parts `input` hands out: the content
// hash of every replica opened here (engine::ContentHash), and of the checks that verify
// blobs.
engine::BlobHash Blake2b256(std::string_view bytes);
engine::BlobHash Blake2b256Parts(const engine::HashInput& input);

Result<std::unique_ptr<engine::Replica>> CreateReplica(const std::string& dir,
                                                       const Options& opt = {});
Result<std::unique_ptr<engine::Replica>> OpenReplica(const std::string& dir,
                                                     const Options& opt = {});

// The LmdbStore under a replica opened by the functions above.
LmdbStore& StoreOf(engine::Replica& r);

}  // namespace tandem::storage
