#include "tandem/net/loopback.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

#include "tandem/net/wire.h"

namespace tandem::net {

namespace {

// The two sides of a loopback sync, each on its own thread as two devices would be (one
// applies and commits a batch while the other reads and encodes the next), exchanging
// encoded messages through two queues. Done when both queues are empty and neither side
// is handling a message, or at the first error.
class Loopback {
 public:
  Loopback(engine::Replica& a, engine::Replica& b, engine::SessionOptions oa,
           engine::SessionOptions ob)
      : sides_{Side{engine::Session(a, std::move(oa)), {}, 0},
               Side{engine::Session(b, std::move(ob)), {}, 0}} {}

  Result<LoopbackResult> Run() {
    for (int i = 0; i < 2; ++i) {
      std::vector<engine::Message> out;
      Status st = sides_[i].session.Start(&out);
      if (st.ok()) st = Send(i, out);
      if (!st.ok()) return st;
    }
    {
      std::jthread other([this] { Serve(1); });  // joined however Serve(0) ends
      Serve(0);
    }
    if (!error_.ok()) return error_;
    LoopbackResult result;
    result.messages = messages_;
    result.bytes = bytes_;
    result.fields_applied =
        sides_[0].session.stats().fields_applied + sides_[1].session.stats().fields_applied;
    result.caught_up = sides_[0].session.caught_up() && sides_[1].session.caught_up();
    return result;
  }

 private:
  struct Side {
    engine::Session session;
    std::deque<std::string> inbox;
    // What the other side's Hello announced, as a connection records it: written and
    // read only by this side's thread (it decodes the other's messages and encodes its
    // own).
    uint32_t peer_features = 0;
  };

  // Encodes `out` from side `from` into the other side's inbox.
  Status Send(int from, const std::vector<engine::Message>& out) {
    std::vector<std::string> encoded;
    for (const auto& m : out) {
      TANDEM_ASSIGN_OR_RETURN(std::string bytes, EncodeMessage(m, {sides_[from].peer_features}));
      encoded.push_back(std::move(bytes));
    }
    std::lock_guard lock(mu_);
    for (auto& bytes : encoded) {
      bytes_ += bytes.size();
      ++messages_;
      sides_[1 - from].inbox.push_back(std::move(bytes));
    }
    return Status::Ok();
  }

  void Serve(int i) {
    Side& side = sides_[i];
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !side.inbox.empty() || Quiet(); });
      if (Quiet()) break;
      std::string bytes = std::move(side.inbox.front());
      side.inbox.pop_front();
      ++busy_;
      lock.unlock();
      Status st;
      try {  // out of memory, say: the other side must not wait for this one for ever
        st = Handle(i, bytes);
      } catch (const std::exception& e) {
        st = Status::Io(std::string("loopback: ") + e.what());
      }
      lock.lock();
      --busy_;
      if (!st.ok() && error_.ok()) error_ = st;
      cv_.notify_all();
    }
    cv_.notify_all();
  }

  Status Handle(int i, const std::string& bytes) {
    Side& side = sides_[i];
    auto msg = DecodeMessage(bytes, &side.peer_features);
    TANDEM_RETURN_IF_ERROR(msg.status());
    std::vector<engine::Message> out;
    TANDEM_RETURN_IF_ERROR(side.session.Receive(*msg, &out));
    return Send(i, out);
  }

  // Under mu_: nothing left to do, or an error ends it.
  bool Quiet() const {
    return !error_.ok() || (busy_ == 0 && sides_[0].inbox.empty() && sides_[1].inbox.empty());
  }

  Side sides_[2];
  std::mutex mu_;
  std::condition_variable cv_;
  int busy_ = 0;
  Status error_;
  uint64_t messages_ = 0, bytes_ = 0;
};

}  // namespace

Result<LoopbackResult> SyncLoopback(engine::Replica& a, engine::Replica& b,
                                    engine::SessionOptions options_a,
                                    engine::SessionOptions options_b) {
  Loopback loop(a, b, std::move(options_a), std::move(options_b));
  return loop.Run();
}

}  // namespace tandem::net
