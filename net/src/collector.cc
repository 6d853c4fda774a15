// Collection in a running node: now and then, report what this replica holds and collect
// what every member holds (net/collect.h), on the storage worker.
#include "node_internal.h"

namespace tandem::net {

awaitable<void> Core::CollectLoop() {
  asio::steady_timer t(io_);
  while (!stopping_) {
    t.expires_after(seconds(opt_.collect_interval_s));
    boost::system::error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
    if (stopping_) break;
    GroupCollect done;
    Status st = co_await OnWorker([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(
          done, CollectGroup(replica_, opt_.files, self_device_, WallMs(), opt_.horizon_ms));
      return Status::Ok();
    });
    if (!st.ok()) {
      Log("collection failed: " + st.ToString());
    } else if (done.stats.collected) {
      Log("collected " + std::to_string(done.stats.collected) + " deleted field states (" +
          std::to_string(done.stats.bytes) + " bytes) every member holds");
      Notify();
    }
  }
}

}  // namespace tandem::net
