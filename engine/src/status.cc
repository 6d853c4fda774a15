#include "tandem/engine/status.h"

namespace tandem {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not found";
    case Code::kInvalidArgument:
      return "invalid argument";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kUnauthorized:
      return "unauthorized";
    case Code::kIo:
      return "i/o error";
    case Code::kBusy:
      return "busy";
    case Code::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace tandem
