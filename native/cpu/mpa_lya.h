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
  // s <- Q^{-1} P. Q(z) > 0 on [0, 1] (q(z) is b(z) / b(0) with b = ((1+s)^n - (1-s)^n) / s,
  // s = sqrt(1 - z), see core/pade.h) and Z's spectrum lies in [0, 1], so Q is SPD: Cholesky, about
  // 0.7 of LU's time. Q, P and the solution are symmetric, hence read as column-major without a
  // transpose. Should rounding make Q indefinite, LU with pivoting takes over from copies.
  T* qCopy = zk;   // free after the loop
  T* pCopy = tmp;
  std::copy(q, q + m, qCopy);
  std::copy(s, s + m, pCopy);
  if (posvSymmetric(n, q, s) != 0) {
    const int info = gesv(n, qCopy, pCopy, ipiv);
    if (info != 0) fail("MPA-Lya: the Pade denominator Q(Z) is singular (LAPACK gesv info=" + std::to_string(info) + ")");
    std::copy(pCopy, pCopy + m, s);
  }
  symmetrize(s, s, n);  // Q and P commute: the exact result is symmetric
}

constexpr int lyapunovWorkMatrices = 6;
// Solves S X + X S = G (sNorm = S / sqrt(tau) with spectrum in (0, 1], g = G / sqrt(tau)) for X;
// X is symmetric up to rounding (the caller symmetrizes).
//
// B_k is a polynomial in S and C_k stays symmetric: with B and C symmetric, the update
//   C (3I - B^2) - B^2 C + B C B = 3C - (Y + Y^T) + B C B,  Y = B^2 C = B (B C),
// is its own transpose. Per step: B C and Y in full, B C B as an upper triangle, and for the B
// update B^2 and B^3 as upper triangles (the last step skips it: nothing reads B afterwards):
// 3.5 GEMMs of flops instead of 6, in fewer and larger BLAS calls than triangles of every term.
template <class T> void lyapunovSignIteration(const T* sNorm, const T* g, T* out, int n, int iters, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  T* b = work;
  T* c = work + m;
  T* b2 = work + 2 * m;
  T* bc = work + 3 * m;
  T* y = work + 4 * m;
  T* x = work + 5 * m;  // scratch that rotates with b and c
  std::copy(sNorm, sNorm + m, b);
  symmetrize(g, c, n);
  for (int it = 0; it < iters; ++it) {
    gemm(false, false, n, T(1), b, c, T(0), bc);   // B C
    gemm(false, false, n, T(1), b, bc, T(0), y);   // Y = B^2 C
    symmetrize(y, y, n);                           // (Y + Y^T) / 2
    symProduct(n, T(0.5), bc, b, x);               // B C B / 2
    for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * c[i] - y[i];
    std::swap(c, x);
    if (it + 1 < iters) {
      symProduct(n, T(1), b, b, b2);               // B^2
      symProduct(n, T(-0.5), b, b2, x);            // B (3I - B^2) / 2 = 3B/2 - B^3/2
      for (std::size_t i = 0; i < m; ++i) x[i] += T(1.5) * b[i];
      std::swap(b, x);
    }
  }
  for (std::size_t i = 0; i < m; ++i) out[i] = T(0.5) * c[i];
}

}  // namespace covpool::cpu
