// The built-ins of CUDA device code, for native/cuda/kernels.cu compiled as host C++ on the emulated
// device. The emulation build force-includes this header (-include) into a copy of kernels.cu whose
// `kernel<<<grid, block, shared, stream>>>(args)` launch sites were rewritten into
// `::cuemu::kernel::launch("kernel", kernel, grid, block, shared, stream, args)`
// (rewrite_launches.js); the kernel bodies are compiled exactly as written, with
// -ffp-contract=off to match nvcc's -fmad=false.
//
// Semantics kept: a block's threads are fibers (fiber.h) that the block scheduler
// (kernels_host.cpp) runs until each reaches a barrier, a warp shuffle or its end; a barrier
// releases when every thread of the block waits at that same barrier, a shuffle when all 32
// lanes of the warp wait at that same shuffle with the full mask. Anything else (a thread that
// ends while others wait, lanes at different barriers or shuffles, a partial mask) is reported and
// fails the launch with cudaErrorLaunchFailure. Blocks run one after another, so atomics are
// plain read-modify-writes and block-shared memory can be a static per kernel instantiation: a
// `static volatile` one, so that every access goes to memory (the other threads of the block run
// inside __syncthreads, out of the compiler's sight) and the variable exists for the build step
// that lists the shared variables (shared_registry.js), whose bytes are poisoned (NaN) at every
// block start.
#pragma once
#include <cuda_runtime.h>
#include <math.h>

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __shared__
#define __shared__ static volatile

namespace cuemu::kernel {

struct Coords {
  uint3 thread, block;
  dim3 blockDim, gridDim;
};
// The coordinates of the emulated thread running now (set by the block scheduler at each switch).
extern const Coords* current;

// The compiler must not keep shared-memory values in registers across a barrier or a shuffle: the
// other threads of the block run (on other fibers) inside these calls.
inline void compilerFence() { asm volatile("" ::: "memory"); }
// A barrier is identified by its call site (the return address inside the kernel), so the
// wrappers below are always inlined into the kernel and these are never inlined.
__attribute__((noinline)) void syncthreads();
__attribute__((noinline)) int syncthreadsOr(int predicate);
__attribute__((noinline)) void shuffleDown(unsigned mask, const void* in, void* out, std::size_t size, unsigned delta, int width);

struct Launch {
  const char* name;
  dim3 grid, block;
  std::size_t sharedBytes;
  cudaStream_t stream;
};
// Checks the configuration, the stream and the injected faults; records the launch error for
// cudaGetLastError and returns false when the kernel must not run.
bool admit(const Launch& l);
// A pointer argument must be null or point into live device memory (a host pointer in a kernel
// faults on a GPU); reports a violation otherwise.
void checkPointerArgument(const Launch& l, int index, const void* p);
// Queues the grid on the launch's stream; body runs the kernel once for the current thread.
void enqueueGrid(const Launch& l, std::function<void()> body);

template <class Tuple, std::size_t... I> void checkArguments(const Launch& l, const Tuple& t, std::index_sequence<I...>) {
  (
      [&] {
        using A = std::tuple_element_t<I, Tuple>;
        if constexpr (std::is_pointer_v<A>) checkPointerArgument(l, static_cast<int>(I), static_cast<const void*>(std::get<I>(t)));
      }(),
      ...);
}

// kernel<<<grid, block, sharedBytes, stream>>>(args...): the arguments are converted to the
// kernel's parameter types and copied now, as a launch does.
template <class... P, class... A>
void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, std::size_t sharedBytes, cudaStream_t stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  const Launch l{name, grid, block, sharedBytes, stream};
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  if (!admit(l)) return;
  checkArguments(l, params, std::index_sequence_for<P...>{});
  enqueueGrid(l, [kernel, params] { std::apply(kernel, params); });
}

}  // namespace cuemu::kernel

#define threadIdx (::cuemu::kernel::current->thread)
#define blockIdx (::cuemu::kernel::current->block)
#define blockDim (::cuemu::kernel::current->blockDim)
#define gridDim (::cuemu::kernel::current->gridDim)

__attribute__((always_inline)) inline void __syncthreads() {
  ::cuemu::kernel::compilerFence();
  ::cuemu::kernel::syncthreads();
  ::cuemu::kernel::compilerFence();
}

__attribute__((always_inline)) inline int __syncthreads_or(int predicate) {
  ::cuemu::kernel::compilerFence();
  const int r = ::cuemu::kernel::syncthreadsOr(predicate);
  ::cuemu::kernel::compilerFence();
  return r;
}

template <class T> __attribute__((always_inline)) inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move 4- or 8-byte values");
  T out;
  ::cuemu::kernel::compilerFence();
  ::cuemu::kernel::shuffleDown(mask, &var, &out, sizeof(T), delta, width);
  ::cuemu::kernel::compilerFence();
  return out;
}

// One emulated thread runs at a time, so this is atomic.
inline int atomicOr(int* address, int value) {
  const int old = *address;
  *address = old | value;
  return old;
}
