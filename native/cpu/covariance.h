// Covariance pooling and triangular vectorization, one sample at a time.
//   A = Xc Xc^T / N, Xc = X - mean over positions;   dX = (G + G^T) Xc / N.
#pragma once
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

template <class T> void centerRows(const T* x, T* xc, int C, int N) {
  for (int c = 0; c < C; ++c) {
    double mean = 0;  // accumulate in double: N can be large
    for (int k = 0; k < N; ++k) mean += x[c * N + k];
    const T mu = static_cast<T>(mean / N);
    for (int k = 0; k < N; ++k) xc[c * N + k] = x[c * N + k] - mu;
  }
}

template <class T> void covarianceForward(const T* xc, T* a, int C, int N) {
  syrkUpper(false, C, N, T(1) / static_cast<T>(N), xc, N, a);
  mirrorUpper(a, C);
}

// g (C x C) is overwritten with G + G^T.
template <class T> void covarianceBackward(const T* xc, T* g, T* dx, int C, int N) {
  for (int i = 0; i < C; ++i)
    for (int j = i; j < C; ++j) {
      const T v = g[i * C + j] + g[j * C + i];
      g[i * C + j] = v;
      g[j * C + i] = v;
    }
  gemm(false, false, C, N, C, T(1) / static_cast<T>(N), g, C, xc, N, T(0), dx, N);
}

// Upper triangle, row by row, diagonal included: C(C+1)/2 values.
template <class T> void packUpper(const T* s, T* y, int C) {
  std::size_t k = 0;
  for (int i = 0; i < C; ++i)
    for (int j = i; j < C; ++j) y[k++] = s[i * C + j];
}

// Gradient of packUpper: dy into the upper triangle, zeros below.
template <class T> void unpackUpper(const T* dy, T* ds, int C) {
  std::size_t k = 0;
  for (int i = 0; i < C; ++i) {
    for (int j = 0; j < i; ++j) ds[i * C + j] = T(0);
    for (int j = i; j < C; ++j) ds[i * C + j] = dy[k++];
  }
}

}  // namespace covpool::cpu
