// A sync session between two replicas in one process, for the storage tests.
#pragma once

#include <deque>
#include <vector>

#include "tandem/engine/replica.h"
#include "tandem/engine/sync.h"

namespace tandem::storage {
namespace {

// How SyncOnce runs a session, and what it reports: `ended`, the session that rolled
// back where one ended so; `joined`, how many states in pieces both sides joined a part
// at a time (SessionStats::pieces_joined); `x_stats` and `y_stats`, what each counted.
struct SyncRun {
  engine::SessionOptions ox, oy;
  engine::Session** ended = nullptr;
  uint64_t* joined = nullptr;
  engine::SessionStats *x_stats = nullptr, *y_stats = nullptr;
};

// Runs a session between two replicas until neither has anything to say. Returns the
// first error of either side (the session ends there).
Status SyncOnce(engine::Replica& x, engine::Replica& y, const SyncRun& run) {
  engine::Session** ended = run.ended;
  engine::Session sx(x, run.ox), sy(y, run.oy);
  std::deque<engine::Message> to_x, to_y;
  std::vector<engine::Message> out;
  TANDEM_RETURN_IF_ERROR(sx.Start(&out));
  to_y.insert(to_y.end(), out.begin(), out.end());
  out.clear();
  TANDEM_RETURN_IF_ERROR(sy.Start(&out));
  to_x.insert(to_x.end(), out.begin(), out.end());
  while (!to_x.empty() || !to_y.empty()) {
    const bool into_x = !to_x.empty();
    auto& q = into_x ? to_x : to_y;
    engine::Message m = std::move(q.front());
    q.pop_front();
    out.clear();
    engine::Session& s = into_x ? sx : sy;
    Status st = s.Receive(m, &out);
    if (!st.ok()) {
      if (ended) *ended = s.rolled_back() ? &s : nullptr;
      return st;
    }
    auto& back = into_x ? to_y : to_x;
    back.insert(back.end(), out.begin(), out.end());
  }
  if (run.joined) *run.joined = sx.stats().pieces_joined + sy.stats().pieces_joined;
  if (run.x_stats) *run.x_stats = sx.stats();
  if (run.y_stats) *run.y_stats = sy.stats();
  if (!sx.caught_up() || !sy.caught_up()) return Status::Busy("not caught up");
  return Status::Ok();
}

Status SyncOnce(engine::Replica& x, engine::Replica& y, engine::Session** ended = nullptr,
                uint64_t* joined = nullptr) {
  SyncRun run;
  run.ended = ended;
  run.joined = joined;
  return SyncOnce(x, y, run);
}

}  // namespace
}  // namespace tandem::storage
