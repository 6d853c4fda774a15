#include "tandem/net/secure_frame.h"

namespace tandem::net {
namespace {

void PutLength(uint32_t n, uint8_t out[4]) {
  out[0] = static_cast<uint8_t>(n >> 24);
  out[1] = static_cast<uint8_t>(n >> 16);
  out[2] = static_cast<uint8_t>(n >> 8);
  out[3] = static_cast<uint8_t>(n);
}

}  // namespace

FrameSealer::FrameSealer(const Key32& key) {
  crypto_secretstream_xchacha20poly1305_init_push(&state_, header_.data(), key.data());
}
FrameSealer::~FrameSealer() { sodium_memzero(&state_, sizeof state_); }

Status FrameSealer::Seal(std::string_view plaintext, bool final, std::string* out) {
  if (finished_) return Status::Invalid("stream: frame after the final frame");
  if (plaintext.size() > kMaxFramePlaintext)
    return Status::Invalid("stream: frame of " + std::to_string(plaintext.size()) +
                           " bytes exceeds the limit");
  uint8_t len[4];
  PutLength(static_cast<uint32_t>(plaintext.size() + kFrameTagBytes), len);
  size_t at = out->size();
  out->append(reinterpret_cast<const char*>(len), 4);
  out->resize(at + 4 + plaintext.size() + kFrameTagBytes);
  crypto_secretstream_xchacha20poly1305_push(
      &state_, reinterpret_cast<uint8_t*>(out->data() + at + 4), nullptr,
      reinterpret_cast<const uint8_t*>(plaintext.data()), plaintext.size(), len, 4,
      final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
            : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
  finished_ = final;
  return Status::Ok();
}

FrameOpener::FrameOpener(const Key32& key, std::string_view header) {
  bad_ = header.size() != kStreamHeaderBytes ||
         crypto_secretstream_xchacha20poly1305_init_pull(
             &state_, reinterpret_cast<const uint8_t*>(header.data()), key.data()) != 0;
}
FrameOpener::~FrameOpener() { sodium_memzero(&state_, sizeof state_); }

Result<size_t> FrameOpener::BodyLength(std::string_view prefix) {
  if (bad_) return Status::Unauthorized("stream: unusable after an earlier failure");
  if (finished_) return Status::Corrupt("stream: data after the final frame");
  if (prefix.size() != kFrameLengthBytes) return Status::Corrupt("stream: short length prefix");
  auto b = reinterpret_cast<const uint8_t*>(prefix.data());
  size_t n = (size_t{b[0]} << 24) | (size_t{b[1]} << 16) | (size_t{b[2]} << 8) | b[3];
  if (n < kFrameTagBytes || n > kMaxFrameCiphertext) {
    bad_ = true;
    return Status::Corrupt("stream: frame length " + std::to_string(n) + " out of range");
  }
  return n;
}

Status FrameOpener::Open(std::string_view prefix, std::string_view body, std::string* plaintext,
                         bool* final) {
  auto n = BodyLength(prefix);
  if (!n.ok()) return n.status();
  if (*n != body.size()) {
    bad_ = true;
    return Status::Corrupt("stream: frame body does not match its length");
  }
  plaintext->resize(body.size() - kFrameTagBytes);
  unsigned char tag = 0;
  if (crypto_secretstream_xchacha20poly1305_pull(
          &state_, reinterpret_cast<uint8_t*>(plaintext->data()), nullptr, &tag,
          reinterpret_cast<const uint8_t*>(body.data()), body.size(),
          reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()) != 0) {
    bad_ = true;
    plaintext->clear();
    return Status::Unauthorized(
        "stream: a frame failed authentication (modified, replayed, reordered or forged)");
  }
  if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
      tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
    bad_ = true;
    return Status::Corrupt("stream: unexpected frame tag");
  }
  *final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
  finished_ = *final;
  return Status::Ok();
}

}  // namespace tandem::net
