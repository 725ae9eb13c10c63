// A caching allocator for device memory, one per GPU. cudaMalloc / cudaFree are slow and cudaFree
// synchronizes the whole device, so doing them per call would serialize a training loop on the
// allocator. Training repeats the same shapes step after step: freed blocks are kept by (rounded)
// size and handed to the next request of that size. Needs only the CUDA runtime.
//
// Safety of reuse without events: the backend issues all work for one device on one stream, so a
// block handed back while kernels that use it are still queued can only be reused by work queued
// after them on that same stream.
#pragma once
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace covpool::cuda {

class DeviceCache {
 public:
  // limitBytes: how much freed memory may stay parked (0 = no limit, like PyTorch's allocator;
  // everything parked is released when an allocation would otherwise fail).
  // exact: allocate exactly the bytes asked for and never hand a freed block out again (freed
  // blocks go back to the driver at the start of the next op, where the device is current). A
  // debugging switch (COVPOOL_CUDA_EXACT_ALLOC=1): with it, an out-of-bounds access into what
  // would be rounding slack, or a read of a block after its release, reaches memory the
  // sanitizers and the emulated device can see (the emulated suite runs both ways).
  DeviceCache(int device, std::size_t limitBytes, bool exact = false);
  DeviceCache(const DeviceCache&) = delete;
  DeviceCache& operator=(const DeviceCache&) = delete;

  // The calling thread must have this cache's device current. Throws CovpoolError when the
  // device is out of memory even after releasing everything parked.
  void* allocate(std::size_t bytes);
  // Parks a block; makes no CUDA call, so it is safe from any thread (a state freed by the JS
  // garbage collector) and never blocks. Blocks over the limit are released by trim().
  void release(void* p, std::size_t bytes) noexcept;
  // Returns parked blocks to the driver until at most limitBytes stay parked (all with
  // everything = true). Device must be current; synchronizes the device (cudaFree does).
  void trim(bool everything = false);

  std::size_t parkedBytes() const;
  std::size_t liveBytes() const;
  int device() const { return device_; }
  bool exact() const { return exact_; }
  // Sizes are rounded so that nearby shapes share blocks: 512 B steps below 1 MiB, 2 MiB steps
  // above (the granularity the driver maps large allocations in anyway). Exact caches do not round.
  std::size_t roundUp(std::size_t bytes) const;

 private:
  int device_;
  std::size_t limit_;
  bool exact_;
  mutable std::mutex mu_;
  std::unordered_map<std::size_t, std::vector<void*>> parked_;
  std::size_t parkedBytes_ = 0, liveBytes_ = 0;
};

// A typed, move-only block of device memory from a DeviceCache; contents are not initialized.
template <class T> class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(DeviceCache& cache, std::size_t count) { reset(cache, count); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      free();
      swap(o);
    }
    return *this;
  }
  ~DeviceArray() { free(); }

  void reset(DeviceCache& cache, std::size_t count) {
    free();
    if (count) p_ = static_cast<T*>(cache.allocate(count * sizeof(T)));
    cache_ = &cache;
    n_ = count;
  }
  T* data() const { return p_; }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }
  DeviceCache* cache() const { return cache_; }
  // Gives up ownership: the caller returns the block to cache() (release(p, bytes())) itself.
  T* release() noexcept {
    T* p = p_;
    p_ = nullptr;
    n_ = 0;
    return p;
  }
  void swap(DeviceArray& o) noexcept {
    std::swap(cache_, o.cache_);
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
  }

 private:
  void free() noexcept {
    if (p_ && cache_) cache_->release(p_, n_ * sizeof(T));
    p_ = nullptr;
    n_ = 0;
  }
  DeviceCache* cache_ = nullptr;
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

}  // namespace covpool::cuda
