// MPA-Lya (Song et al., ICLR 2022). Forward: for a normalized A (norm <= 1), Z = I - A and
// S = Q_m(Z)^{-1} P_m(Z) with P_m/Q_m the [m/m] Pade approximant of sqrt(1 - z).
// Backward: the Lyapunov equation S X + X S = G solved by the coupled Newton-Schulz sign
// iteration on M = [[S, G], [0, -S]], M <- M (3I - M^2) / 2, i.e.
//   B <- B (3I - B^2)/2,  C <- (C (3I - B^2) - B^2 C + B C B)/2,
// which drives B to I and C to 2X.
#pragma once
#include "../core/pade.h"
#include "blas.h"
#include "cholesky.h"
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
  // s = sqrt(1 - z), see core/pade.h) and Z's spectrum lies in [0, 1], so Q is SPD: Cholesky and
  // two blocked triangular solves (cholesky.h). Q and P are symmetric, so row- and column-major
  // agree. Should rounding make Q indefinite, LU with pivoting (LAPACK) takes over; q and s are
  // still intact then.
  T* u = tmp;  // free after the loop
  if (choleskyUpper(n, q, u) == 0) {
    choleskySolve(n, u, s);
  } else {
    const int info = gesv(n, q, s, ipiv);
    if (info != 0) fail("MPA-Lya: the Pade denominator Q(Z) is singular (LAPACK gesv info=" + std::to_string(info) + ")");
  }
  symmetrize(s, s, n);  // Q and P commute: the exact result is symmetric
}

// Solves S X + X S = G (sNorm = S / sqrt(tau) with spectrum in (0, 1], g = G / sqrt(tau)) for X;
// X is symmetric up to rounding (the caller symmetrizes). The CUDA backend runs the same iteration
// (native/cuda/cuda_backend.cpp, lyapunovSignIteration) with full batched GEMMs.
//
// B_k is a polynomial in S and C_k stays symmetric. With D = [B, C] = B C - C B (antisymmetric),
//   C (3I - B^2) - B^2 C + B C B = 3C - C B^2 - B D,
// whose upper triangle is that of 3C - [C B] [B^2; D]: one triangle of an n x 2n by 2n x n product
// (gemmUpper with k = 2n). Per step: B C in full (for D), that triangle, and for the B update
// B (B^2) and the next B^2 as triangles (the last step skips them: nothing reads B afterwards).
// 3 GEMMs of flops a step (the grouping B C, B (B C), (B C) B, B^2, B^3 took 3.5), in four BLAS
// calls. C and B sit side by side in one n x 2n block [C | B] (leading dimension 2n) and B^2 on top
// of D in a 2n x n block [B^2; D], so the product needs no copies; the blocks of the next step are
// written while this step's are read (two [C | B] blocks in turn).
constexpr int lyapunovWorkMatrices = 7;
template <class T> void lyapunovSignIteration(const T* sNorm, const T* g, T* out, int n, int iters, T* work) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  const int n2 = 2 * n;
  T* cb[2] = {work, work + 2 * m};  // [C | B], n x 2n, in turn
  T* b2d = work + 4 * m;            // [B^2; D], 2n x n
  T* d = b2d + m;
  T* u = work + 6 * m;              // B C
  // Step 0's blocks: C_0 = sym(G), B_0 = S, B_0^2.
  for (int i = 0; i < n; ++i) {
    T* row = cb[0] + static_cast<std::size_t>(i) * n2;
    for (int j = 0; j < n; ++j) row[j] = T(0.5) * (g[i * n + j] + g[j * n + i]);
    std::copy(sNorm + static_cast<std::size_t>(i) * n, sNorm + static_cast<std::size_t>(i + 1) * n, row + n);
  }
  gemmUpper(false, false, n, n, T(1), cb[0] + n, n2, cb[0] + n, n2, T(0), b2d, n);
  mirrorUpper(b2d, n);
  for (int it = 0; it < iters; ++it) {
    const T* c = cb[it & 1];
    const T* b = c + n;
    const bool last = it + 1 == iters;
    gemm(false, false, n, n, n, T(1), b, n2, c, n2, T(0), u, n);  // U = B C
    antisymmetricPart(u, d, n);                                      // D = U - U^T
    // C_next = (3C - [C B] [B^2; D]) / 2; the last step writes X = C_T / 2 straight into out.
    T* cNext = last ? out : cb[(it + 1) & 1];
    const int ldNext = last ? n : n2;
    const T scale = last ? T(0.5) : T(1);
    gemmUpper(false, false, n, n2, T(-0.5) * scale, c, n2, b2d, n, T(0), cNext, ldNext);
    addUpperAndMirror(cNext, ldNext, c, n2, T(1.5) * scale, n);
    if (!last) {
      // B_next = (3B - B B^2) / 2, then its square for the next step.
      T* bNext = cb[(it + 1) & 1] + n;
      gemmUpper(false, false, n, n, T(-0.5), b, n2, b2d, n, T(0), bNext, n2);
      addUpperAndMirror(bNext, n2, b, n2, T(1.5), n);
      gemmUpper(false, false, n, n, T(1), bNext, n2, bNext, n2, T(0), b2d, n);
      mirrorUpper(b2d, n);
    }
  }
}

}  // namespace covpool::cpu
