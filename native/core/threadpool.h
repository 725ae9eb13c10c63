// One process-wide pool of worker threads over which batch items are spread. All calls (sync and
// every concurrent async call) share it, so the machine is never oversubscribed; BLAS itself runs
// single-threaded inside each item (see cpu/blas.h), one item per core.
#pragma once
#include <cstddef>
#include <functional>

namespace covpool {

// Number of threads used for batch parallelism: COVPOOL_NUM_THREADS if set, else the core count.
int poolThreads();

// Runs body(i) for i in [0, n) on the pool (the calling thread takes part). When items fail, the
// exception of the lowest failing item is rethrown once all started items have finished, so the
// error a batch reports does not depend on thread timing.
void parallelFor(std::size_t n, const std::function<void(std::size_t)>& body);

}  // namespace covpool
