// Small helpers on one n x n row-major matrix, used by every per-sample kernel.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace covpool::cpu {

template <class T> using Vec = std::vector<T>;

template <class T> void setIdentity(T* a, int n, T diag = T(1)) {
  for (int i = 0; i < n * n; ++i) a[i] = T(0);
  for (int i = 0; i < n; ++i) a[i * n + i] = diag;
}

// out = (a + a^T) / 2; out may alias a. In blocks of 64 bytes a row, so that the column-order
// half stays in cache (see mirrorUpper).
template <class T> void symmetrize(const T* a, T* out, int n) {
  constexpr int block = 64 / sizeof(T);
  for (int ib = 0; ib < n; ib += block)
    for (int jb = ib; jb < n; jb += block)
      for (int i = ib; i < std::min(ib + block, n); ++i) {
        if (jb == ib) out[i * n + i] = a[i * n + i];
        for (int j = std::max(jb, i + 1); j < std::min(jb + block, n); ++j) {
          const T v = T(0.5) * (a[i * n + j] + a[j * n + i]);
          out[i * n + j] = v;
          out[j * n + i] = v;
        }
      }
}

#if defined(__SSE2__)
// One K x K tile of the strict upper triangle, rows i.., columns j.. (j > i), copied transposed to
// rows j.., columns i..; K = 16 / sizeof(T): a tile row is one SSE register.
inline void transposeTileBelow(float* a, int n, int i, int j) {
  __m128 r0 = _mm_loadu_ps(a + (i + 0) * n + j), r1 = _mm_loadu_ps(a + (i + 1) * n + j);
  __m128 r2 = _mm_loadu_ps(a + (i + 2) * n + j), r3 = _mm_loadu_ps(a + (i + 3) * n + j);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(a + (j + 0) * n + i, r0);
  _mm_storeu_ps(a + (j + 1) * n + i, r1);
  _mm_storeu_ps(a + (j + 2) * n + i, r2);
  _mm_storeu_ps(a + (j + 3) * n + i, r3);
}
inline void transposeTileBelow(double* a, int n, int i, int j) {
  const __m128d r0 = _mm_loadu_pd(a + i * n + j), r1 = _mm_loadu_pd(a + (i + 1) * n + j);
  _mm_storeu_pd(a + j * n + i, _mm_unpacklo_pd(r0, r1));
  _mm_storeu_pd(a + (j + 1) * n + i, _mm_unpackhi_pd(r0, r1));
}
#endif

// Copies the upper triangle into the lower one (syrk and gemmUpper fill only one triangle).
// A plain column-order copy misses the cache on every write at n = 256 (90 us there, a third of a
// 256^3 GEMM; the symmetric products of newton_schulz.h mirror every result): this one works in
// blocks of 128 bytes a row (a block's rows stay cached without set conflicts at power-of-two
// strides) and moves K x K tiles with SSE2 transposes; about 10x faster at n = 256.
template <class T> void mirrorUpper(T* a, int n) {
#if defined(__SSE2__)
  constexpr int K = 16 / sizeof(T), block = 128 / sizeof(T);
  const int nk = n / K * K;  // rows and columns below nk go tile by tile
  for (int ib = 0; ib < nk; ib += block)
    for (int jb = ib; jb < nk; jb += block)
      for (int i = ib; i < std::min(ib + block, nk); i += K)
        for (int j = std::max(jb, i); j < std::min(jb + block, nk); j += K) {
          if (j > i) {
            transposeTileBelow(a, n, i, j);
          } else {  // a tile on the diagonal
            for (int r = 0; r < K; ++r)
              for (int c = r + 1; c < K; ++c) a[(i + c) * n + i + r] = a[(i + r) * n + i + c];
          }
        }
#else
  const int nk = 0;
#endif
  for (int i = 0; i < n; ++i)  // the rest (all of it without SSE2): columns from nk on
    for (int j = std::max(i + 1, nk); j < n; ++j) a[j * n + i] = a[i * n + j];
}

template <class T> T trace(const T* a, int n) {
  T s = 0;
  for (int i = 0; i < n; ++i) s += a[i * n + i];
  return s;
}

// sum of term(i) for i < count, in Acc, over eight partial sums: one running sum waits on its
// previous addition for every term (4 cycles each), eight keep the vector units busy (4x faster
// at n = 64). Always inlined, so the loop vectorizes for the caller's instruction set (the AVX2
// clones of symmetric_eigen.h included).
template <class Acc, class Term> [[gnu::always_inline]] inline Acc sumOverEight(std::size_t count, Term&& term) {
  Acc acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8)
    for (int u = 0; u < 8; ++u) acc[u] += term(i + u);
  for (; i < count; ++i) acc[0] += term(i);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// sum a_i b_i in double.
template <class T> double dotInDouble(const T* a, const T* b, std::size_t count) {
  return sumOverEight<double>(count, [&](std::size_t i) { return static_cast<double>(a[i]) * b[i]; });
}

template <class T> T dot(const T* a, const T* b, std::size_t count) {
  // Accumulate in double: these inner products feed normalization gradients.
  return static_cast<T>(dotInDouble(a, b, count));
}

// True when no entry is NaN or +-Infinity, i.e. none has an all-ones exponent. Tested on the bits
// with no branch per entry, so the loop vectorizes (a std::isfinite loop with an early exit does not).
template <class T> bool allFinite(const T* a, std::size_t count) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(Bits) == sizeof(T), "float or double");
  constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
  Bits bad = 0;
  for (std::size_t i = 0; i < count; ++i) {
    Bits u;
    std::memcpy(&u, a + i, sizeof u);
    bad |= static_cast<Bits>((u & exponent) == exponent);
  }
  return bad == 0;
}

template <class S, class D> void convert(const S* src, D* dst, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<D>(src[i]);
}

}  // namespace covpool::cpu
