#include "node_internal.h"
// (node_internal.h first: it includes Asio, which must precede other includes.)
#include <sodium.h>

namespace tandem::net {

awaitable<std::string> Conn::ReadHandshake() {
  uint8_t len[2];
  co_await asio::async_read(sock_, asio::buffer(len, 2), use_awaitable);
  size_t n = (size_t{len[0]} << 8) | len[1];
  if (n == 0 || n > kMaxHandshakeMessage) {
    // Text where a length should be: another kind of server ("HTTP/1.1 ...", "SSH-2.0").
    auto printable = [](uint8_t c) { return c >= 0x20 && c < 0x7f; };
    if (printable(len[0]) && printable(len[1]))
      throw std::runtime_error("the peer does not speak Tandem's protocol (it began with \"" +
                               std::string(reinterpret_cast<const char*>(len), 2) +
                               "\": another kind of server at that address?)");
    throw std::runtime_error("handshake message of " + std::to_string(n) + " bytes");
  }
  std::string m(n, '\0');
  co_await asio::async_read(sock_, asio::buffer(m), use_awaitable);
  bytes_in_ += 2 + n;
  co_return m;
}

awaitable<void> Conn::WriteHandshake(const std::string& m) {
  std::string buf;
  buf.push_back(static_cast<char>(m.size() >> 8));
  buf.push_back(static_cast<char>(m.size()));
  buf += m;
  co_await asio::async_write(sock_, asio::buffer(buf), use_awaitable);
  bytes_out_ += buf.size();
}

awaitable<bool> Conn::HandshakeAsInitiator(Key32* send, Key32* recv) {
  // A copy: another connection may redeem the invite while this one waits.
  const std::optional<Invite> join = d_.join();
  // The current group key, or on a retry one it replaced (a peer that has not heard of
  // the rotation yet hears of it in this session).
  const std::vector<Key32> group_keys = d_.accepted_keys();
  Key32 psk = group_keys[std::min(key_index_, group_keys.size() - 1)];
  PskKind kind = PskKind::kGroup;
  InviteId invite{};
  if (join) {
    invite_mode_ = true;
    expect_welcome_ = true;
    psk = InvitePsk(join->secret);
    kind = PskKind::kInvite;
    invite = InviteIdOf(join->secret);
  }
  auto hs = Handshake::Initiator(d_.self(), psk, kind, invite);
  auto m1 = hs.Write();
  if (!m1.ok()) {
    Fail(m1.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m1);
  std::string m2;
  try {
    m2 = co_await ReadHandshake();
    if (m2 == kBusyMessage) {
      Fail("the peer is overloaded (too many connections waiting for a handshake); try again");
      co_return false;
    }
  } catch (const boost::system::system_error&) {
    closed_at_first_gate_ = !invite_mode_;
    Fail(invite_mode_ ? "the peer closed the connection during the handshake: it did not "
                        "accept the invite (not the inviter, or the invite was used or "
                        "expired)"
                      : "the peer closed the connection during the handshake (a wrong "
                        "group key, or this device is not a member or was revoked; or "
                        "nothing answers behind the address, such as a relay whose other "
                        "end is gone)");
    co_return false;
  }
  Status st = hs.Read(m2);
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  peer_key_ = hs.peer_key();
  if (invite_mode_) {
    if (*peer_key_ != join->inviter) {
      Refuse("the peer is not the device that made the invite");
      co_return false;
    }
  } else {
    const Trust t = d_.TrustOf(*peer_key_);
    if (t != Trust::kMember) {
      Refuse(t == Trust::kRevoked ? "the peer's device has been revoked"
                                  : "the peer's device is not a member of this group");
      co_return false;
    }
  }
  auto m3 = hs.Write();
  if (!m3.ok()) {
    Fail(m3.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m3);
  auto keys = hs.Split();
  *send = keys.send;
  *recv = keys.recv;
  sodium_memzero(&keys, sizeof keys);
  sodium_memzero(psk.data(), psk.size());
  co_return true;
}

awaitable<bool> Conn::HandshakeAsResponder(Key32* send, Key32* recv) {
  std::string m1 = co_await ReadHandshake();
  auto hdr = PeekFirstMessage(m1);
  if (!hdr.ok()) {
    Refuse("not a tandem handshake");
    co_return false;
  }
  // The PSKs the first gate accepts: the invite's, or the group key and, after a
  // rotation, the keys it replaced for the grace period. A wrong key costs one MAC each,
  // never a Diffie-Hellman.
  std::vector<Key32> psks = d_.accepted_keys();
  InviteId invite{};
  if (hdr->kind == PskKind::kInvite) {
    auto open = FindInvite(d_.options().files, hdr->invite, WallMs());
    if (!open.ok()) {
      Refuse("invite: " + open.status().message());
      co_return false;
    }
    psks = {InvitePsk(open->secret)};
    invite_role_ = open->role;
    invite = hdr->invite;
    invite_mode_ = true;
  }
  auto hs = Handshake::Responder(d_.self(), psks.front());
  Status st = hs.Read(m1);
  for (size_t i = 1; !st.ok() && i < psks.size(); ++i) {
    hs = Handshake::Responder(d_.self(), psks[i]);
    st = hs.Read(m1);
  }
  for (auto& k : psks) sodium_memzero(k.data(), k.size());
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  // A recorded message 1 passes mac1 again; refuse it before any Diffie-Hellman.
  if (!d_.FirstSeen(m1)) {
    Refuse("a replayed first handshake message");
    co_return false;
  }
  d_.Vouch(shared_from_this());
  Touch(d_.vouched_timeout());
  auto m2 = hs.Write();
  if (!m2.ok()) {
    Refuse(m2.status().message());
    co_return false;
  }
  co_await WriteHandshake(*m2);
  std::string m3 = co_await ReadHandshake();
  st = hs.Read(m3);
  if (!st.ok()) {
    Refuse(st.message());
    co_return false;
  }
  peer_key_ = hs.peer_key();
  const Trust t = d_.TrustOf(*peer_key_);
  if (t == Trust::kRevoked) {
    Refuse("the device has been revoked");
    co_return false;
  }
  if (invite_mode_) {
    // Burning is atomic across processes: exactly one redemption wins. Both writes wait
    // for the disk: on the storage worker, so that other connections do not.
    // This device may have lost the authority since it made the invite.
    st = co_await d_.OnWorker([&]() -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto a, ReadAuthority(d_.replica(), d_.options().files));
      return MayInvite(a, d_.self().public_key, invite_role_);
    });
    if (!st.ok()) {
      Refuse("invite: " + st.message());
      co_return false;
    }
    st = co_await d_.OnWorker([&] { return BurnInvite(d_.options().files, invite); });
    if (!st.ok()) {
      Refuse("invite: " + st.message());
      co_return false;
    }
    st = co_await d_.OnWorker([&] {
      return Grant(d_.replica(), d_.options().files, d_.self(), *peer_key_, invite_role_, WallMs());
    });
    if (!st.ok()) {
      Fail(st.ToString());
      co_return false;
    }
    d_.RefreshTrust();
    d_.Log("invite redeemed: added " + DeviceId(*peer_key_) + " to the group");
    d_.Emit({NodeEventKind::kInviteRedeemed, DeviceId(*peer_key_), address_, ""});
  } else if (t != Trust::kMember) {
    Refuse("the device is not a member of this group");
    co_return false;
  }
  auto keys = hs.Split();
  *send = keys.send;
  *recv = keys.recv;
  co_return true;
}

}  // namespace tandem::net
