// The emulated CUDA runtime: devices, streams with deferred execution, device memory as a registry
// of protected mappings, pinned host memory, copies, errors, fault injection. Exactly the part of
// the runtime API that native/cuda calls (and what device-resident tensors need), with the
// signatures of NVIDIA's own headers (cuda_runtime_api.h), so the backend links against this file
// instead of libcudart without a change.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "emulator.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CUEMU_POISON_SLACK(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CUEMU_UNPOISON_SLACK(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CUEMU_POISON_SLACK(p, n) ((void)(p), (void)(n))
#define CUEMU_UNPOISON_SLACK(p, n) ((void)(p), (void)(n))
#endif

struct CUstream_st {
  int device = 0;
  bool legacy = false;
  std::deque<std::pair<std::string, std::function<void()>>> queue;
};

namespace cuemu {

struct StreamState : CUstream_st {};

namespace {

// ---- global state ------------------------------------------------------------------------------------
// One lock for the registry, streams and devices; a second, recursive one that stream work runs
// under (kernels use one set of fiber stacks and static shared memory, so one grid at a time).
std::mutex mu;
std::recursive_mutex executor;

struct Mapping {
  Block block;
  void* map = nullptr;       // the whole mapping: guard page, data pages, guard page
  std::size_t mapBytes = 0;
  char* data = nullptr;      // the data pages (block.begin lies inside them, 256-byte aligned,
  std::size_t dataBytes = 0; //  ending within 256 bytes of their end)
  bool freed = false;
};
std::map<std::uintptr_t, Mapping> live;       // by begin
std::deque<Mapping> quarantine;                // freed device blocks, kept PROT_NONE for a while
std::size_t quarantineBytes = 0;
constexpr std::size_t kQuarantineBytes = std::size_t(1) << 30;  // address space, not memory
std::uint64_t serials = 0;
int accessDepth = 0;
std::size_t liveDeviceBytes = 0, peakDeviceBytes = 0;

struct Device {
  std::size_t usedBytes = 0;
  cudaError_t sticky = cudaSuccess;
  StreamState legacy;
};
std::vector<std::unique_ptr<Device>> devices;
std::set<const CUstream_st*> streams;  // created and not destroyed (legacy ones included)
thread_local int currentDev = 0;
thread_local cudaError_t lastError = cudaSuccess;

Counters counters;
int violationCount = 0;
std::vector<std::string> violationMessages;

std::size_t pageSize() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

long envLong(const char* name, long dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  const long r = std::strtol(v, &end, 10);
  return end && *end == 0 ? r : dflt;
}

void ensureDevices() {  // under mu
  if (!devices.empty()) return;
  const long n = std::max(1L, std::min(16L, envLong("COVPOOL_EMU_DEVICES", 1)));
  for (long i = 0; i < n; ++i) {
    devices.push_back(std::make_unique<Device>());
    devices.back()->legacy.device = static_cast<int>(i);
    devices.back()->legacy.legacy = true;
    streams.insert(&devices.back()->legacy);
  }
}

std::size_t deviceCapacity() {
  return static_cast<std::size_t>(std::max(1L, envLong("COVPOOL_EMU_DEVICE_MB", 4096))) << 20;
}

void protect(Mapping& m, bool accessible) {
  mprotect(m.data, m.dataBytes, accessible ? PROT_READ | PROT_WRITE : PROT_NONE);
}

const Mapping* mappingAt(std::uintptr_t a) {  // under mu (or in a signal handler)
  auto it = live.upper_bound(a);
  if (it != live.begin()) {
    --it;
    const Mapping& m = it->second;
    const std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(m.map), hi = lo + m.mapBytes;
    if (a >= lo && a < hi) return &m;
  }
  for (const Mapping& m : quarantine) {
    const std::uintptr_t lo = reinterpret_cast<std::uintptr_t>(m.map), hi = lo + m.mapBytes;
    if (a >= lo && a < hi) return &m;
  }
  return nullptr;
}

// Host code that touches a device block faults (the block is PROT_NONE outside the emulator's
// execution): say which block, then let the default action end the process, as a GPU's would.
struct sigaction previousSegv;
void onSegv(int sig, siginfo_t* info, void* ctx) {
  const auto a = reinterpret_cast<std::uintptr_t>(info->si_addr);
  const Mapping* m = mappingAt(a);
  if (m) {
    char buf[320];
    const std::uintptr_t b = m->block.begin;
    const char* what = m->freed ? "a freed device block" : (a >= b && a < b + m->block.bytes ? "device memory" : "the guard area of a device block");
    const int n = std::snprintf(buf, sizeof buf,
                                "covpool CUDA emulator: host code (or a kernel out of bounds) touched %s at %p: block #%llu of %zu bytes at "
                                "%p. Device pointers are not host-accessible; copy with cudaMemcpy.\n",
                                what, info->si_addr, static_cast<unsigned long long>(m->block.serial), m->block.bytes,
                                reinterpret_cast<void*>(b));
    if (n > 0) (void)!write(2, buf, static_cast<std::size_t>(std::min(n, static_cast<int>(sizeof buf - 1))));
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return;
  }
  // Not ours: hand it to whoever was there before (ASan, Node, the default action).
  if (previousSegv.sa_flags & SA_SIGINFO) {
    if (previousSegv.sa_sigaction) return previousSegv.sa_sigaction(sig, info, ctx);
  } else if (previousSegv.sa_handler != SIG_DFL && previousSegv.sa_handler != SIG_IGN && previousSegv.sa_handler) {
    return previousSegv.sa_handler(sig);
  }
  sigaction(SIGSEGV, &previousSegv, nullptr);
}

void installSegvHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onSegv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previousSegv);
  });
}

void atExitReport() {
  std::lock_guard<std::mutex> lock(mu);
  std::size_t blocks = 0, bytes = 0;
  for (auto& [_, m] : live)
    if (m.block.kind == MemKind::Device) ++blocks, bytes += m.block.bytes;
  if (violationCount || std::getenv("COVPOOL_EMU_VERBOSE"))
    std::fprintf(stderr, "covpool CUDA emulator: at exit: %d violation(s); %zu device block(s), %zu bytes, still allocated\n",
                 violationCount, blocks, bytes);
}

void init() {  // under mu
  static bool done = false;
  if (done) return;
  done = true;
  ensureDevices();
  installSegvHandler();
  std::atexit(atExitReport);
}

Device& device(int d) { return *devices.at(static_cast<std::size_t>(d)); }

// The thread's device, its sticky error first: every call fails once the device has faulted.
cudaError_t enter() {
  std::lock_guard<std::mutex> lock(mu);
  init();
  return device(currentDev).sticky;
}

// ---- fault injection ---------------------------------------------------------------------------------
// A counted fault ("k": the k-th event after the variable took this value; "k+": that and every
// later one). The count restarts whenever the value changes.
struct Counted {
  std::string spec;
  long seen = 0;
};
bool countedHit(const char* value, Counted& c) {
  if (c.spec != value) {
    c.spec = value;
    c.seen = 0;
  }
  char* end = nullptr;
  const long k = std::strtol(value, &end, 10);
  if (end == value || k < 1) return false;
  const bool orLater = *end == '+';
  ++c.seen;
  return orLater ? c.seen >= k : c.seen == k;
}

}  // namespace

// ---- shared internals (emulator.h) ----------------------------------------------------------------------

void violation(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "covpool CUDA emulator: VIOLATION: %s\n", buf);
  {
    std::lock_guard<std::mutex> lock(mu);
    ++violationCount;
    if (violationMessages.size() < 20) violationMessages.emplace_back(buf);
  }
  if (std::getenv("COVPOOL_EMU_ABORT") && std::strcmp(std::getenv("COVPOOL_EMU_ABORT"), "1") == 0) std::abort();
}

Counters& stats() { return counters; }

Report report() {
  std::lock_guard<std::mutex> lock(mu);
  Report r;
  r.violations = violationCount;
  r.messages = violationMessages;
  for (auto& [_, m] : live) {
    if (m.block.kind == MemKind::Device) ++r.liveDeviceBlocks, r.liveDeviceBytes += m.block.bytes;
    else ++r.livePinnedBlocks, r.livePinnedBytes += m.block.bytes;
  }
  r.peakDeviceBytes = peakDeviceBytes;
  r.kernelLaunches = counters.kernelLaunches;
  r.libraryCalls = counters.libraryCalls;
  r.blocksRun = counters.blocksRun;
  return r;
}

bool findBlock(const void* p, Block* out) {
  std::lock_guard<std::mutex> lock(mu);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = live.upper_bound(a);
  if (it == live.begin()) return false;
  --it;
  const Block& b = it->second.block;
  if (a < b.begin || a >= b.begin + std::max<std::size_t>(b.bytes, 1)) return false;
  if (out) *out = b;
  return true;
}

bool requireRange(const void* p, std::size_t bytes, MemKind kind, const char* what) {
  if (bytes == 0) return true;
  const char* kindName = kind == MemKind::Device ? "device" : "pinned host";
  Block b;
  if (!p) {
    violation("%s: null pointer (%zu bytes of %s memory expected)", what, bytes, kindName);
    return false;
  }
  if (!findBlock(p, &b)) {
    bool freed;
    {
      std::lock_guard<std::mutex> lock(mu);
      const Mapping* m = mappingAt(reinterpret_cast<std::uintptr_t>(p));
      freed = m && m->freed;
    }
    violation("%s: %p is %s", what, p, freed ? "inside a freed device block (use after free)" : "not inside any live device allocation");
    return false;
  }
  if (b.kind != kind) {
    violation("%s: %p is %s memory, %s memory expected", what, p, b.kind == MemKind::Device ? "device" : "pinned host", kindName);
    return false;
  }
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  if (a + bytes > b.begin + b.bytes) {
    violation("%s: %zu bytes from %p run %zu bytes past the end of block #%llu (%zu bytes at %p)", what, bytes, p,
              static_cast<std::size_t>(a + bytes - (b.begin + b.bytes)), static_cast<unsigned long long>(b.serial), b.bytes,
              reinterpret_cast<void*>(b.begin));
    return false;
  }
  return true;
}

void poison(void* p, std::size_t bytes) {
  if (p && bytes) std::memset(p, 0xff, bytes);
}

int deviceCount() {
  std::lock_guard<std::mutex> lock(mu);
  init();
  return static_cast<int>(devices.size());
}

int currentDevice() { return currentDev; }

StreamState* resolveStream(cudaStream_t s, const char* what) {
  std::lock_guard<std::mutex> lock(mu);
  init();
  if (!s) return &device(currentDev).legacy;
  if (!streams.count(s)) return nullptr;
  return static_cast<StreamState*>(s);
}

void enqueue(StreamState* s, std::string what, std::function<void()> work) {
  std::lock_guard<std::mutex> lock(mu);
  s->queue.emplace_back(std::move(what), std::move(work));
}

namespace {
// Runs the queue of s (all streams when s is null) under the executor lock, with device memory
// accessible, until it is empty or `reached` holds (checked before each item: an event wait runs the
// recording stream up to the record and no further, so later work on it stays queued and any read
// of its results that lacks a wait of its own still sees the old contents). After a fault the
// device's remaining work is dropped, as a faulted context runs nothing.
cudaError_t drain(StreamState* only, const std::function<bool()>& reached = {}) {
  std::lock_guard<std::recursive_mutex> run(executor);
  Access access;
  for (;;) {
    if (reached && reached()) break;
    std::pair<std::string, std::function<void()>> item;
    int dev = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      StreamState* pick = nullptr;
      if (only) {
        if (!only->queue.empty()) pick = only;
      } else {
        for (const CUstream_st* c : streams)
          if (!c->queue.empty()) {
            pick = static_cast<StreamState*>(const_cast<CUstream_st*>(c));
            break;
          }
      }
      if (!pick) break;
      item = std::move(pick->queue.front());
      pick->queue.pop_front();
      dev = pick->device;
      if (device(dev).sticky != cudaSuccess) continue;  // dropped
    }
    const int saved = currentDev;
    currentDev = dev;
    item.second();
    currentDev = saved;
  }
  std::lock_guard<std::mutex> lock(mu);
  return device(only ? only->device : currentDev).sticky;
}
}  // namespace

void drainAll() { drain(nullptr); }

void failExecution(cudaError_t e, const std::string& what) {
  violation("%s (the device's error is now sticky: %s)", what.c_str(), cudaGetErrorName(e));
  std::lock_guard<std::mutex> lock(mu);
  Device& d = device(currentDev);
  if (d.sticky == cudaSuccess) d.sticky = e;
}

cudaError_t stickyError() {
  std::lock_guard<std::mutex> lock(mu);
  init();
  return device(currentDev).sticky;
}

cudaError_t setLastError(cudaError_t e) {
  if (e != cudaSuccess) lastError = e;
  return e;
}

bool faultMalloc() {
  static Counted c;
  const char* v = std::getenv("COVPOOL_EMU_FAIL_MALLOC");
  std::lock_guard<std::mutex> lock(mu);
  return v && *v && countedHit(v, c);
}

bool faultLaunch(const char* name) {
  static Counted c;
  const char* v = std::getenv("COVPOOL_EMU_FAIL_LAUNCH");
  if (!v || !*v) return false;
  std::lock_guard<std::mutex> lock(mu);
  if (*v >= '0' && *v <= '9') return countedHit(v, c);
  return std::strstr(name, v) != nullptr;
}

int faultEigenItem() { return static_cast<int>(envLong("COVPOOL_EMU_EIG_NO_CONVERGE", -1)); }
int faultSingularItem() { return static_cast<int>(envLong("COVPOOL_EMU_GETRF_SINGULAR", -1)); }

Access::Access() {
  std::lock_guard<std::mutex> lock(mu);
  if (accessDepth++ == 0)
    for (auto& [_, m] : live)
      if (m.block.kind == MemKind::Device) protect(m, true);
}

Access::~Access() {
  std::lock_guard<std::mutex> lock(mu);
  if (--accessDepth == 0)
    for (auto& [_, m] : live)
      if (m.block.kind == MemKind::Device) protect(m, false);
}

}  // namespace cuemu

covpool::CudaEmulatorReport covpool::cudaEmulatorReport() { return cuemu::report(); }
void covpool::cudaEmulatorResetPeak() {
  std::lock_guard<std::mutex> lock(cuemu::mu);
  cuemu::peakDeviceBytes = cuemu::liveDeviceBytes;
}

// ---- the runtime API ------------------------------------------------------------------------------------
using namespace cuemu;

namespace {

cudaError_t fail(cudaError_t e) { return setLastError(e); }

// Device memory: a mapping of its own per block, guard pages on both sides, the block placed so it
// ends (256-byte aligned start, as cudaMalloc guarantees) within 256 bytes of the data pages' end.
cudaError_t allocateDevice(void** out, std::size_t bytes) {
  const std::size_t page = pageSize();
  const std::size_t rounded = (bytes + 255) / 256 * 256;
  const std::size_t dataBytes = (rounded + page - 1) / page * page;
  Mapping m;
  m.mapBytes = dataBytes + 2 * page;
  m.map = mmap(nullptr, m.mapBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m.map == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
  m.data = static_cast<char*>(m.map) + page;
  m.dataBytes = dataBytes;
  char* begin = m.data + (dataBytes - rounded);
  mprotect(m.data, dataBytes, PROT_READ | PROT_WRITE);
  CUEMU_POISON_SLACK(m.data, static_cast<std::size_t>(begin - m.data));
  CUEMU_POISON_SLACK(begin + bytes, rounded - bytes);
  poison(begin, bytes);  // fresh device memory is NaN
  std::lock_guard<std::mutex> lock(mu);
  m.block.begin = reinterpret_cast<std::uintptr_t>(begin);
  m.block.bytes = bytes;
  m.block.kind = MemKind::Device;
  m.block.device = currentDev;
  m.block.serial = ++serials;
  if (accessDepth == 0) protect(m, false);
  device(currentDev).usedBytes += bytes;
  liveDeviceBytes += bytes;
  peakDeviceBytes = std::max(peakDeviceBytes, liveDeviceBytes);
  live.emplace(m.block.begin, m);
  *out = begin;
  return cudaSuccess;
}

// A freed block stays mapped, PROT_NONE, so a later use faults and is named; the oldest are
// unmapped once the quarantine holds more than 1 GiB of address space.
void retire(Mapping m) {  // under mu
  const std::size_t page = pageSize();
  CUEMU_UNPOISON_SLACK(m.data, m.dataBytes);
  madvise(m.data, m.dataBytes, MADV_DONTNEED);
  mprotect(m.data, m.dataBytes, PROT_NONE);
  (void)page;
  m.freed = true;
  quarantineBytes += m.mapBytes;
  quarantine.push_back(m);
  while (quarantineBytes > kQuarantineBytes && !quarantine.empty()) {
    munmap(quarantine.front().map, quarantine.front().mapBytes);
    quarantineBytes -= quarantine.front().mapBytes;
    quarantine.pop_front();
  }
}

const char* kindName(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost: return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice: return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost: return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice: return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault: return "cudaMemcpyDefault";
  }
  return "an invalid cudaMemcpyKind";
}

bool isDevice(const void* p) {
  Block b;
  return findBlock(p, &b) && b.kind == MemKind::Device;
}
bool isPinned(const void* p) {
  Block b;
  return findBlock(p, &b) && b.kind == MemKind::Pinned;
}

// Queues a copy. Pageable host memory behaves as the documentation says: the source of a
// host-to-device copy is read before the call returns (staged), the destination of a
// device-to-host copy is written at the next synchronization (and holds NaN until then, so a read
// before the sync shows). Pinned host memory is read or written only when the copy runs.
cudaError_t queueCopy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream, const char* api) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  StreamState* s = resolveStream(stream, api);
  if (!s) {
    violation("%s: stream %p was not created by cudaStreamCreate* or is destroyed", api, static_cast<void*>(stream));
    return fail(cudaErrorInvalidResourceHandle);
  }
  if (bytes == 0) return cudaSuccess;
  const bool dDev = isDevice(dst), sDev = isDevice(src);
  if (kind == cudaMemcpyDefault) {
    kind = dDev ? (sDev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice) : (sDev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  const bool wantDstDev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool wantSrcDev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) {
    violation("%s: invalid cudaMemcpyKind %d", api, static_cast<int>(kind));
    return fail(cudaErrorInvalidMemcpyDirection);
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s(%s) destination", api, kindName(kind));
  if (wantDstDev) {
    if (!requireRange(dst, bytes, MemKind::Device, what)) return fail(cudaErrorInvalidValue);
  } else if (dDev) {
    violation("%s is device memory: a device pointer where the host's is expected", what);
    return fail(cudaErrorInvalidValue);
  }
  std::snprintf(what, sizeof what, "%s(%s) source", api, kindName(kind));
  if (wantSrcDev) {
    if (!requireRange(src, bytes, MemKind::Device, what)) return fail(cudaErrorInvalidValue);
  } else if (sDev) {
    violation("%s is device memory: a device pointer where the host's is expected", what);
    return fail(cudaErrorInvalidValue);
  }
  if (!wantSrcDev && !isPinned(src)) {
    auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                              static_cast<const unsigned char*>(src) + bytes);
    enqueue(s, api, [dst, staged, bytes] { std::memcpy(dst, staged->data(), bytes); });
    return cudaSuccess;
  }
  if (!wantDstDev && !isPinned(dst)) poison(dst, bytes);
  enqueue(s, api, [dst, src, bytes] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t syncStream(StreamState* s) {
  const cudaError_t e = drain(s);
  return e == cudaSuccess ? cudaSuccess : fail(e);
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue);
  *count = deviceCount();
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* dev) {
  if (!dev) return fail(cudaErrorInvalidValue);
  *dev = currentDev;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) {
  if (dev < 0 || dev >= deviceCount()) return fail(cudaErrorInvalidDevice);
  currentDev = dev;
  return cudaSuccess;
}

// The emulated driver supports exactly the runtime this binary was built with.
cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return fail(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!s || (flags & ~static_cast<unsigned>(cudaStreamNonBlocking))) return fail(cudaErrorInvalidValue);
  auto* st = new StreamState;
  st->device = currentDev;
  std::lock_guard<std::mutex> lock(mu);
  streams.insert(st);
  *s = st;
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  StreamState* st = resolveStream(s, "cudaStreamDestroy");
  if (!s || !st) {
    violation("cudaStreamDestroy: %p is not a live stream", static_cast<void*>(s));
    return fail(cudaErrorInvalidResourceHandle);
  }
  drain(st);  // pending work still completes, as documented
  std::lock_guard<std::mutex> lock(mu);
  streams.erase(st);
  delete st;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  StreamState* st = resolveStream(s, "cudaStreamSynchronize");
  if (!st) {
    violation("cudaStreamSynchronize: %p is not a live stream", static_cast<void*>(s));
    return fail(cudaErrorInvalidResourceHandle);
  }
  return syncStream(st);
}

cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  return syncStream(nullptr);
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!p) return fail(cudaErrorInvalidValue);
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (faultMalloc()) {
    std::fprintf(stderr, "covpool CUDA emulator: injected cudaMalloc failure (%zu bytes)\n", bytes);
    return fail(cudaErrorMemoryAllocation);
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    if (device(currentDev).usedBytes + bytes > deviceCapacity()) return fail(cudaErrorMemoryAllocation);
  }
  return allocateDevice(p, bytes);
}

cudaError_t cudaFree(void* p) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!p) return cudaSuccess;
  drain(nullptr);  // cudaFree synchronizes the device
  std::unique_lock<std::mutex> lock(mu);
  auto it = live.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == live.end() || it->second.block.kind != MemKind::Device) {
    const Mapping* m = mappingAt(reinterpret_cast<std::uintptr_t>(p));
    const char* why = !m ? "a pointer cudaMalloc did not return" : m->freed ? "a block freed before (double free)" : "an interior pointer";
    lock.unlock();
    violation("cudaFree(%p): %s", p, why);
    return fail(cudaErrorInvalidValue);
  }
  Mapping m = it->second;
  live.erase(it);
  device(m.block.device).usedBytes -= m.block.bytes;
  liveDeviceBytes -= m.block.bytes;
  retire(m);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int flags) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!p) return fail(cudaErrorInvalidValue);
  (void)flags;
  *p = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (faultMalloc()) return fail(cudaErrorMemoryAllocation);
  void* q = std::malloc(bytes);
  if (!q) return fail(cudaErrorMemoryAllocation);
  poison(q, bytes);
  std::lock_guard<std::mutex> lock(mu);
  Mapping m;
  m.block = Block{reinterpret_cast<std::uintptr_t>(q), bytes, MemKind::Pinned, currentDev, ++serials};
  live.emplace(m.block.begin, m);
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void* p) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!p) return cudaSuccess;
  drain(nullptr);  // as cudaFree: nothing queued may still read or write it
  std::unique_lock<std::mutex> lock(mu);
  auto it = live.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == live.end() || it->second.block.kind != MemKind::Pinned) {
    lock.unlock();
    violation("cudaFreeHost(%p): not a pointer cudaHostAlloc/cudaMallocHost returned (or freed twice)", p);
    return fail(cudaErrorInvalidValue);
  }
  live.erase(it);
  std::free(p);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  if (!free || !total) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(mu);
  *total = deviceCapacity();
  *free = *total - std::min(*total, device(currentDev).usedBytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  return queueCopy(dst, src, bytes, kind, stream, "cudaMemcpyAsync");
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = queueCopy(dst, src, bytes, kind, nullptr, "cudaMemcpy"); e != cudaSuccess) return e;
  return syncStream(nullptr);  // blocking: everything before it (legacy stream semantics) and the copy
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (cudaError_t e = enter(); e != cudaSuccess) return fail(e);
  StreamState* s = resolveStream(stream, "cudaMemsetAsync");
  if (!s) {
    violation("cudaMemsetAsync: stream %p is not a live stream", static_cast<void*>(stream));
    return fail(cudaErrorInvalidResourceHandle);
  }
  if (!requireRange(dst, bytes, MemKind::Device, "cudaMemsetAsync destination")) return fail(cudaErrorInvalidValue);
  if (bytes) enqueue(s, "cudaMemsetAsync", [dst, value, bytes] { std::memset(dst, value, bytes); });
  return cudaSuccess;
}

// ---- events: a marker in a stream's queue; synchronizing on one runs that stream up to it ----------

struct CUevent_st {
  StreamState* stream = nullptr;  // where it was last recorded (null: never)
  std::uint64_t recorded = 0;     // how many times it was recorded, and how many of those ran
  std::uint64_t reached = 0;
};
namespace {
std::set<const CUevent_st*> events;
CUevent_st* liveEvent(cudaEvent_t e, const char* api) {
  std::lock_guard<std::mutex> lock(mu);
  if (e && events.count(e)) return e;
  return nullptr;
}
}  // namespace

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  if (cudaError_t err = enter(); err != cudaSuccess) return fail(err);
  if (!e || (flags & ~static_cast<unsigned>(cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess)))
    return fail(cudaErrorInvalidValue);
  auto* ev = new CUevent_st;
  std::lock_guard<std::mutex> lock(mu);
  events.insert(ev);
  *e = ev;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream) {
  if (cudaError_t err = enter(); err != cudaSuccess) return fail(err);
  CUevent_st* ev = liveEvent(e, "cudaEventRecord");
  StreamState* s = resolveStream(stream, "cudaEventRecord");
  if (!ev || !s) {
    violation("cudaEventRecord: %s", !ev ? "not a live event" : "not a live stream");
    return fail(cudaErrorInvalidResourceHandle);
  }
  std::uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu);
    ev->stream = s;
    n = ++ev->recorded;
  }
  enqueue(s, "cudaEventRecord", [ev, n] { ev->reached = std::max(ev->reached, n); });
  return cudaSuccess;
}

// Waits for the event's last record: here, runs its stream's queue up to that record and no
// further (a GPU may have run more; relying on that is a missing wait, which this shows).
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (cudaError_t err = enter(); err != cudaSuccess) return fail(err);
  CUevent_st* ev = liveEvent(e, "cudaEventSynchronize");
  if (!ev) {
    violation("cudaEventSynchronize: %p is not a live event", static_cast<void*>(e));
    return fail(cudaErrorInvalidResourceHandle);
  }
  StreamState* from;
  std::uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu);
    from = ev->stream;
    n = ev->recorded;
  }
  if (!from) return cudaSuccess;  // never recorded: complete
  const cudaError_t r = drain(from, [ev, n] { return ev->reached >= n; });
  return r == cudaSuccess ? cudaSuccess : fail(r);
}

// Work queued on `stream` after this waits for the event's last record: here, when the wait is
// reached, the recording stream runs up to that record and no further. Work on `stream` that does
// not wait reads what the other stream has not written yet: NaN, in fresh memory.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t e, unsigned int flags) {
  if (cudaError_t err = enter(); err != cudaSuccess) return fail(err);
  CUevent_st* ev = liveEvent(e, "cudaStreamWaitEvent");
  StreamState* s = resolveStream(stream, "cudaStreamWaitEvent");
  if (!ev || !s || flags != 0) {
    violation("cudaStreamWaitEvent: %s", !ev ? "not a live event" : !s ? "not a live stream" : "flags must be 0");
    return fail(!ev || !s ? cudaErrorInvalidResourceHandle : cudaErrorInvalidValue);
  }
  StreamState* from;
  std::uint64_t n;
  {
    std::lock_guard<std::mutex> lock(mu);
    from = ev->stream;
    n = ev->recorded;
  }
  if (!from || from == s) return cudaSuccess;  // never recorded, or the same stream: in order anyway
  enqueue(s, "cudaStreamWaitEvent", [ev, from, n] {
    drain(from, [ev, n] { return ev->reached >= n; });
  });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (cudaError_t err = enter(); err != cudaSuccess) return fail(err);
  CUevent_st* ev = liveEvent(e, "cudaEventQuery");
  if (!ev) return fail(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(mu);
  return ev->reached >= ev->recorded ? cudaSuccess : cudaErrorNotReady;  // not an error: not sticky, not recorded
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(mu);
  if (!e || !events.erase(e)) return fail(cudaErrorInvalidResourceHandle);
  // A record still queued would write into it: keep the object (a few bytes) rather than free it.
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t sticky = stickyError();
  if (sticky != cudaSuccess) return sticky;
  const cudaError_t e = lastError;
  lastError = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  const cudaError_t sticky = stickyError();
  return sticky != cudaSuccess ? sticky : lastError;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotReady: return "device not ready";
    default: return "unknown error";
  }
}
