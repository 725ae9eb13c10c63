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
// b's K x K tile (j, i) = a's tile (i, j) transposed, K = 16 / sizeof(T): a tile row is one SSE
// register; n is the row stride of both. All of a tile is loaded before any of it is stored, so b
// may be a (mirrorUpper: tiles of one array).
inline void transposeTile(const float* a, float* b, int n, int i, int j) {
  __m128 r0 = _mm_loadu_ps(a + (i + 0) * n + j), r1 = _mm_loadu_ps(a + (i + 1) * n + j);
  __m128 r2 = _mm_loadu_ps(a + (i + 2) * n + j), r3 = _mm_loadu_ps(a + (i + 3) * n + j);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(b + (j + 0) * n + i, r0);
  _mm_storeu_ps(b + (j + 1) * n + i, r1);
  _mm_storeu_ps(b + (j + 2) * n + i, r2);
  _mm_storeu_ps(b + (j + 3) * n + i, r3);
}
inline void transposeTile(const double* a, double* b, int n, int i, int j) {
  const __m128d r0 = _mm_loadu_pd(a + i * n + j), r1 = _mm_loadu_pd(a + (i + 1) * n + j);
  _mm_storeu_pd(b + j * n + i, _mm_unpacklo_pd(r0, r1));
  _mm_storeu_pd(b + (j + 1) * n + i, _mm_unpackhi_pd(r0, r1));
}
// The K x K tiles (i, j) and (j, i) of d = u - u^T (i <= j; u and d n x n, distinct).
inline void antisymmetricTiles(const float* u, float* d, int n, int i, int j) {
  __m128 a0 = _mm_loadu_ps(u + (i + 0) * n + j), a1 = _mm_loadu_ps(u + (i + 1) * n + j);
  __m128 a2 = _mm_loadu_ps(u + (i + 2) * n + j), a3 = _mm_loadu_ps(u + (i + 3) * n + j);
  __m128 t0 = _mm_loadu_ps(u + (j + 0) * n + i), t1 = _mm_loadu_ps(u + (j + 1) * n + i);
  __m128 t2 = _mm_loadu_ps(u + (j + 2) * n + i), t3 = _mm_loadu_ps(u + (j + 3) * n + i);
  _MM_TRANSPOSE4_PS(t0, t1, t2, t3);
  a0 = _mm_sub_ps(a0, t0); a1 = _mm_sub_ps(a1, t1); a2 = _mm_sub_ps(a2, t2); a3 = _mm_sub_ps(a3, t3);
  _mm_storeu_ps(d + (i + 0) * n + j, a0);
  _mm_storeu_ps(d + (i + 1) * n + j, a1);
  _mm_storeu_ps(d + (i + 2) * n + j, a2);
  _mm_storeu_ps(d + (i + 3) * n + j, a3);
  if (i == j) return;
  _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
  const __m128 zero = _mm_setzero_ps();
  _mm_storeu_ps(d + (j + 0) * n + i, _mm_sub_ps(zero, a0));
  _mm_storeu_ps(d + (j + 1) * n + i, _mm_sub_ps(zero, a1));
  _mm_storeu_ps(d + (j + 2) * n + i, _mm_sub_ps(zero, a2));
  _mm_storeu_ps(d + (j + 3) * n + i, _mm_sub_ps(zero, a3));
}
inline void antisymmetricTiles(const double* u, double* d, int n, int i, int j) {
  const __m128d a0 = _mm_loadu_pd(u + i * n + j), a1 = _mm_loadu_pd(u + (i + 1) * n + j);
  const __m128d t0 = _mm_loadu_pd(u + j * n + i), t1 = _mm_loadu_pd(u + (j + 1) * n + i);
  const __m128d d0 = _mm_sub_pd(a0, _mm_unpacklo_pd(t0, t1)), d1 = _mm_sub_pd(a1, _mm_unpackhi_pd(t0, t1));
  _mm_storeu_pd(d + i * n + j, d0);
  _mm_storeu_pd(d + (i + 1) * n + j, d1);
  if (i == j) return;
  const __m128d zero = _mm_setzero_pd();
  _mm_storeu_pd(d + j * n + i, _mm_sub_pd(zero, _mm_unpacklo_pd(d0, d1)));
  _mm_storeu_pd(d + (j + 1) * n + i, _mm_sub_pd(zero, _mm_unpackhi_pd(d0, d1)));
}
#endif

// b = a^T (n x n, distinct arrays), in K x K tiles (SSE2 transposes) within blocks of 128 bytes a
// row, as mirrorUpper.
template <class T> void transposeInto(const T* a, T* b, int n) {
#if defined(__SSE2__)
  constexpr int K = 16 / sizeof(T), block = 128 / sizeof(T);
  const int nk = n / K * K;
  for (int ib = 0; ib < nk; ib += block)
    for (int jb = 0; jb < nk; jb += block)
      for (int i = ib; i < std::min(ib + block, nk); i += K)
        for (int j = jb; j < std::min(jb + block, nk); j += K) transposeTile(a, b, n, i, j);
#else
  const int nk = 0;
#endif
  for (int i = 0; i < n; ++i)  // rows or columns from nk on
    for (int j = (i < nk ? nk : 0); j < n; ++j) b[j * n + i] = a[i * n + j];
}

// Copies the upper triangle into the lower one (syrk and gemmUpper fill only one triangle); lda is
// the row stride (n when 0). A plain column-order copy misses the cache on every write at n = 256
// (90 us there, a third of a 256^3 GEMM; the symmetric products of newton_schulz.h mirror every
// result): this one works in blocks of 128 bytes a row (a block's rows stay cached without set
// conflicts at power-of-two strides) and moves K x K tiles with SSE2 transposes; about 10x faster
// at n = 256.
template <class T> void mirrorUpper(T* a, int n, int lda = 0) {
  if (lda == 0) lda = n;
#if defined(__SSE2__)
  constexpr int K = 16 / sizeof(T), block = 128 / sizeof(T);
  const int nk = n / K * K;  // rows and columns below nk go tile by tile
  for (int ib = 0; ib < nk; ib += block)
    for (int jb = ib; jb < nk; jb += block)
      for (int i = ib; i < std::min(ib + block, nk); i += K)
        for (int j = std::max(jb, i); j < std::min(jb + block, nk); j += K) {
          if (j > i) {
            transposeTile(a, a, lda, i, j);
          } else {  // a tile on the diagonal
            for (int r = 0; r < K; ++r)
              for (int c = r + 1; c < K; ++c) a[(i + c) * lda + i + r] = a[(i + r) * lda + i + c];
          }
        }
#else
  const int nk = 0;
#endif
  for (int i = 0; i < n; ++i)  // the rest (all of it without SSE2): columns from nk on
    for (int j = std::max(i + 1, nk); j < n; ++j) a[j * lda + i] = a[i * lda + j];
}

// x += alpha c on the upper triangle (diagonal included), then mirrored: x = upper(x) + alpha c
// for a symmetric c whose sum with x is symmetric. Row strides ldx, ldc.
template <class T> void addUpperAndMirror(T* x, int ldx, const T* c, int ldc, T alpha, int n) {
  for (int i = 0; i < n; ++i) {
    T* xr = x + static_cast<std::size_t>(i) * ldx;
    const T* cr = c + static_cast<std::size_t>(i) * ldc;
    for (int j = i; j < n; ++j) xr[j] += alpha * cr[j];
  }
  mirrorUpper(x, n, ldx);
}

// d = u - u^T (n x n, distinct arrays): the commutator B C - C B from U = B C. In K x K tiles,
// blocks of 128 bytes a row, as mirrorUpper.
template <class T> void antisymmetricPart(const T* u, T* d, int n) {
#if defined(__SSE2__)
  constexpr int K = 16 / sizeof(T), block = 128 / sizeof(T);
  const int nk = n / K * K;
  for (int ib = 0; ib < nk; ib += block)
    for (int jb = ib; jb < nk; jb += block)
      for (int i = ib; i < std::min(ib + block, nk); i += K)
        for (int j = std::max(jb, i); j < std::min(jb + block, nk); j += K) antisymmetricTiles(u, d, n, i, j);
#else
  const int nk = 0;
#endif
  for (int i = 0; i < n; ++i)  // columns from nk on, and their mirror images
    for (int j = std::max(i, nk); j < n; ++j) {
      const T v = u[i * n + j] - u[j * n + i];
      d[i * n + j] = v;
      d[j * n + i] = -v;
    }
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
