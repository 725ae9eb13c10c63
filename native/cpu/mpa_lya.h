// MPA-Lya (Song et al., ICLR 2022). Forward: for a normalized A (norm <= 1), Z = I - A and
// S = Q_m(Z)^{-1} P_m(Z) with P_m/Q_m the [m/m] Pade approximant of sqrt(1 - z).
// Backward: the Lyapunov equation S X + X S = G solved by the coupled Newton-Schulz sign
// iteration on [[S, G], [0, -S]]:  B <- B (3I - B^2)/2,  C <- (C (3I - B^2) - B^2 C + B C B)/2,
// which drives B to I and C to 2X.
#pragma once
#include "../core/pade.h"
#include "blas.h"
#include "matrix.h"

namespace covpool::cpu {

constexpr int mpaForwardWorkMatrices = 4;
template <class T> void mpaForward(const T* a, T* s, int n, const PadeCoefficients& c, T* work, lapack_int* ipiv) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* z = work;
  T* zk = work + m;
  T* q = work + 2 * m;
  T* tmp = work + 3 * m;
  const int deg = static_cast<int>(c.p.size()) - 1;
  for (std::size_t i = 0; i < m; ++i) z[i] = -a[i];
  for (int i = 0; i < n; ++i) z[i * n + i] += T(1);
  setIdentity(s, n, static_cast<T>(c.p[0]));  // s accumulates P, q accumulates Q
  setIdentity(q, n, static_cast<T>(c.q[0]));
  std::copy(z, z + m, zk);
  for (int k = 1; k <= deg; ++k) {
    const T pk = static_cast<T>(c.p[k]), qk = static_cast<T>(c.q[k]);
    for (std::size_t i = 0; i < m; ++i) { s[i] += pk * zk[i]; q[i] += qk * zk[i]; }
    if (k < deg) {
      symProduct(n, T(1), zk, z, tmp);  // powers of Z are symmetric
      std::swap(zk, tmp);
    }
  }
  const int info = gesv(n, q, s, ipiv);  // s <- Q^{-1} P
  if (info != 0) fail("MPA-Lya: the Pade denominator Q(Z) is singular (LAPACK gesv info=" + std::to_string(info) + ")");
  symmetrize(s, s, n);  // Q and P commute: the exact result is symmetric
}

constexpr int lyapunovWorkMatrices = 5;
// Solves S X + X S = G (sNorm = S / sqrt(tau) with spectrum in (0, 1], g = G / sqrt(tau)) for X;
// X is symmetric up to rounding (the caller symmetrizes).
//
// B_k is a polynomial in S and C_k stays symmetric: with B and C symmetric, the update
// C (3I - B^2) - B^2 C + B C B = 3C - (C B^2 + B^2 C) + B C B is its own transpose. So only
// upper triangles are formed: B C in full, then B C B, C B^2 and B^2 C as upper triangles,
// B^2 and B^3 as symmetric products. Per step 1 + 5/2 GEMMs of flops instead of 6 full GEMMs.
// The last step skips the B update (nothing reads it).
template <class T> void lyapunovSignIteration(const T* sNorm, const T* g, T* out, int n, int iters, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* b = work;
  T* c = work + m;
  T* b2 = work + 2 * m;
  T* bc = work + 3 * m;
  T* x = work + 4 * m;  // scratch that rotates with b and c
  std::copy(sNorm, sNorm + m, b);
  symmetrize(g, c, n);
  for (int it = 0; it < iters; ++it) {
    symProduct(n, T(1), b, b, b2);                          // B^2
    gemm(false, false, n, T(1), b, c, T(0), bc);            // B C
    // x = (3C - C B^2 - B^2 C + B C B) / 2, upper triangle, then mirrored
    gemmUpper(n, T(0.5), bc, b, T(0), x);                   //   B C B / 2
    gemmUpper(n, T(-0.5), c, b2, T(1), x);                  // - C B^2 / 2
    gemmUpper(n, T(-0.5), b2, c, T(1), x);                  // - B^2 C / 2
    mirrorUpper(x, n);
    for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * c[i];
    std::swap(c, x);
    if (it + 1 < iters) {
      symProduct(n, T(-0.5), b, b2, x);                     // B (3I - B^2) / 2 = 3B/2 - B^3/2
      for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * b[i];
      std::swap(b, x);
    }
  }
  for (std::size_t i = 0; i < m; ++i) out[i] = T(0.5) * c[i];
}

}  // namespace covpool::cpu
