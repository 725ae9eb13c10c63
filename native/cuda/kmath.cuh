// Per-element math of the eigen-based backward passes, shared by the CUDA kernels (device) and by a
// host test that checks it against the CPU backend (native/cuda/test/kmath_host_test.cu).
//
// Every formula here is written in the same operation order as native/cpu/eigen_sqrtm.h, and
// kernels.cu is compiled with -fmad=false (no fused multiply-add contraction) with IEEE division
// and square root, so given the same eigenvalues the GPU computes the same F entries bit for bit.
// That matters most at the svd-pade pole rule: a threshold test (|Q(r)| <= bound) that rounds
// differently would turn a finite entry into a replaced one on one backend only.
#pragma once
#include <math.h>

#include "../core/methods.h"

#if defined(__CUDACC__)
#define COVPOOL_HD __host__ __device__ __forceinline__
#else
#define COVPOOL_HD inline
#endif

namespace covpool::cuda {

// Everything the K-matrix variants need, as plain values so it can be passed to a kernel by value.
// padeP / padeQ point to L+1 doubles in the memory the code runs in (device for kernels).
struct KParams {
  Method method = Method::SVD;
  int degree = 0;       // svd-taylor: D
  int iterations = 0;   // svd-pi: T
  double kappa = 0;     // svd-trunc
  const double* padeP = nullptr;
  const double* padeQ = nullptr;
  int padeL = 0;
  bool replace = false; // apply the per-matrix non-finite replacement (svd, svd-topn, svd-pade)
};

// True for the methods whose F gets the `svd` replacement rule (native/cpu/eigen_sqrtm.h fillF).
COVPOOL_HD bool methodReplaces(Method m) {
  return m == Method::SVD || m == Method::SVD_TOPN || m == Method::SVD_PADE;
}

// The kernel parameters for options `o`: padeP / padeQ are where the L+1 coefficients live for
// the code that will read them (device memory for kernels). `replace` asks for the non-finite
// replacement; it applies only to the methods that have it.
inline KParams makeKParams(const SqrtmOptions& o, const double* padeP, const double* padeQ, int padeL, bool replace) {
  KParams k;
  k.method = o.method;
  k.degree = o.degree;
  k.iterations = o.iterations;
  k.kappa = o.kappa;
  k.padeP = padeP;
  k.padeQ = padeQ;
  k.padeL = padeL;
  k.replace = replace && methodReplaces(o.method);
  return k;
}

namespace kmath {

// Written without std:: so the same code compiles for host and device.
COVPOOL_HD float absT(float x) { return fabsf(x); }
COVPOOL_HD double absT(double x) { return fabs(x); }
COVPOOL_HD float sqrtT(float x) { return sqrtf(x); }
COVPOOL_HD double sqrtT(double x) { return sqrt(x); }
// x - x is 0 exactly for finite x and NaN for +-inf and NaN (no reliance on a library isfinite).
template <class T> COVPOOL_HD bool isFinite(T x) { return x - x == T(0); }
template <class T> COVPOOL_HD bool isNaN(T x) { return x != x; }
template <class T> COVPOOL_HD T inf() { return static_cast<T>(HUGE_VAL); }
template <class T> COVPOOL_HD T epsilon();
template <> COVPOOL_HD float epsilon<float>() { return 1.1920928955078125e-07f; }   // 2^-23
template <> COVPOOL_HD double epsilon<double>() { return 2.220446049250313080847e-16; }  // 2^-52
// The same comparisons as std::max / std::min / std::clamp (matters only for NaN and signed zeros).
template <class T> COVPOOL_HD T maxT(T a, T b) { return (a < b) ? b : a; }
template <class T> COVPOOL_HD T minT(T a, T b) { return (b < a) ? b : a; }
template <class T> COVPOOL_HD T clampT(T v, T lo, T hi) { return (v < lo) ? lo : (hi < v) ? hi : v; }

// Horner sum_{k=0}^{deg} r^k (all coefficients 1).
template <class T> COVPOOL_HD T geometric(int deg, T r) {
  T acc = T(1);
  for (int k = deg - 1; k >= 0; --k) acc = acc * r + T(1);
  return acc;
}

// Horner sum_{k=0}^{deg} c_k r^k, coefficients rounded to T one by one as the CPU does.
template <class T> COVPOOL_HD T horner(const double* c, int deg, T r) {
  T acc = static_cast<T>(c[deg]);
  for (int k = deg - 1; k >= 0; --k) acc = acc * r + static_cast<T>(c[k]);
  return acc;
}

// P(r)/Q(r) with the pole rule: when |Q(r)| is within Horner's rounding bound
// 2 (L+1) u sum |q_k| r^k, Q is noise and the approximant's pole (+-inf) is returned instead.
template <class T> COVPOOL_HD T padeRatio(const double* p, const double* q, int L, T r) {
  const T num = horner<T>(p, L, r);
  const T den = horner<T>(q, L, r);
  T absDen = absT(static_cast<T>(q[L]));
  for (int k = L - 1; k >= 0; --k) absDen = absDen * r + absT(static_cast<T>(q[k]));
  const T bound = T(2) * (L + 1) * epsilon<T>() * absDen;
  if (absT(den) <= bound) return num >= 0 ? inf<T>() : -inf<T>();
  return num / den;
}

// F_ij: the coefficient of u_i in du_j (before any non-finite replacement); 0 on the diagonal.
template <class T> COVPOOL_HD T coefficient(const KParams& k, int i, int j, T li, T lj) {
  if (i == j) return T(0);
  switch (k.method) {
    case Method::SVD:
    case Method::SVD_TOPN:
    case Method::SVD_NEWTON:
      return T(1) / (lj - li);
    case Method::SVD_TRUNC:
      return clampT(T(1) / (lj - li), static_cast<T>(-k.kappa), static_cast<T>(k.kappa));
    case Method::SVD_TAYLOR:
    case Method::SVD_PADE: {
      // 1/(l_j - l_i) = s / big * 1/(1 - r),  r = small/big in [0, 1]
      const T big = maxT(li, lj), r = minT(li, lj) / big;
      const T sgn = lj >= li ? T(1) : T(-1);
      const T series = k.method == Method::SVD_TAYLOR ? geometric<T>(k.degree, r)
                                                      : padeRatio<T>(k.padeP, k.padeQ, k.padeL, r);
      return sgn / big * series;
    }
    case Method::SVD_PI: {
      // Power iteration with deflation from the largest eigenvalue down: the two triangles get
      // different degrees (S_T above the diagonal, S_{T-1} below; docs/methods.md).
      const int T_ = k.iterations;
      if (i < j) return geometric<T>(T_ - 1, li / lj) / lj;
      return T_ >= 2 ? -geometric<T>(T_ - 2, lj / li) / li : T(0);
    }
    default:
      return T(0);
  }
}

// The `svd` replacement rule for one entry, given its matrix's largest / smallest finite entries.
template <class T> COVPOOL_HD T replaceEntry(T v, T hi, T lo) {
  if (isNaN(v)) return hi;
  if (v == inf<T>()) return hi;
  if (v == -inf<T>()) return lo;
  return v;
}

// Per-matrix statistics the replacement needs, reduced over every entry of F (diagonal zeros
// included, exactly as the CPU scans the whole matrix).
template <class T> struct FStats {
  T hi, lo;
  bool bad;
};
template <class T> COVPOOL_HD FStats<T> emptyStats() { return {-inf<T>(), inf<T>(), false}; }
template <class T> COVPOOL_HD void accumulate(FStats<T>& s, T v) {
  if (isFinite(v)) { s.hi = maxT(s.hi, v); s.lo = minT(s.lo, v); }
  else s.bad = true;
}
template <class T> COVPOOL_HD FStats<T> merge(FStats<T> a, const FStats<T>& b) {
  a.hi = maxT(a.hi, b.hi);
  a.lo = minT(a.lo, b.lo);
  a.bad = a.bad || b.bad;
  return a;
}
// Final form: nothing finite at all (cannot happen for n >= 1 since the diagonal is 0) -> 0, 0.
template <class T> COVPOOL_HD FStats<T> finish(FStats<T> s) {
  if (!isFinite(s.hi)) { s.hi = T(0); s.lo = T(0); }
  return s;
}

// F_ij after replacement (when the method replaces and the matrix had a non-finite entry).
template <class T> COVPOOL_HD T replacedCoefficient(const KParams& k, int i, int j, T li, T lj, const FStats<T>& s) {
  const T v = coefficient<T>(k, i, j, li, lj);
  return (k.replace && s.bad) ? replaceEntry(v, s.hi, s.lo) : v;
}

// Entry (r, c) of the matrix between U [ . ] U^T in the eigen backward, n x n row-major M = U^T G U:
//   K methods: inner = sym(F o (2 M diag(sqrt l))) + diag(M_ii / (2 sqrt l_i)), computed from the
//              upper-triangle entry M_ab (a < b) for both (a, b) and (b, a), as the CPU does, so
//              the result is exactly symmetric;
//   svd-lyap:  inner_rc = M_rc / (sqrt l_r + sqrt l_c).
template <class T> COVPOOL_HD T innerEntry(const KParams& k, const T* M, const T* l, int n, int r, int c, const FStats<T>& s) {
  if (k.method == Method::SVD_LYAP) return M[r * n + c] / (sqrtT(l[r]) + sqrtT(l[c]));
  if (r == c) return M[r * n + r] / (T(2) * sqrtT(l[r]));
  const int a = r < c ? r : c, b = r < c ? c : r;
  const T mab = M[a * n + b];
  const T fab = replacedCoefficient<T>(k, a, b, l[a], l[b], s);
  const T fba = replacedCoefficient<T>(k, b, a, l[b], l[a], s);
  return fab * mab * sqrtT(l[b]) + fba * mab * sqrtT(l[a]);
}

// Entry (i, j) of the analysis coefficient matrix (Backend::coefficients): F_ij, or svd-lyap's C_ij.
template <class T> COVPOOL_HD T analysisEntry(const KParams& k, const T* l, int i, int j, const FStats<T>& s) {
  if (k.method == Method::SVD_LYAP) return T(1) / (sqrtT(l[i]) + sqrtT(l[j]));
  return replacedCoefficient<T>(k, i, j, l[i], l[j], s);
}

}  // namespace kmath
}  // namespace covpool::cuda
