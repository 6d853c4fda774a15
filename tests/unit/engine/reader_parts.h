// Bytes handed to a Reader in parts of a given size, as a field state in pieces is (for
// the codec's tests and the field-state fuzz target).
#pragma once

#include <algorithm>
#include <string>
#include <string_view>

#include "tandem/engine/codec.h"

namespace tandem::engine {

class Parts : public Reader::More {
 public:
  Parts(std::string_view bytes, size_t size) : rest_(bytes), size_(size) {}
  bool Append(std::string* out) override {
    if (rest_.empty()) return false;
    const size_t n = std::min(size_, rest_.size());
    out->append(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return true;
  }
  size_t left() const override { return rest_.size(); }

 private:
  std::string_view rest_;
  size_t size_;
};

}  // namespace tandem::engine
