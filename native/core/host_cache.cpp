#include "host_cache.h"

#include <algorithm>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace covpool {
namespace {

struct Cache {
  std::mutex m;
  std::unordered_map<std::size_t, std::vector<void*>> free;  // by rounded size
  std::size_t parked = 0;
  std::size_t live = 0, peak = 0;  // handed out and not yet freed
  std::size_t limit = [] {
    const char* env = std::getenv("COVPOOL_HOST_CACHE_MB");
    const long mb = env ? std::atol(env) : 2048;
    return static_cast<std::size_t>(mb < 0 ? 0 : mb) << 20;
  }();
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: frees may arrive during process exit
  return *c;
}

// 64-byte alignment for SIMD kernels; sizes rounded so nearby shapes can share blocks.
constexpr std::size_t kAlign = 64;
std::size_t rounded(std::size_t bytes) {
  const std::size_t page = 4096;
  return bytes <= page ? (bytes + kAlign - 1) / kAlign * kAlign : (bytes + page - 1) / page * page;
}

}  // namespace

void* cachedAlloc(std::size_t bytes) {
  const std::size_t size = rounded(bytes);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.m);
    auto it = c.free.find(size);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.parked -= size;
      c.live += size;
      c.peak = std::max(c.peak, c.live);
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, size);
  if (!p) throw std::bad_alloc();
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.m);
  c.live += size;
  c.peak = std::max(c.peak, c.live);
  return p;
}

void cachedFree(void* p, std::size_t bytes) {
  if (!p) return;
  const std::size_t size = rounded(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lk(c.m);
    c.live -= size;
    if (c.parked + size <= c.limit) {
      c.free[size].push_back(p);
      c.parked += size;
      return;
    }
  }
  std::free(p);
}

HostCacheStats hostCacheStats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.m);
  return {c.parked, c.live, c.peak, c.limit};
}

std::size_t hostCacheRelease() {
  std::unordered_map<std::size_t, std::vector<void*>> blocks;
  std::size_t released = 0;
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.m);
    blocks.swap(c.free);
    released = c.parked;
    c.parked = 0;
  }
  for (auto& kv : blocks)
    for (void* p : kv.second) std::free(p);
#if defined(__GLIBC__)
  malloc_trim(0);  // freed heap pages go back to the OS only when the heap is trimmed
#endif
  return released;
}

std::size_t hostCacheBytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.m);
  return c.parked;
}

}  // namespace covpool
