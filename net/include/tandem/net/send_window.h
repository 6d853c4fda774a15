// Sizing a sync session's send window to its link.
//
// A session keeps at most `window` batches unacknowledged. A few fill a LAN, but on a
// link of 200 ms round trip they leave it idle most of the time: the sync is bound by
// round trips, not bytes. SendWindow measures each connection's bandwidth-delay product
// from the acknowledgements of the batches it sends, as BBR does for TCP: the delivery
// rate of each acknowledged batch (bytes acknowledged since it was sent, over the time
// since then), the highest of the recent ones, times the lowest round trip seen; and
// asks for twice that in flight, in batches of the average size sent. While the window,
// not the link, limits the rate, each round trip doubles it (the measured rate is the
// window's), until the link's rate shows; it never drops below its floor, and
// each connection's memory in flight stays bounded by max_batches and max_bytes (by the
// average batch size; a batch is at most 256 KiB before compression).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace tandem::net {

class SendWindow {
 public:
  // It starts at `initial_batches` and never drops below `floor_batches` (0: the
  // initial window).
  SendWindow(size_t initial_batches, size_t max_batches, size_t max_bytes,
             size_t floor_batches = 0);

  // A batch ending at `cursor`, `bytes` long on the wire, was sent at `now_s` (seconds).
  void Sent(uint64_t cursor, size_t bytes, double now_s);
  // The peer acknowledged the batch ending at `cursor` at `now_s`. Returns the window.
  size_t Acked(uint64_t cursor, double now_s);

  size_t window() const { return window_; }
  double min_rtt_s() const { return min_rtt_; }          // 0 until measured
  double rate_bytes_per_s() const { return max_rate_; }  // 0 until measured

 private:
  struct Flight {
    uint64_t cursor;
    size_t bytes;
    double sent;
    uint64_t delivered_at_send;     // bytes acknowledged when it was sent
    double delivered_time_at_send;  // when the last of those was acknowledged
  };
  const size_t initial_, max_batches_, max_bytes_, floor_;
  size_t window_;
  std::deque<Flight> flights_;
  std::deque<double> rates_;  // recent delivery-rate samples, for their maximum
  uint64_t delivered_ = 0;
  double delivered_time_ = -1;  // -1: nothing sent yet
  double min_rtt_ = 0, max_rate_ = 0, avg_bytes_ = 0;
};

}  // namespace tandem::net
