// One process-wide pool of worker threads over which batch items are spread. All calls (sync and
// every concurrent async call) share it, so the machine is never oversubscribed; BLAS itself runs
// single-threaded inside each item (see cpu/blas.h), one item per core.
#pragma once
#include <atomic>
#include <cstddef>
#include <functional>
#include <stdexcept>

namespace covpool {

// Number of threads used for batch parallelism: COVPOOL_NUM_THREADS if set, else the core count.
int poolThreads();

// Runs body(i) for i in [0, n) on the pool (the calling thread takes part). When items fail, the
// exception of the lowest failing item is rethrown once all started items have finished, so the
// error a batch reports does not depend on thread timing.
//
// Inside a CallScope, parallelFor also checks the call's cancellation flag before each item (a
// cancelled call throws CallCancelled once the items already running have finished) and reports
// each finished item to the call's progress function.
void parallelFor(std::size_t n, const std::function<void(std::size_t)>& body);

// The same over consecutive groups of up to `group` items: body(first, count) handles items
// [first, first + count) together (the batched kernels that work on several matrices at once).
// Cancellation is checked before each group; progress still counts items, in order.
void parallelForGroups(std::size_t items, std::size_t group, const std::function<void(std::size_t, std::size_t)>& body);

// Cancellation and progress of one async call. The addon makes one when JS passes an AbortSignal
// or a progress callback; `progress` runs on worker threads, one call per finished item, in order
// (done = 1, 2, ..., total) and never after the call's parallelFor has returned.
struct CallControl {
  std::atomic<bool> cancelled{false};
  std::function<void(std::size_t done, std::size_t total)> progress;
};

class CallCancelled : public std::runtime_error {
 public:
  CallCancelled() : std::runtime_error("the call was cancelled") {}
};

// Makes `control` the current call's control on this thread for the scope's lifetime.
class CallScope {
 public:
  explicit CallScope(CallControl* control);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  CallControl* previous_;
};

}  // namespace covpool
