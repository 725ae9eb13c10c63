// Small helpers on one n x n row-major matrix, used by every per-sample kernel.
#pragma once
#include <cmath>
#include <vector>

namespace covpool::cpu {

template <class T> using Vec = std::vector<T>;

template <class T> void setIdentity(T* a, int n, T diag = T(1)) {
  for (int i = 0; i < n * n; ++i) a[i] = T(0);
  for (int i = 0; i < n; ++i) a[i * n + i] = diag;
}

// out = (a + a^T) / 2; out may alias a.
template <class T> void symmetrize(const T* a, T* out, int n) {
  for (int i = 0; i < n; ++i) {
    out[i * n + i] = a[i * n + i];
    for (int j = i + 1; j < n; ++j) {
      const T v = T(0.5) * (a[i * n + j] + a[j * n + i]);
      out[i * n + j] = v;
      out[j * n + i] = v;
    }
  }
}

// Copies the upper triangle into the lower one (BLAS syrk fills only one triangle).
template <class T> void mirrorUpper(T* a, int n) {
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) a[j * n + i] = a[i * n + j];
}

template <class T> T trace(const T* a, int n) {
  T s = 0;
  for (int i = 0; i < n; ++i) s += a[i * n + i];
  return s;
}

template <class T> T dot(const T* a, const T* b, std::size_t count) {
  // Accumulate in double: these inner products feed normalization gradients.
  double s = 0;
  for (std::size_t i = 0; i < count; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<T>(s);
}

template <class T> bool allFinite(const T* a, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i)
    if (!std::isfinite(a[i])) return false;
  return true;
}

template <class S, class D> void convert(const S* src, D* dst, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<D>(src[i]);
}

}  // namespace covpool::cpu
