// The encrypted transport after the handshake: each direction is one libsodium
// crypto_secretstream_xchacha20poly1305 stream keyed by the handshake's split keys.
//
//   stream  := header (24 bytes) frame* final-frame
//   frame   := length (4 bytes, big-endian: ciphertext bytes) ciphertext
//
// The length is authenticated as additional data. A plaintext holds at most
// kMaxFramePlaintext bytes; a larger length is refused before anything is read.
// secretstream's internal nonce makes a modified, replayed, reordered or dropped frame
// fail authentication; the stream ends with a frame tagged FINAL, so a connection that
// closes without one was truncated. Any failure ends the stream for good.
#pragma once

#include <sodium.h>

#include <array>
#include <string>
#include <string_view>

#include "tandem/net/handshake.h"

namespace tandem::net {

inline constexpr size_t kMaxFramePlaintext = 1 << 20;
inline constexpr size_t kFrameTagBytes = crypto_secretstream_xchacha20poly1305_ABYTES;
inline constexpr size_t kMaxFrameCiphertext = kMaxFramePlaintext + kFrameTagBytes;
inline constexpr size_t kStreamHeaderBytes = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
inline constexpr size_t kFrameLengthBytes = 4;

class FrameSealer {
 public:
  explicit FrameSealer(const Key32& key);
  ~FrameSealer();
  FrameSealer(const FrameSealer&) = delete;
  FrameSealer& operator=(const FrameSealer&) = delete;
  // Sent once, before the first frame.
  std::string_view header() const {
    return {reinterpret_cast<const char*>(header_.data()), header_.size()};
  }
  // Appends one frame to *out. After a final frame nothing more may be sealed.
  Status Seal(std::string_view plaintext, bool final, std::string* out);
  bool finished() const { return finished_; }

 private:
  crypto_secretstream_xchacha20poly1305_state state_;
  std::array<uint8_t, kStreamHeaderBytes> header_;
  bool finished_ = false;
};

class FrameOpener {
 public:
  FrameOpener(const Key32& key, std::string_view header);
  ~FrameOpener();
  FrameOpener(const FrameOpener&) = delete;
  FrameOpener& operator=(const FrameOpener&) = delete;
  // From the 4-byte prefix: how many ciphertext bytes follow. Refuses an oversized or
  // undersized frame, or any frame after the final one.
  Result<size_t> BodyLength(std::string_view prefix);
  // Authenticates and decrypts one frame. *final says it was the last.
  Status Open(std::string_view prefix, std::string_view body, std::string* plaintext, bool* final);
  bool finished() const { return finished_; }

 private:
  crypto_secretstream_xchacha20poly1305_state state_;
  bool bad_ = false;  // a bad header or an earlier failure
  bool finished_ = false;
};

}  // namespace tandem::net
