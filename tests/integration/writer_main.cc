// Test helper: writes to a replica in a loop, printing each write after its commit
// returns. Each write is one transaction: record w/r<i> gets v=i and the counter
// w/total.n grows by one, so after any crash total.n must equal the number of r records.
//
//   tandem_test_writer DIR [COUNT]    COUNT writes then exit (default: until killed)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tandem/storage/replica.h"

using namespace tandem;

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  storage::Options opt;
  opt.initial_map_bytes = 128 << 10;  // tiny, so the map must grow under the writes
  auto r = storage::OpenReplica(argv[1], opt);
  if (!r.ok()) {
    std::fprintf(stderr, "writer: %s\n", r.status().ToString().c_str());
    return 1;
  }
  long count = argc > 2 ? std::atol(argv[2]) : -1;
  int64_t start = 0;
  if (auto total = (*r)->Get("w", "total"); total.ok()) start = total->fields.at("n").count;
  for (int64_t i = start; count < 0 || i < start + count; ++i) {
    Status st = (*r)->Write([&](engine::Batch& b) {
      TANDEM_RETURN_IF_ERROR(b.Put("w", "r" + std::to_string(i), "v", engine::Value{i}));
      // Some bulk, so the map fills and grows.
      TANDEM_RETURN_IF_ERROR(
          b.Put("w", "r" + std::to_string(i), "pad", engine::Value{std::string(300, 'x')}));
      return b.Incr("w", "total", "n", 1);
    });
    if (!st.ok()) {
      std::fprintf(stderr, "writer: %s\n", st.ToString().c_str());
      return 1;
    }
    std::printf("%lld\n", static_cast<long long>(i));
    std::fflush(stdout);
  }
  return 0;
}
