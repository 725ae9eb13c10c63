// covpool's own GEMM for the matrices of GCP heads, AVX2 + FMA and AVX-512, row-major:
//   C (m x n) = alpha * sum over terms t of op(A_t) B_t + beta * C,  op(A_t): m x k_t, B_t: k_t x n,
// optionally only the upper triangle of a square C (the symmetric products of newton_schulz.h and
// mpa_lya.h). Register-blocked tiles of MR rows by two vectors, B read in place, no packing
// (small_gemm_body.inc).
//
// Why: OpenBLAS packs both operands on every call. For its AVX-512 kernels (SkylakeX, Cooperlake)
// it has small-matrix paths that skip the packing, but its AVX2 kernels (Haswell, Zen: what
// AVX2-only x86 CPUs run) have none, and at n = 64 packing and the calls' overhead are a fifth of
// a product's time. Triangles suffer twice: gemmUpper's staircase of wide GEMMs (blas.h) does 0.625
// of the flops at n = 64 and takes 0.74-0.8 of a GEMM's time there, where the tiles here stop at the
// diagonal (0.53 of the flops) and several products (the two terms of a tangent, or a k = 2n
// product) accumulate in the same registers. Measured per call by bench/native/mpa_lya.cpp, which
// prints both.
//
// Used for matrices no larger than kSmallGemmMax rows and columns (k up to kSmallGemmMaxK), when
// op(B) is B itself (no transposed B: its columns would be gathered); everything else goes to
// OpenBLAS. Any column count: a last, partial vector is read and written with masks. The level (simd_level.h) picks the kernels;
// COVPOOL_CPU_SIMD=baseline turns them off (OpenBLAS does all products).
#pragma once
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>

#include "simd_level.h"

#ifdef COVPOOL_X86_DISPATCH
#include <immintrin.h>
#endif

// OpenBLAS's name for the kernels it picked (OPENBLAS_CORETYPE or its own detection); weak, so that
// another CBLAS links too.
extern "C" char* openblas_get_corename(void) __attribute__((weak));

namespace covpool::cpu {

// One term of a sum of products: op(A) B with op(A) m x k (A itself when !ta, row stride lda; A^T
// when ta, A being k x m) and B k x n (row stride ldb).
template <class T> struct GemmTerm {
  const T* a;
  int lda;
  bool ta;
  const T* b;
  int ldb;
  int k;
};

// Largest m and n, and k, the kernels take: beyond them OpenBLAS's cache blocking pays off (a
// panel of B, k rows of two vectors, is read from L2 by every block of rows; at n = 512 or k = 1024
// the kernels fall behind).
constexpr int kSmallGemmMax = 256;
constexpr int kSmallGemmMaxK = 512;

#ifndef COVPOOL_AVX512_MR
#define COVPOOL_AVX512_MR 8
#endif
#ifndef COVPOOL_AVX512_NV
#define COVPOOL_AVX512_NV 2
#endif

#ifdef COVPOOL_X86_DISPATCH

#define COVPOOL_GEMM_TARGET __attribute__((target("avx2,fma")))
namespace gemm_avx2 {
struct Vt {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V zero() { return _mm256_setzero_ps(); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V load(const T* p) { return _mm256_loadu_ps(p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V splat(T x) { return _mm256_set1_ps(x); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // Lanes first .. last - 1: within the row (last = W) by a blend with what is there, cheaper than
  // a masked store (vmaskmovps stores are slow on some AMD cores); at the row's end masked.
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline __m256i lanes(int first, int last) {
    const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_si256(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(first - 1)), _mm256_cmpgt_epi32(_mm256_set1_epi32(last), i));
  }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V loadFirst(const T* p, int count) { return _mm256_maskload_ps(p, lanes(0, count)); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void storeRange(T* p, V v, int first, int last) {
    if (last == W) _mm256_storeu_ps(p, _mm256_blendv_ps(_mm256_loadu_ps(p), v, _mm256_castsi256_ps(lanes(first, last))));
    else _mm256_maskstore_ps(p, lanes(first, last), v);
  }
};
struct VtD {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V zero() { return _mm256_setzero_pd(); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V load(const T* p) { return _mm256_loadu_pd(p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V splat(T x) { return _mm256_set1_pd(x); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline __m256i lanes(int first, int last) {
    const __m256i i = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_and_si256(_mm256_cmpgt_epi64(i, _mm256_set1_epi64x(first - 1)), _mm256_cmpgt_epi64(_mm256_set1_epi64x(last), i));
  }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V loadFirst(const T* p, int count) { return _mm256_maskload_pd(p, lanes(0, count)); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void storeRange(T* p, V v, int first, int last) {
    if (last == W) _mm256_storeu_pd(p, _mm256_blendv_pd(_mm256_loadu_pd(p), v, _mm256_castsi256_pd(lanes(first, last))));
    else _mm256_maskstore_pd(p, lanes(first, last), v);
  }
};
#include "small_gemm_body.inc"
// 6 x 16 (float) and 6 x 8 (double) tiles: 12 accumulators, 2 vectors of B and a broadcast in the
// 16 AVX2 registers.
template <class Tr> COVPOOL_GEMM_TARGET void run(int m, int n, const GemmTerm<typename Tr::T>* terms, int nterms, typename Tr::T alpha, typename Tr::T beta,
                             typename Tr::T* c, int ldc, bool upper) {
  if (terms[0].ta) gemmBody<Tr, 6, 2, true>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
  else gemmBody<Tr, 6, 2, false>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
}
}  // namespace gemm_avx2
#undef COVPOOL_GEMM_TARGET

#define COVPOOL_GEMM_TARGET __attribute__((target("avx512f,avx2,fma")))
namespace gemm_avx512 {
struct Vt {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V zero() { return _mm512_setzero_ps(); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V load(const T* p) { return _mm512_loadu_ps(p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V splat(T x) { return _mm512_set1_ps(x); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline __mmask16 lanes(int first, int last) {
    return static_cast<__mmask16>(((1u << last) - 1u) & ~((1u << first) - 1u));
  }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V loadFirst(const T* p, int count) { return _mm512_maskz_loadu_ps(lanes(0, count), p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void storeRange(T* p, V v, int first, int last) { _mm512_mask_storeu_ps(p, lanes(first, last), v); }
};
struct VtD {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V zero() { return _mm512_setzero_pd(); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V load(const T* p) { return _mm512_loadu_pd(p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V splat(T x) { return _mm512_set1_pd(x); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline __mmask8 lanes(int first, int last) {
    return static_cast<__mmask8>(((1u << last) - 1u) & ~((1u << first) - 1u));
  }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline V loadFirst(const T* p, int count) { return _mm512_maskz_loadu_pd(lanes(0, count), p); }
  COVPOOL_GEMM_TARGET [[gnu::always_inline]] static inline void storeRange(T* p, V v, int first, int last) { _mm512_mask_storeu_pd(p, lanes(first, last), v); }
};
#include "small_gemm_body.inc"
template <class Tr> COVPOOL_GEMM_TARGET void run(int m, int n, const GemmTerm<typename Tr::T>* terms, int nterms, typename Tr::T alpha, typename Tr::T beta,
                             typename Tr::T* c, int ldc, bool upper) {
  if (terms[0].ta) gemmBody<Tr, COVPOOL_AVX512_MR, COVPOOL_AVX512_NV, true>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
  else gemmBody<Tr, COVPOOL_AVX512_MR, COVPOOL_AVX512_NV, false>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
}
}  // namespace gemm_avx512
#undef COVPOOL_GEMM_TARGET

#endif  // COVPOOL_X86_DISPATCH

// True where OpenBLAS runs its AVX-512 kernels, whose small-matrix paths skip the packing (SkylakeX
// and later): there its full products below 128 rows take 0.87-0.93 of the time of covpool's
// AVX-512 tiles (bench/native/mpa_lya.cpp), so full products go to it, triangles still here.
inline bool openBlasHasSmallMatrixKernels() {
  static const bool has = [] {
    if (!openblas_get_corename) return false;
    const char* name = openblas_get_corename();
    if (!name) return false;
    std::string core(name);
    for (char& ch : core) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
  }();
  return has;
}

template <class T> struct SmallGemmTraits;
#ifdef COVPOOL_X86_DISPATCH
template <> struct SmallGemmTraits<float> {
  using Avx2 = gemm_avx2::Vt;
  using Avx512 = gemm_avx512::Vt;
};
template <> struct SmallGemmTraits<double> {
  using Avx2 = gemm_avx2::VtD;
  using Avx512 = gemm_avx512::VtD;
};
#endif

// Whether covpool's kernels take products of this size (m x n result, inner dimension k).
inline bool smallGemmApplies(int m, int n, int k) {
#ifdef COVPOOL_X86_DISPATCH
  return simdLevel() != SimdLevel::Baseline && m > 0 && n > 0 && m <= kSmallGemmMax && n <= kSmallGemmMax && k <= kSmallGemmMaxK;
#else
  return false;
#endif
}

// Runs the sum of products on covpool's kernels and returns true, or returns false (nothing done)
// where they do not apply: then the caller uses OpenBLAS. All terms must share ta; upper needs
// m == n.
template <class T> bool smallGemm(int m, int n, const GemmTerm<T>* terms, int nterms, T alpha, T beta, T* c, int ldc, bool upper) {
#ifdef COVPOOL_X86_DISPATCH
  const SimdLevel level = simdLevel();
  if (level == SimdLevel::Baseline || m > kSmallGemmMax || n > kSmallGemmMax || m <= 0 || n <= 0) return false;
  for (int t = 0; t < nterms; ++t)
    if (terms[t].k > kSmallGemmMaxK || terms[t].ta != terms[0].ta) return false;
  using Tr = SmallGemmTraits<T>;
  if (level == SimdLevel::Avx512) gemm_avx512::run<typename Tr::Avx512>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
  else gemm_avx2::run<typename Tr::Avx2>(m, n, terms, nterms, alpha, beta, c, ldc, upper);
  return true;
#endif
  return false;
}

// A full product (no triangle): covpool's kernels unless OpenBLAS's AVX-512 small-matrix path is
// the faster one (above).
template <class T> bool smallGemmFull(int m, int n, const GemmTerm<T>* terms, int nterms, T alpha, T beta, T* c, int ldc) {
  if (simdLevel() == SimdLevel::Avx512 && std::max(m, n) < 128 && openBlasHasSmallMatrixKernels()) return false;
  return smallGemm(m, n, terms, nterms, alpha, beta, c, ldc, false);
}

}  // namespace covpool::cpu
