// Covariance pooling and triangular vectorization, one sample at a time.
//   A = Xc Xc^T / N, Xc = X - mean over positions;   dX = (G + G^T) Xc / N.
// A sample's features are C x N (channels first: one row per channel) or N x C (channels last:
// one row per position, as NHWC tensors hold them). Channels-last runs the same BLAS calls with
// the other transpose, so no transposed copy of the features is ever made.
#pragma once
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

// Features x (type S) -> centred features xc (type D: the precision the covariance is formed in),
// converted and centred in one pass. The means are those of the converted values (what centring
// after a conversion gives, as the CUDA plan and the covpool op do), accumulated in double (N can
// be large) over eight partial sums (matrix.h: 4x faster at N = 49 than one running sum).
template <class S, class D> void centerRows(const S* x, D* xc, int C, int N) {
  for (int c = 0; c < C; ++c) {
    const S* row = x + static_cast<std::size_t>(c) * N;
    const double sum = sumOverEight<double>(N, [&](std::size_t k) { return static_cast<double>(static_cast<D>(row[k])); });
    const D mu = static_cast<D>(sum / N);
    D* out = xc + static_cast<std::size_t>(c) * N;
    for (int k = 0; k < N; ++k) out[k] = static_cast<D>(row[k]) - mu;
  }
}

// Channels last: x is N x C, each column (channel) centred over the N rows (positions).
template <class S, class D> void centerColumns(const S* x, D* xc, int C, int N) {
  thread_local std::vector<double> mean;
  mean.assign(C, 0.0);
  for (int k = 0; k < N; ++k)
    for (int c = 0; c < C; ++c) mean[c] += static_cast<double>(static_cast<D>(x[static_cast<std::size_t>(k) * C + c]));
  thread_local std::vector<D> mu;
  mu.resize(C);
  for (int c = 0; c < C; ++c) mu[c] = static_cast<D>(mean[c] / N);
  for (int k = 0; k < N; ++k)
    for (int c = 0; c < C; ++c) xc[static_cast<std::size_t>(k) * C + c] = static_cast<D>(x[static_cast<std::size_t>(k) * C + c]) - mu[c];
}

template <class S, class D> void centerFeatures(const S* x, D* xc, int C, int N, bool channelsLast) {
  if (channelsLast) centerColumns(x, xc, C, N);
  else centerRows(x, xc, C, N);
}

// A = Xc Xc^T / N (channels first, Xc is C x N) or Xc^T Xc / N (channels last, Xc is N x C).
template <class T> void covarianceForward(const T* xc, T* a, int C, int N, bool channelsLast = false) {
  syrkUpper(channelsLast, C, N, T(1) / static_cast<T>(N), xc, channelsLast ? C : N, a);
  mirrorUpper(a, C);
}

// g (C x C) is overwritten with (G + G^T) / 2 (symmetrize: cache-blocked, unlike a plain loop over
// both triangles; skipped when the caller's g is symmetric already); dx gets (G + G^T) Xc / N in
// the features' layout (channels last: Xc (G + G^T) / N, the same product transposed).
template <class T> void covarianceBackward(const T* xc, T* g, T* dx, int C, int N, bool channelsLast = false, bool gSymmetric = false) {
  if (!gSymmetric) symmetrize(g, g, C);
  const T scale = T(2) / static_cast<T>(N);
  if (channelsLast) gemm(false, false, N, C, C, scale, xc, C, g, C, T(0), dx, C);
  else gemm(false, false, C, N, C, scale, g, C, xc, N, T(0), dx, N);
}

// Upper triangle, row by row, diagonal included: C(C+1)/2 values (converted to y's type).
template <class S, class D> void packUpper(const S* s, D* y, int C) {
  std::size_t k = 0;
  for (int i = 0; i < C; ++i)
    for (int j = i; j < C; ++j) y[k++] = static_cast<D>(s[i * C + j]);
}

// Gradient of packUpper: dy into the upper triangle, zeros below (converted to ds's type).
template <class S, class D> void unpackUpper(const S* dy, D* ds, int C) {
  std::size_t k = 0;
  for (int i = 0; i < C; ++i) {
    for (int j = 0; j < i; ++j) ds[i * C + j] = D(0);
    for (int j = i; j < C; ++j) ds[i * C + j] = static_cast<D>(dy[k++]);
  }
}

}  // namespace covpool::cpu
