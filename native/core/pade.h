// Pade coefficients used by the library, derived here rather than pasted in as numbers.
#pragma once
#include <vector>

namespace covpool {

// Largest degrees accepted (svd-pade's L, mpa-lya's m): beyond them the coefficient vectors
// grow without purpose (and the integer arithmetic of sqrtPade would overflow).
constexpr int kMaxGeometricPadeDegree = 1000;
constexpr int kMaxSqrtPadeDegree = 12;

struct PadeCoefficients {
  std::vector<double> p, q;  // P(x) = sum p_k x^k, Q(x) = sum q_k x^k, q_0 = 1
};

// [L/L] Pade approximant of the geometric series sum_k r^k = 1/(1-r), used by svd-pade.
//
// The Pade table of 1/(1-r) is degenerate: the linear system for Q (sum_j q_j c_{k-j} = 0 for
// k = L+1..2L, with every Taylor coefficient c = 1) has all its equations equal to
// sum_{j=0}^{L} q_j = 0. Every solution gives P/Q = 1/(1-r) exactly, so the approximant *is*
// 1/(1-r), pole at r = 1 included. We take the minimum-norm solution with q_0 = 1:
//   q_j = -1/L (j = 1..L),   p_k = sum_{j<=k} q_j = 1 - k/L (k = 0..L),
// for which P(r) (1 - r) = Q(r) holds identically. The paper's coefficients come from solving the
// same singular system in 20-digit arithmetic; they are another member of this family, differing
// only by a common polynomial factor, i.e. only in rounding behaviour near r = 1.
PadeCoefficients geometricSeriesPade(int L);

// [m/m] Pade approximant of sqrt(1 - z), used by MPA-Lya, in closed form. With s = sqrt(1 - z) and
// n = 2m + 1, a = (1+s)^n + (1-s)^n and b = ((1+s)^n - (1-s)^n) / s are polynomials of degree m in
// z with integer coefficients, and a/b = s (1 + q)/(1 - q), q = ((1-s)/(1+s))^n = O(z^n): a/b agrees
// with sqrt(1 - z) to order z^(2m), so by uniqueness it is the [m/m] Pade approximant. The integer
// coefficients are exact in 64-bit arithmetic (m <= 12); only the final scaling to q_0 = 1 rounds,
// whereas solving the Pade linear system loses digits fast as m grows (it is ill-conditioned).
PadeCoefficients sqrtPade(int m);

}  // namespace covpool
