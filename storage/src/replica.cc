#include "tandem/storage/replica.h"

#include <sodium.h>

#include <chrono>

namespace tandem::storage {

uint64_t SystemClockMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

engine::BlobHash Blake2b256(std::string_view bytes) {
  engine::BlobHash h{};
  crypto_generichash(h.data(), h.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), nullptr, 0);
  return h;
}

engine::BlobHash Blake2b256Parts(const engine::HashInput& input) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, crypto_generichash_BYTES);
  std::string_view part;
  while (input(&part))
    crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(part.data()),
                              part.size());
  engine::BlobHash h{};
  crypto_generichash_final(&state, h.data(), h.size());
  return h;
}

Result<std::unique_ptr<engine::Replica>> CreateReplica(const std::string& dir, const Options& opt) {
  TANDEM_ASSIGN_OR_RETURN(auto store, CreateStore(dir, opt));
  return std::make_unique<engine::Replica>(std::move(store), SystemClockMs, Blake2b256Parts,
                                           opt.new_ids ? opt.new_ids : RandomReplicaId);
}

Result<std::unique_ptr<engine::Replica>> OpenReplica(const std::string& dir, const Options& opt) {
  TANDEM_ASSIGN_OR_RETURN(auto store, OpenStore(dir, opt));
  return std::make_unique<engine::Replica>(std::move(store), SystemClockMs, Blake2b256Parts,
                                           opt.new_ids ? opt.new_ids : RandomReplicaId);
}

LmdbStore& StoreOf(engine::Replica& r) { return static_cast<LmdbStore&>(r.store()); }

}  // namespace tandem::storage
