// Errors raised by native code. Every failure that user input can cause is a CovpoolError with a
// message that says what was expected and what was received; the addon layer turns it into a JS
// exception (never an abort), so a bad call cannot take the Node process down.
#pragma once
#include <stdexcept>
#include <string>

namespace covpool {

class CovpoolError : public std::runtime_error {
 public:
  explicit CovpoolError(const std::string& msg) : std::runtime_error(msg) {}
};

[[noreturn]] inline void fail(const std::string& msg) { throw CovpoolError(msg); }
// The addon maps these prefixes to JS RangeError / TypeError.
[[noreturn]] inline void failRange(const std::string& msg) { throw CovpoolError("RangeError: " + msg); }
[[noreturn]] inline void failType(const std::string& msg) { throw CovpoolError("TypeError: " + msg); }

}  // namespace covpool
