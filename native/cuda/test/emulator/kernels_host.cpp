// The emulated device's kernel execution: launch checks (kernel_builtins.h) and the block
// scheduler, which runs the threads of one block as fibers until each reaches a barrier, a warp
// shuffle or its end, and releases a barrier or a shuffle only when the whole block / warp waits
// at that same one.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "emulator.h"
#include "fiber.h"
#include "kernel_builtins.h"

// The block-shared variables of the kernels, listed at build time from the compiled kernels
// (shared_registry.js): address and size of each, so every block starts with them poisoned.
struct CuemuSharedVariable {
  void* address;
  std::size_t bytes;
  const char* name;
};
extern "C" const CuemuSharedVariable cuemuSharedVariables[];
extern "C" const std::size_t cuemuSharedVariableCount;

namespace cuemu::kernel {

const Coords* current = nullptr;

namespace {

constexpr int kWarp = 32;
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kStackBytes = 512 << 10;  // ASan's redzones make frames several times larger
#else
constexpr std::size_t kStackBytes = 128 << 10;
#endif

enum class State { Fresh, Ready, AtBarrier, AtShuffle, Done };

struct Thread {
  Coords coords{};
  State state = State::Fresh;
  Fiber* fiber = nullptr;
  const void* site = nullptr;  // the barrier or shuffle it waits at
  int predicate = 0;           // __syncthreads_or: the operand, then the result
  unsigned mask = 0, delta = 0;
  int width = 0;
  std::size_t size = 0;
  unsigned char in[8] = {}, out[8] = {};
  int linear = 0;  // index in the block
};

// Everything about the block being run (one at a time: stream work runs under the executor lock).
struct BlockRun {
  const Launch* launch = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<Thread> threads;
  Thread* running = nullptr;
};
BlockRun* active = nullptr;

std::vector<std::unique_ptr<Fiber>> fibers;  // every stack ever made, reused
std::vector<Fiber*> idle;

Fiber* takeFiber() {
  if (idle.empty()) {
    fibers.push_back(std::make_unique<Fiber>(kStackBytes));
    idle.push_back(fibers.back().get());
  }
  Fiber* f = idle.back();
  idle.pop_back();
  return f;
}

void threadMain(void* arg) {
  Thread* t = static_cast<Thread*>(arg);
  (*active->body)();
  t->state = State::Done;
  Fiber* f = t->fiber;
  t->fiber = nullptr;
  idle.push_back(f);  // reused only after exit() has left it
  f->exit();
}

Thread& self(const char* what) {
  if (!active || !active->running) {
    std::fprintf(stderr, "covpool CUDA emulator: %s called outside a kernel\n", what);
    std::abort();
  }
  return *active->running;
}

void wait(Thread& t) {
  t.fiber->yield();
  current = &t.coords;
}

std::string where(const Launch& l, const uint3& b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "kernel %s, block (%u,%u,%u) of (%u,%u,%u), %u threads", l.name, b.x, b.y, b.z, l.grid.x, l.grid.y, l.grid.z,
                l.block.x * l.block.y * l.block.z);
  return buf;
}

const char* stateName(State s) {
  switch (s) {
    case State::AtBarrier: return "waits at a __syncthreads";
    case State::AtShuffle: return "waits at a __shfl_down_sync";
    case State::Done: return "has returned";
    default: return "runs";
  }
}

// Releases every warp whose lanes all wait at the same shuffle, or else the block when every
// thread waits at the same barrier. Returns "" when something was released, else why nothing can be.
std::string release(BlockRun& r) {
  const int n = static_cast<int>(r.threads.size());
  bool released = false;
  for (int w0 = 0; w0 < n; w0 += kWarp) {
    const int lanes = std::min(kWarp, n - w0);
    Thread& first = r.threads[w0];
    int shuffling = 0;
    for (int i = 0; i < lanes; ++i) shuffling += r.threads[w0 + i].state == State::AtShuffle;
    if (shuffling == 0) continue;
    const unsigned full = lanes == kWarp ? 0xffffffffu : ((1u << lanes) - 1);
    for (int i = 0; i < lanes; ++i) {
      const Thread& t = r.threads[w0 + i];
      if (t.state != State::AtShuffle)
        return "warp " + std::to_string(w0 / kWarp) + ": lane " + std::to_string(i) + " " + stateName(t.state) +
               " while other lanes wait at a __shfl_down_sync";
      if (t.site != first.site) return "warp " + std::to_string(w0 / kWarp) + ": lanes wait at different __shfl_down_sync calls";
      if (lanes != kWarp) return "warp " + std::to_string(w0 / kWarp) + " has only " + std::to_string(lanes) + " threads: a shuffle needs full warps";
      if (t.mask != full) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "lane %d shuffles with mask 0x%08x (partial: the warp is 0x%08x)", i, t.mask, full);
        return "warp " + std::to_string(w0 / kWarp) + ": " + buf;
      }
      if (t.size != first.size || t.width != first.width) return "warp " + std::to_string(w0 / kWarp) + ": lanes shuffle different types or widths";
      if (t.width <= 0 || t.width > kWarp || (t.width & (t.width - 1)))
        return "warp " + std::to_string(w0 / kWarp) + ": shuffle width " + std::to_string(t.width) + " is not a power of two up to 32";
    }
    for (int i = 0; i < lanes; ++i) {
      Thread& t = r.threads[w0 + i];
      const int segment = i / t.width * t.width;
      const int src = i + static_cast<int>(t.delta) < segment + t.width ? i + static_cast<int>(t.delta) : i;
      std::memcpy(t.out, r.threads[w0 + src].in, t.size);
      t.state = State::Ready;
    }
    released = true;
  }
  if (released) return "";
  // No shuffle pending anywhere: the whole block must wait at one barrier.
  const Thread* waiting = nullptr;
  for (const Thread& t : r.threads)
    if (t.state == State::AtBarrier) {
      waiting = &t;
      break;
    }
  if (!waiting) return "no thread can proceed";
  int orAll = 0;
  for (const Thread& t : r.threads) {
    if (t.state != State::AtBarrier)
      return "thread " + std::to_string(t.linear) + " " + stateName(t.state) + " while thread " + std::to_string(waiting->linear) +
             " waits at a __syncthreads (a barrier not every thread of the block reaches)";
    if (t.site != waiting->site)
      return "threads " + std::to_string(waiting->linear) + " and " + std::to_string(t.linear) + " wait at different __syncthreads";
    orAll |= t.predicate != 0;
  }
  for (Thread& t : r.threads) {
    t.predicate = orAll;
    t.state = State::Ready;
  }
  return "";
}

void poisonShared() {
  for (std::size_t i = 0; i < cuemuSharedVariableCount; ++i) poison(cuemuSharedVariables[i].address, cuemuSharedVariables[i].bytes);
}

// Runs one block; returns "" or what went wrong. The thread records are reused from block to block
// (only what a fresh thread needs is reset).
std::string runBlock(const Launch& l, const std::function<void()>& body, const uint3& b) {
  static BlockRun r;
  r.launch = &l;
  r.body = &body;
  r.running = nullptr;
  const unsigned nx = l.block.x, ny = l.block.y, nz = l.block.z;
  r.threads.resize(static_cast<std::size_t>(nx) * ny * nz);
  int k = 0;
  for (unsigned z = 0; z < nz; ++z)
    for (unsigned y = 0; y < ny; ++y)
      for (unsigned x = 0; x < nx; ++x, ++k) {
        Thread& t = r.threads[k];
        t.coords = Coords{uint3{x, y, z}, b, l.block, l.grid};
        t.state = State::Fresh;
        t.fiber = nullptr;
        t.linear = k;
      }
  poisonShared();
  active = &r;
  std::string error;
  for (;;) {
    bool anyLive = false;
    for (Thread& t : r.threads) {
      if (t.state == State::Fresh) {
        t.fiber = takeFiber();
        t.fiber->reset(threadMain, &t);
        t.state = State::Ready;
      }
      if (t.state == State::Ready) {
        current = &t.coords;
        r.running = &t;
        t.fiber->resume();
      }
      anyLive = anyLive || t.state != State::Done;
    }
    if (!anyLive) break;
    error = release(r);
    if (!error.empty()) break;
  }
  // Threads left waiting (after an error) are abandoned: their stacks go back to the pool.
  for (Thread& t : r.threads)
    if (t.fiber) {
      idle.push_back(t.fiber);
      t.fiber = nullptr;
    }
  active = nullptr;
  current = nullptr;
  return error;
}

}  // namespace

void syncthreads() {
  Thread& t = self("__syncthreads");
  t.site = __builtin_return_address(0);
  t.state = State::AtBarrier;
  wait(t);
}

int syncthreadsOr(int predicate) {
  Thread& t = self("__syncthreads_or");
  t.site = __builtin_return_address(0);
  t.predicate = predicate;
  t.state = State::AtBarrier;
  wait(t);
  return t.predicate;
}

void shuffleDown(unsigned mask, const void* in, void* out, std::size_t size, unsigned delta, int width) {
  Thread& t = self("__shfl_down_sync");
  t.site = __builtin_return_address(0);
  t.mask = mask;
  t.delta = delta;
  t.width = width;
  t.size = size;
  std::memcpy(t.in, in, size);
  t.state = State::AtShuffle;
  wait(t);
  std::memcpy(out, t.out, size);
}

bool admit(const Launch& l) {
  if (cudaError_t e = stickyError(); e != cudaSuccess) {
    setLastError(e);
    return false;
  }
  const unsigned long long threads = 1ULL * l.block.x * l.block.y * l.block.z;
  const bool configOk = l.grid.x >= 1 && l.grid.x <= 0x7fffffffu && l.grid.y >= 1 && l.grid.y <= 65535 && l.grid.z >= 1 &&
                        l.grid.z <= 65535 && threads >= 1 && threads <= 1024 && l.block.x <= 1024 && l.block.y <= 1024 &&
                        l.block.z <= 64 && l.sharedBytes <= 48 * 1024;
  if (!configOk) {
    setLastError(cudaErrorInvalidConfiguration);
    return false;
  }
  if (!resolveStream(l.stream, l.name)) {
    setLastError(cudaErrorInvalidResourceHandle);
    return false;
  }
  if (faultLaunch(l.name)) {
    std::fprintf(stderr, "covpool CUDA emulator: injected launch failure of %s\n", l.name);
    setLastError(cudaErrorLaunchOutOfResources);
    return false;
  }
  return true;
}

void checkPointerArgument(const Launch& l, int index, const void* p) {
  if (!p) return;
  Block b;
  if (!findBlock(p, &b) || b.kind != MemKind::Device)
    violation("kernel %s: argument %d (%p) is not device memory: dereferencing it on a GPU is an illegal address", l.name, index, p);
}

void enqueueGrid(const Launch& l, std::function<void()> body) {
  StreamState* s = resolveStream(l.stream, l.name);
  ++stats().kernelLaunches;
  enqueue(s, std::string("kernel ") + l.name, [l, body = std::move(body)] {
    for (unsigned z = 0; z < l.grid.z; ++z)
      for (unsigned y = 0; y < l.grid.y; ++y)
        for (unsigned x = 0; x < l.grid.x; ++x) {
          ++stats().blocksRun;
          const std::string error = runBlock(l, body, uint3{x, y, z});
          if (!error.empty()) {
            failExecution(cudaErrorLaunchFailure, where(l, uint3{x, y, z}) + ": " + error);
            return;
          }
        }
  });
}

}  // namespace cuemu::kernel
