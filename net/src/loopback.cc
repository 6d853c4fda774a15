#include "tandem/net/loopback.h"

#include <deque>
#include <string>

#include "tandem/net/wire.h"

namespace tandem::net {

Result<LoopbackResult> SyncLoopback(engine::Replica& a, engine::Replica& b,
                                    engine::SessionOptions options_a,
                                    engine::SessionOptions options_b) {
  LoopbackResult result;
  engine::Session sa(a, std::move(options_a)), sb(b, std::move(options_b));
  std::deque<std::string> to_a, to_b;
  std::vector<engine::Message> out;
  // What each side's Hello announced, as a connection records it.
  uint32_t features_of_a = 0, features_of_b = 0;
  auto send = [&](std::deque<std::string>& q) -> Status {
    const uint32_t peer = &q == &to_b ? features_of_b : features_of_a;
    for (const auto& m : out) {
      TANDEM_ASSIGN_OR_RETURN(std::string bytes, EncodeMessage(m, {peer}));
      q.push_back(std::move(bytes));
      result.bytes += q.back().size();
      ++result.messages;
    }
    out.clear();
    return Status::Ok();
  };
  TANDEM_RETURN_IF_ERROR(sa.Start(&out));
  TANDEM_RETURN_IF_ERROR(send(to_b));
  TANDEM_RETURN_IF_ERROR(sb.Start(&out));
  TANDEM_RETURN_IF_ERROR(send(to_a));
  while (!to_a.empty() || !to_b.empty()) {
    const bool for_b = !to_b.empty();
    auto& q = for_b ? to_b : to_a;
    auto msg = DecodeMessage(q.front(), for_b ? &features_of_a : &features_of_b);
    q.pop_front();
    TANDEM_RETURN_IF_ERROR(msg.status());
    TANDEM_RETURN_IF_ERROR((for_b ? sb : sa).Receive(*msg, &out));
    TANDEM_RETURN_IF_ERROR(send(for_b ? to_a : to_b));
  }
  result.fields_applied = sa.stats().fields_applied + sb.stats().fields_applied;
  result.caught_up = sa.caught_up() && sb.caught_up();
  return result;
}

}  // namespace tandem::net
