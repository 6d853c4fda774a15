#include "tandem/engine/status.h"

#include <string_view>

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

Status CheckFailed(const char* what, const char* condition, const char* file, int line) {
  std::string_view f(file);
  if (auto slash = f.rfind('/'); slash != std::string_view::npos) f.remove_prefix(slash + 1);
  return Status::Corrupt(std::string("internal check failed: ") + what + " (" + condition + ", " +
                         std::string(f) + ":" + std::to_string(line) + ")");
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

}  // namespace tandem
