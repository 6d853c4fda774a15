// The send window follows the link's bandwidth-delay product.
#include "tandem/net/send_window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

namespace tandem::net {
namespace {

struct LinkResult {
  size_t final_window = 0;
  double second_half_rate = 0;  // bytes/s delivered over the second half of the transfer
};

// A sender keeping `window` batches of `batch` bytes in flight over a link of `rate`
// bytes/s and round trip `rtt` s (a FIFO: each batch is serialised after the previous
// one, then acknowledged half a round trip after it fully arrives... plus the way back).
LinkResult RunLink(double rate, double rtt, size_t batch, int batches, SendWindow& w) {
  double now = 0, link_free = 0;
  std::deque<std::pair<double, uint64_t>> acks;  // (arrival time of the ack, cursor)
  uint64_t next = 1;
  int acked = 0;
  double half_time = 0;
  LinkResult r;
  while (acked < batches) {
    while (static_cast<int>(next) <= batches && next - 1 - acked < w.window()) {
      w.Sent(next, batch, now);
      const double start = std::max(now + rtt / 2, link_free);  // reaches the bottleneck
      link_free = start + static_cast<double>(batch) / rate;
      acks.emplace_back(link_free + rtt / 2, next);
      ++next;
    }
    now = acks.front().first;
    w.Acked(acks.front().second, now);
    acks.pop_front();
    if (++acked == batches / 2) half_time = now;
  }
  r.final_window = w.window();
  r.second_half_rate = static_cast<double>(batch) * (batches - batches / 2) / (now - half_time);
  return r;
}

TEST(SendWindow, GrowsToFillALongFatLink) {
  // 2 MB/s and 200 ms: 400 KB in flight fill it, 27 batches of 15 KB.
  SendWindow w(4, 64, 16 << 20);
  auto r = RunLink(2e6, 0.2, 15000, 400, w);
  EXPECT_GE(r.final_window, 27u);
  EXPECT_LE(r.final_window, 64u);
  EXPECT_GT(r.second_half_rate, 0.95 * 2e6) << "the link is not kept busy";
  EXPECT_NEAR(w.min_rtt_s(), 0.2 + 15000 / 2e6, 0.01);
}

TEST(SendWindow, WithTheInitialWindowTheSameLinkIdles) {
  // What the adaptive window buys: four batches per round trip.
  SendWindow w(4, 4, 16 << 20);
  auto r = RunLink(2e6, 0.2, 15000, 400, w);
  EXPECT_EQ(r.final_window, 4u);
  EXPECT_LT(r.second_half_rate, 0.5 * 2e6);
}

TEST(SendWindow, StaysSmallOnAFastShortLink) {
  // 1 GB/s, 0.2 ms (plus 65 us to serialise a batch): the product is 265 KB.
  SendWindow w(4, 64, 16 << 20);
  auto r = RunLink(1e9, 0.0002, 65536, 400, w);
  EXPECT_LE(r.final_window, 12u);  // twice the product, in 64 KiB batches
  EXPECT_GE(r.final_window, 4u);
}

TEST(SendWindow, AWideFirstFlightShrinksToItsFloorOnAThinLink) {
  // 50 KB/s and 200 ms want one 15 KB batch in flight: from 16, down to the floor of 4
  // (without a floor, the first window would stay).
  SendWindow w(16, 64, 16 << 20, 4);
  EXPECT_EQ(w.window(), 16u);
  auto r = RunLink(5e4, 0.2, 15000, 100, w);
  EXPECT_EQ(r.final_window, 4u);
  SendWindow stays(16, 64, 16 << 20);
  r = RunLink(5e4, 0.2, 15000, 100, stays);
  EXPECT_EQ(r.final_window, 16u);
}

TEST(SendWindow, MemoryStaysBounded) {
  // 100 MB/s and 300 ms would want 60 MB in flight: at most 16 MiB (64 of 256 KiB).
  SendWindow w(4, 64, 16 << 20);
  auto r = RunLink(1e8, 0.3, 1 << 20, 200, w);
  EXPECT_LE(r.final_window * (1u << 20), 16u << 20);
  SendWindow few(4, 10, 1 << 30);
  r = RunLink(1e8, 0.3, 1 << 16, 200, few);
  EXPECT_EQ(r.final_window, 10u);
}

TEST(SendWindow, AcknowledgementsOutOfOrderOrUnknownDoNotBreakIt) {
  SendWindow w(4, 64, 16 << 20);
  w.Sent(10, 1000, 0.0);
  w.Sent(20, 1000, 0.0);
  EXPECT_EQ(w.Acked(99, 0.1), 4u);  // unknown: everything is taken as acknowledged
  EXPECT_EQ(w.Acked(20, 0.2), 4u);  // nothing left in flight
  w.Sent(30, 1000, 0.3);
  EXPECT_GE(w.Acked(30, 0.4), 4u);
}

}  // namespace
}  // namespace tandem::net
