#include "host_cache.h"

#include <algorithm>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <new>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>
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

// ---- per-thread scratch ----------------------------------------------------------------------

struct ScratchRegistry {
  std::mutex m;  // guards `slots` and every slot's size as seen from other threads
  std::unordered_set<ScratchSlot*> slots;
  std::shared_mutex calls;  // shared by running calls, exclusive while scratch is freed
};
ScratchRegistry& scratchRegistry() {
  static ScratchRegistry* r = new ScratchRegistry;  // never destroyed: threads may exit after main
  return *r;
}

ScratchSlot::ScratchSlot() {
  ScratchRegistry& r = scratchRegistry();
  std::lock_guard<std::mutex> lk(r.m);
  r.slots.insert(this);
}
ScratchSlot::~ScratchSlot() {
  ScratchRegistry& r = scratchRegistry();
  {
    std::lock_guard<std::mutex> lk(r.m);
    r.slots.erase(this);
  }
  std::free(p_);
}
void* ScratchSlot::get(std::size_t bytes) {
  if (bytes <= bytes_) return p_;
  const std::size_t size = (bytes + 4095) / 4096 * 4096;
  void* p = std::aligned_alloc(kAlign, size);
  if (!p) throw std::bad_alloc();
  ScratchRegistry& r = scratchRegistry();
  std::lock_guard<std::mutex> lk(r.m);
  std::free(p_);
  p_ = p;
  bytes_ = size;
  return p_;
}
void ScratchSlot::release() {
  std::free(p_);
  p_ = nullptr;
  bytes_ = 0;
}

CallInProgress::CallInProgress() { scratchRegistry().calls.lock_shared(); }
CallInProgress::~CallInProgress() { scratchRegistry().calls.unlock_shared(); }

std::size_t releaseScratch() {
  ScratchRegistry& r = scratchRegistry();
  std::unique_lock<std::shared_mutex> idle(r.calls, std::try_to_lock);
  if (!idle.owns_lock()) return 0;  // a call is computing: its items use their scratch
  std::lock_guard<std::mutex> lk(r.m);
  std::size_t freed = 0;
  for (ScratchSlot* s : r.slots) {
    freed += s->bytes();
    s->release();
  }
  return freed;
}

std::size_t scratchBytes() {
  ScratchRegistry& r = scratchRegistry();
  std::lock_guard<std::mutex> lk(r.m);
  std::size_t total = 0;
  for (ScratchSlot* s : r.slots) total += s->bytes();
  return total;
}

HostCacheStats hostCacheStats() {
  const std::size_t scratch = scratchBytes();
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.m);
  return {c.parked, c.live, c.peak, c.limit, scratch};
}

std::size_t hostCacheRelease() {
  std::unordered_map<std::size_t, std::vector<void*>> blocks;
  std::size_t released = releaseScratch();
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.m);
    blocks.swap(c.free);
    released += c.parked;
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
