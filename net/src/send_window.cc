#include "tandem/net/send_window.h"

#include <algorithm>
#include <cmath>

namespace tandem::net {
namespace {
constexpr size_t kRateSamples = 16;  // the maximum is over this many recent acks
}

SendWindow::SendWindow(size_t initial_batches, size_t max_batches, size_t max_bytes,
                       size_t floor_batches)
    : initial_(std::max<size_t>(1, initial_batches)),
      max_batches_(std::max(initial_, max_batches)),
      max_bytes_(max_bytes),
      floor_(floor_batches == 0 ? initial_ : std::min(floor_batches, initial_)),
      window_(initial_) {}

void SendWindow::Sent(uint64_t cursor, size_t bytes, double now_s) {
  if (delivered_time_ < 0) delivered_time_ = now_s;
  flights_.push_back({cursor, bytes, now_s, delivered_, delivered_time_});
  avg_bytes_ = avg_bytes_ == 0 ? static_cast<double>(bytes)
                               : 0.875 * avg_bytes_ + 0.125 * static_cast<double>(bytes);
}

size_t SendWindow::Acked(uint64_t cursor, double now_s) {
  // Acknowledgements come in order; anything older than `cursor` was acknowledged with it.
  while (!flights_.empty() && flights_.front().cursor != cursor) {
    delivered_ += flights_.front().bytes;
    flights_.pop_front();
  }
  if (flights_.empty()) return window_;
  const Flight f = flights_.front();
  flights_.pop_front();
  delivered_ += f.bytes;
  delivered_time_ = now_s;
  const double rtt = now_s - f.sent;
  if (rtt > 0 && (min_rtt_ == 0 || rtt < min_rtt_)) min_rtt_ = rtt;
  const double interval = now_s - f.delivered_time_at_send;
  if (interval > 0) {
    rates_.push_back(static_cast<double>(delivered_ - f.delivered_at_send) / interval);
    if (rates_.size() > kRateSamples) rates_.pop_front();
    max_rate_ = *std::max_element(rates_.begin(), rates_.end());
  }
  if (min_rtt_ > 0 && max_rate_ > 0 && avg_bytes_ > 0) {
    const double want = 2 * max_rate_ * min_rtt_;  // bytes in flight
    const double cap = std::min(static_cast<double>(max_batches_),
                                std::floor(static_cast<double>(max_bytes_) / avg_bytes_));
    const double batches = std::ceil(want / avg_bytes_);
    window_ = static_cast<size_t>(
        std::max(static_cast<double>(floor_), std::min(batches, std::max(cap, 1.0))));
  }
  return window_;
}

}  // namespace tandem::net
