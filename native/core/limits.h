// Size arithmetic that cannot wrap, and the memory budget every call is checked against before it
// allocates. A small input can describe a huge computation (features [1, 65536, 3] ask for a
// 65536 x 65536 covariance, 17 GB in float32); such a call must fail at once with a message that
// says how much it asked for, not allocate for a minute and then die.
#pragma once
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>

#include "errors.h"

namespace covpool {

// Largest element count any array may have: indices stay exact in a double (JS numbers).
constexpr std::size_t kMaxElements = std::size_t(1) << 53;

// a * b, or a RangeError naming `what` when the product does not fit.
inline std::size_t checkedMul(std::size_t a, std::size_t b, const std::string& what) {
  if (a != 0 && b > kMaxElements / a) failRange(what + " is too large (its size overflows)");
  return a * b;
}
inline std::size_t checkedProduct(std::initializer_list<std::size_t> factors, const std::string& what) {
  std::size_t p = 1;
  for (std::size_t f : factors) p = checkedMul(p, f, what);
  return p;
}
inline std::size_t checkedAdd(std::size_t a, std::size_t b, const std::string& what) {
  if (b > kMaxElements - a) failRange(what + " is too large (its size overflows)");
  return a + b;
}

inline std::string formatBytes(double bytes) {
  std::ostringstream os;
  os.precision(3);
  if (bytes >= 1e9) os << bytes / 1e9 << " GB";
  else if (bytes >= 1e6) os << bytes / 1e6 << " MB";
  else if (bytes >= 1e3) os << bytes / 1e3 << " kB";
  else os << bytes << " bytes";
  return os.str();
}

// Physical memory of the machine (0 when unknown).
inline std::size_t physicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : 0;
}

// The default budget: COVPOOL_MAX_BYTES when set to a positive number, else half the physical
// memory (one call may not take the machine; 8 GB when the size is unknown).
inline std::size_t defaultMaxBytes() {
  if (const char* env = std::getenv("COVPOOL_MAX_BYTES")) {
    char* end = nullptr;
    const double v = std::strtod(env, &end);
    if (end != env && *end == '\0' && v >= 1 && v < 1.8e19) return static_cast<std::size_t>(v);
  }
  const std::size_t phys = physicalMemoryBytes();
  return phys ? phys / 2 : std::size_t(8) << 30;
}

inline std::atomic<std::size_t>& maxBytesSetting() {
  static std::atomic<std::size_t> v{defaultMaxBytes()};
  return v;
}
inline std::size_t maxBytes() { return maxBytesSetting().load(); }
inline void setMaxBytes(std::size_t v) { maxBytesSetting().store(v); }

// Refuses a call that would allocate more than the budget, before it allocates anything.
inline void requireBytes(double bytes, const std::string& what) {
  const std::size_t limit = maxBytes();
  if (bytes > static_cast<double>(limit)) {
    failRange(what + " would need " + formatBytes(bytes) + " of memory, over the budget of " + formatBytes(static_cast<double>(limit)) +
              " (set by COVPOOL_MAX_BYTES or setMaxBytes(); the default is half the physical memory)");
  }
}

}  // namespace covpool
