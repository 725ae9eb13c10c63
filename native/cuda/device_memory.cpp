#include "device_memory.h"

#include <cuda_runtime.h>

#include <string>

#include "../core/errors.h"

namespace covpool::cuda {

DeviceCache::DeviceCache(int device, std::size_t limitBytes, bool exact) : device_(device), limit_(limitBytes), exact_(exact) {}

std::size_t DeviceCache::roundUp(std::size_t bytes) const {
  if (exact_) return bytes;
  const std::size_t small = 512, large = std::size_t(2) << 20;
  const std::size_t step = bytes < (std::size_t(1) << 20) ? small : large;
  return (bytes + step - 1) / step * step;
}

void* DeviceCache::allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t size = roundUp(bytes);
  if (!exact_) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = parked_.find(size);
    if (it != parked_.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      parkedBytes_ -= size;
      liveBytes_ += size;
      return p;
    }
  }
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, size);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: the retry below decides
    trim(true);
    e = cudaMalloc(&p, size);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    std::lock_guard<std::mutex> lock(mu_);
    fail("out of GPU memory on cuda:" + std::to_string(device_) + ": could not allocate " +
         std::to_string(size >> 20) + " MiB (" + std::to_string(liveBytes_ >> 20) +
         " MiB in use by covpool; reduce B or C): " + cudaGetErrorString(e));
  }
  std::lock_guard<std::mutex> lock(mu_);
  liveBytes_ += size;
  return p;
}

void DeviceCache::release(void* p, std::size_t bytes) noexcept {
  if (!p) return;
  const std::size_t size = roundUp(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  try {
    parked_[size].push_back(p);
  } catch (...) {
    return;  // out of host memory for the bookkeeping: leak the block rather than throw from a destructor
  }
  parkedBytes_ += size;
  liveBytes_ -= size;
}

void DeviceCache::trim(bool everything) {
  std::vector<std::pair<void*, std::size_t>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const std::size_t keep = everything || exact_ ? 0 : limit_;
    if (!everything && !exact_ && (limit_ == 0 || parkedBytes_ <= keep)) return;
    for (auto& [size, blocks] : parked_) {
      while (!blocks.empty() && parkedBytes_ > keep) {
        victims.emplace_back(blocks.back(), size);
        blocks.pop_back();
        parkedBytes_ -= size;
      }
    }
  }
  for (auto& v : victims) cudaFree(v.first);  // errors here are not actionable; the block is gone either way
}

std::size_t DeviceCache::parkedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return parkedBytes_;
}

std::size_t DeviceCache::liveBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return liveBytes_;
}

}  // namespace covpool::cuda
