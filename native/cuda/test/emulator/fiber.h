// Cooperative fibers for the emulated GPU threads of one block: each thread of a block runs on its
// own stack, and __syncthreads / __shfl_down_sync switch back to the block scheduler
// (kernels_host.cpp) until every thread has arrived. On x86-64 a switch saves the six callee-saved
// registers and the stack pointer (a few nanoseconds: a 256-thread block of an elementwise kernel
// is 512 switches); elsewhere ucontext does it. Under AddressSanitizer every switch is announced
// with __sanitizer_start/finish_switch_fiber, so ASan knows which stack is live and stays exact.
#pragma once
#include <cstddef>

namespace cuemu {

class Fiber {
 public:
  // A fiber that, when first resumed, calls entry(arg) on a fresh stack of `stackBytes` (with a
  // guard page below it). entry must never return: it ends with exitTo().
  Fiber(std::size_t stackBytes);
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to start entry(arg) at its next resume (reusing the stack).
  void reset(void (*entry)(void*), void* arg);

  // Called from the scheduler's own stack: runs the fiber until it yields or exits.
  void resume();
  // Called on the fiber: back to the scheduler; returns when the scheduler resumes it again.
  void yield();
  // Called on the fiber at its end: back to the scheduler for good (its stack may then be reused).
  [[noreturn]] void exit();

  // For the entry trampoline (fiber.cpp).
  void started();
  void (*entry_)(void*) = nullptr;
  void* arg_ = nullptr;

 private:
  void* map_ = nullptr;
  std::size_t mapBytes_ = 0;
  void* stackBottom_ = nullptr;
  std::size_t stackBytes_ = 0;
  struct Impl;
  Impl* impl_;
};

}  // namespace cuemu
