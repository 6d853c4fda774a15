// Expected failures as values.
//
// Every fallible operation in Tandem returns a Status or a Result<T>. The code tells
// the caller what to do next; the message is for humans. Invariants that damaged state
// or a misbehaving caller could break are TANDEM_CHECKs, on in every build: they fail
// the operation with a kCorrupt Status instead of going on with broken data. assert is
// only for cheap checks of this module's own logic, in debug builds.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace tandem {

enum class Code {
  kOk = 0,
  kNotFound,         // the thing asked for does not exist
  kInvalidArgument,  // the caller passed something malformed; fix the input
  kCorrupt,          // stored or received bytes are damaged or not ours
  kUnauthorized,     // a peer or key is not trusted
  kIo,               // the OS failed; retrying may help
  kBusy,             // transient contention; retry (or once what holds it is done)
  kUnsupported,      // a newer format or protocol than this build understands
};

// Static text for a code ("not found", ...).
const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Invalid(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status Corrupt(std::string m) { return {Code::kCorrupt, std::move(m)}; }
  static Status Unauthorized(std::string m) { return {Code::kUnauthorized, std::move(m)}; }
  static Status Io(std::string m) { return {Code::kIo, std::move(m)}; }
  static Status Busy(std::string m) { return {Code::kBusy, std::move(m)}; }
  static Status Unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corrupt: field state: truncated varint"
  std::string ToString() const;

  // Prefixes the message with context, keeping the code.
  Status With(const std::string& context) const {
    if (ok()) return *this;
    return Status(code_, context + ": " + message_);
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result from an OK status");
  }

  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

// The Status of a failed TANDEM_CHECK (below).
Status CheckFailed(const char* what, const char* condition, const char* file, int line);

}  // namespace tandem

#define TANDEM_CONCAT_INNER(a, b) a##b
#define TANDEM_CONCAT(a, b) TANDEM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when it is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)                                               \
  do {                                                                             \
    ::tandem::Status TANDEM_CONCAT(_st_, __LINE__) = (expr);                       \
    if (!TANDEM_CONCAT(_st_, __LINE__).ok()) return TANDEM_CONCAT(_st_, __LINE__); \
  } while (0)

// TANDEM_CHECK(cond, "what must hold"): an invariant checked in release builds too. When
// it does not hold, the enclosing function (returning Status or Result<T>) returns a
// kCorrupt Status naming it and the source line, and nothing after it runs.
#define TANDEM_CHECK(cond, what)                                     \
  do {                                                               \
    if (!(cond)) [[unlikely]]                                        \
      return ::tandem::CheckFailed(what, #cond, __FILE__, __LINE__); \
  } while (0)

// TANDEM_ASSIGN_OR_RETURN(auto x, MakeX()); returns the Status on failure.
#define TANDEM_ASSIGN_OR_RETURN(decl, expr)                                                 \
  auto TANDEM_CONCAT(_res_, __LINE__) = (expr);                                             \
  if (!TANDEM_CONCAT(_res_, __LINE__).ok()) return TANDEM_CONCAT(_res_, __LINE__).status(); \
  decl = std::move(TANDEM_CONCAT(_res_, __LINE__)).value()
