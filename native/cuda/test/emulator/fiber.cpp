#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif

#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cuemu {

#if defined(__x86_64__)
// Saves the callee-saved registers on the current stack, stores the stack pointer in *save, and
// continues on the stack `next` (whose top holds the registers saved by an earlier switch, or the
// initial frame Fiber::reset lays out). The floating-point control state is not switched: every
// fiber runs the same code with the same settings.
extern "C" void cuemu_switch_stack(void** save, void* next);
asm(R"(
  .text
  .p2align 4
  .globl cuemu_switch_stack
  .hidden cuemu_switch_stack
  .type cuemu_switch_stack, @function
cuemu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuemu_switch_stack, .-cuemu_switch_stack
)");
#endif

struct Fiber::Impl {
#if defined(__x86_64__)
  void* fiberSp = nullptr;
  void* schedSp = nullptr;
#else
  ucontext_t fiberCtx{}, schedCtx{};
#endif
  // AddressSanitizer bookkeeping: the fake stacks of each side, and the scheduler's stack bounds
  // (learnt when the fiber first starts).
  void* fiberFake = nullptr;
  void* schedFake = nullptr;
  const void* schedBottom = nullptr;
  std::size_t schedSize = 0;
};

namespace {
// The fiber whose trampoline is about to run. Not thread_local (a TLS lookup per thread start is
// measurable): fibers are only ever resumed under the emulator's executor lock.
Fiber* starting = nullptr;

[[noreturn]] void trampoline() {
  Fiber* f = starting;
  f->started();
  f->entry_(f->arg_);
  std::fprintf(stderr, "covpool CUDA emulator: a fiber entry returned\n");
  std::abort();
}

#if !defined(__x86_64__)
void ucontextTrampoline() { trampoline(); }
#endif

std::size_t pageSize() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
}  // namespace

Fiber::Fiber(std::size_t stackBytes) : impl_(new Impl) {
  const std::size_t page = pageSize();
  stackBytes_ = (stackBytes + page - 1) / page * page;
  mapBytes_ = stackBytes_ + page;  // one guard page below the stack: an overflow faults
  map_ = mmap(nullptr, mapBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map_ == MAP_FAILED) {
    std::fprintf(stderr, "covpool CUDA emulator: cannot map a %zu-byte fiber stack\n", mapBytes_);
    std::abort();
  }
  mprotect(map_, page, PROT_NONE);
  stackBottom_ = static_cast<char*>(map_) + page;
}

Fiber::~Fiber() {
  munmap(map_, mapBytes_);
  delete impl_;
}

void Fiber::reset(void (*entry)(void*), void* arg) {
  entry_ = entry;
  arg_ = arg;
#ifdef CUEMU_ASAN
  // Frames of the previous thread that ran here ended with a switch, not a return: their redzones
  // are still poisoned.
  __asan_unpoison_memory_region(stackBottom_, stackBytes_);
#endif
#if defined(__x86_64__)
  auto top = reinterpret_cast<std::uintptr_t>(stackBottom_) + stackBytes_;
  top &= ~std::uintptr_t(15);
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                                    // the trampoline's (never used) return address
  *--sp = reinterpret_cast<void*>(&trampoline);       // where the first switch's `ret` goes
  for (int r = 0; r < 6; ++r) *--sp = nullptr;        // rbp, rbx, r12-r15
  impl_->fiberSp = sp;
#else
  getcontext(&impl_->fiberCtx);
  impl_->fiberCtx.uc_stack.ss_sp = stackBottom_;
  impl_->fiberCtx.uc_stack.ss_size = stackBytes_;
  impl_->fiberCtx.uc_link = nullptr;
  makecontext(&impl_->fiberCtx, ucontextTrampoline, 0);
#endif
  impl_->fiberFake = nullptr;
}

void Fiber::started() {
#ifdef CUEMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &impl_->schedBottom, &impl_->schedSize);
#endif
}

void Fiber::resume() {
  starting = this;
#ifdef CUEMU_ASAN
  __sanitizer_start_switch_fiber(&impl_->schedFake, stackBottom_, stackBytes_);
#endif
#if defined(__x86_64__)
  cuemu_switch_stack(&impl_->schedSp, impl_->fiberSp);
#else
  swapcontext(&impl_->schedCtx, &impl_->fiberCtx);
#endif
#ifdef CUEMU_ASAN
  __sanitizer_finish_switch_fiber(impl_->schedFake, nullptr, nullptr);
#endif
}

void Fiber::yield() {
#ifdef CUEMU_ASAN
  __sanitizer_start_switch_fiber(&impl_->fiberFake, impl_->schedBottom, impl_->schedSize);
#endif
#if defined(__x86_64__)
  cuemu_switch_stack(&impl_->fiberSp, impl_->schedSp);
#else
  swapcontext(&impl_->fiberCtx, &impl_->schedCtx);
#endif
#ifdef CUEMU_ASAN
  __sanitizer_finish_switch_fiber(impl_->fiberFake, &impl_->schedBottom, &impl_->schedSize);
#endif
}

void Fiber::exit() {
#ifdef CUEMU_ASAN
  // nullptr: this fiber's fake stack can be released, it will not run again.
  __sanitizer_start_switch_fiber(nullptr, impl_->schedBottom, impl_->schedSize);
#endif
#if defined(__x86_64__)
  cuemu_switch_stack(&impl_->fiberSp, impl_->schedSp);
#else
  swapcontext(&impl_->fiberCtx, &impl_->schedCtx);
#endif
  std::fprintf(stderr, "covpool CUDA emulator: an exited fiber was resumed\n");
  std::abort();
}

}  // namespace cuemu
