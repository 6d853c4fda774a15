// Collection in a running node: now and then, report what this replica holds, and less
// often collect what every member holds (net/collect.h), on the storage worker.
#include "node_internal.h"

namespace tandem::net {

awaitable<void> Core::CollectLoop() {
  const int collect_s = opt_.collect_interval_s;
  int report_s = opt_.report_interval_s > 0 ? opt_.report_interval_s : collect_s;
  if (collect_s > 0) report_s = std::min(report_s, collect_s);
  asio::steady_timer t(io_);
  int64_t since_collect = 0;
  while (!stopping_) {
    t.expires_after(seconds(report_s));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    if (stopping_) break;
    since_collect += report_s;
    if (collect_s <= 0 || since_collect < collect_s) {
      // Only the report (written when the vector moved).
      Status st = co_await OnWorker(
          [&] { return ReportAndNote(replica_, opt_.files, self_device_, WallMs()); });
      if (!st.ok()) Log("report failed: " + st.ToString(), LogLevel::kError);
      continue;
    }
    since_collect = 0;
    GroupCollect done;
    Status st = co_await OnWorker([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(
          done, CollectGroup(replica_, opt_.files, self_device_, WallMs(), opt_.horizon_ms));
      return Status::Ok();
    });
    if (!st.ok()) {
      Log("collection failed: " + st.ToString(), LogLevel::kError);
    } else if (done.stats.collected) {
      Log("collected " + std::to_string(done.stats.collected) + " deleted field states (" +
          std::to_string(done.stats.bytes) + " bytes) every member holds");
      Notify();
    }
  }
}

}  // namespace tandem::net
