// A caching allocator for host memory. Fresh memory is expensive: every page is faulted in on
// first touch (measured on a 2-core VM: ~60 ms for the 63 MB Newton-Schulz tape of one cpu-l
// step, more than the GEMMs themselves). Training repeats the same shapes step after step, so
// blocks freed by one step are kept, by exact size, and handed to the next one already mapped.
// The cache is bounded (COVPOOL_HOST_CACHE_MB, default 2048); beyond it blocks go back to the OS.
#pragma once
#include <cstddef>
#include <utility>

namespace covpool {

void* cachedAlloc(std::size_t bytes);
void cachedFree(void* p, std::size_t bytes);
std::size_t hostCacheBytes();  // bytes currently parked in the cache

struct HostCacheStats {
  std::size_t cachedBytes = 0;     // parked: freed by covpool, kept for reuse
  std::size_t allocatedBytes = 0;  // in use: held by states, buffers and running calls
  std::size_t peakAllocatedBytes = 0;
  std::size_t limitBytes = 0;      // COVPOOL_HOST_CACHE_MB
  std::size_t scratchBytes = 0;    // per-thread work space (see ScratchSlot)
};
HostCacheStats hostCacheStats();
// Returns every parked block to the system (and, on glibc, trims the heap so the process' RSS
// drops); blocks in use are not touched. Returns the bytes released from the cache.
std::size_t hostCacheRelease();

// Per-thread scratch: the work space of the batch item a thread is computing, kept between calls
// (a training loop needs the same sizes every step) but registered, so that emptyCache() can free
// it. It is freed only while no native call runs (see CallInProgress), since a running item uses it.
class ScratchSlot {
 public:
  ScratchSlot();
  ~ScratchSlot();
  ScratchSlot(const ScratchSlot&) = delete;
  ScratchSlot& operator=(const ScratchSlot&) = delete;
  // At least `bytes` bytes, 64-byte aligned; contents are whatever the last use left.
  void* get(std::size_t bytes);
  void release();  // called by releaseScratch() only
  std::size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// Held by every native call while it computes (sync or async).
class CallInProgress {
 public:
  CallInProgress();
  ~CallInProgress();
  CallInProgress(const CallInProgress&) = delete;
  CallInProgress& operator=(const CallInProgress&) = delete;
};

// Frees every thread's scratch if no call is running now; returns the bytes freed (0 otherwise).
std::size_t releaseScratch();
// Bytes of scratch held over all threads.
std::size_t scratchBytes();

// A fixed-size array of T in cached memory; contents are NOT zero-initialized.
template <class T> class CachedArray {
 public:
  CachedArray() = default;
  explicit CachedArray(std::size_t n) { resize(n); }
  CachedArray(const CachedArray&) = delete;
  CachedArray& operator=(const CachedArray&) = delete;
  CachedArray(CachedArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CachedArray& operator=(CachedArray&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~CachedArray() { release(); }

  void resize(std::size_t n) {
    release();
    if (n) p_ = static_cast<T*>(cachedAlloc(n * sizeof(T)));
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  // Gives up the memory without freeing it: the caller owns it and frees it with
  // cachedFree(p, size() * sizeof(T)) as read before the call.
  T* releaseOwnership() {
    n_ = 0;
    return std::exchange(p_, nullptr);
  }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }

 private:
  void release() {
    if (p_) cachedFree(p_, n_ * sizeof(T));
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace covpool
