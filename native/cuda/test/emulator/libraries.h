// Helpers shared by the emulated cuBLAS (cublas.cpp) and cuSOLVER (cusolver.cpp): operand ranges
// of column-major batched matrices, checked against the device memory registry.
#pragma once
#include <cstddef>
#include <cstdio>
#include <string>

#include "emulator.h"

namespace cuemu {

// A column-major rows x cols matrix with leading dimension ld, batch items `stride` elements apart:
// checks that every item's extent ((cols - 1) * ld + rows elements from its start) lies inside one
// live device block. Empty matrices touch nothing.
template <class T>
bool requireMatrices(const char* call, const char* name, const T* p, long long rows, long long cols, long long ld, long long stride,
                     long long batch) {
  if (rows <= 0 || cols <= 0 || batch <= 0) return true;
  const std::size_t extent = static_cast<std::size_t>((cols - 1) * ld + rows) * sizeof(T);
  for (long long b = 0; b < batch; ++b) {
    char what[192];
    std::snprintf(what, sizeof what, "%s: %s of batch item %lld (%lld x %lld, ld %lld)", call, name, b, rows, cols, ld);
    if (!requireRange(p + b * stride, extent, MemKind::Device, what)) return false;
  }
  return true;
}

// Whether two item extents overlap (an output aliasing an input: undefined in cuBLAS).
inline bool overlaps(const void* a, std::size_t an, const void* b, std::size_t bn) {
  const char* x = static_cast<const char*>(a);
  const char* y = static_cast<const char*>(b);
  return an && bn && x < y + bn && y < x + an;
}

// A deterministic sign for eigenvector j of item k of call c: the emulated eigensolvers flip
// vectors by it, so code that depends on one library's sign convention fails here.
inline bool flipSign(unsigned long long c, long long k, long long j) {
  unsigned long long h = c * 0x9e3779b97f4a7c15ULL ^ static_cast<unsigned long long>(k) * 0xbf58476d1ce4e5b9ULL ^
                         static_cast<unsigned long long>(j) * 0x94d049bb133111ebULL;
  h ^= h >> 31;
  h *= 0xd6e8feb86659fd39ULL;
  h ^= h >> 28;
  return h & 1;
}

}  // namespace cuemu
