#include "pade.h"

#include <cmath>
#include <string>

#include "errors.h"

namespace covpool {

PadeCoefficients geometricSeriesPade(int L) {
  if (L < 1 || L > kMaxGeometricPadeDegree)
    failRange("Pade degree for 1/(1-r) must be an integer in [1, " + std::to_string(kMaxGeometricPadeDegree) + "], got " + std::to_string(L));
  PadeCoefficients c;
  c.p.resize(L + 1);
  c.q.resize(L + 1);
  c.q[0] = 1.0;
  for (int j = 1; j <= L; ++j) c.q[j] = -1.0 / L;
  for (int k = 0; k <= L; ++k) c.p[k] = 1.0 - static_cast<double>(k) / L;
  return c;
}

PadeCoefficients sqrtPade(int m) {
  if (m < 1 || m > kMaxSqrtPadeDegree)
    failRange("Pade degree for sqrt(1-z) must be an integer in [1, " + std::to_string(kMaxSqrtPadeDegree) + "], got " + std::to_string(m));
  const int n = 2 * m + 1;
  auto binom = [](int a, int k) {
    long long r = 1;
    for (int i = 1; i <= k; ++i) r = r * (a - k + i) / i;
    return r;
  };
  // a = 2 sum_j C(n, 2j) (1-z)^j,  b = 2 sum_j C(n, 2j+1) (1-z)^j; expand (1-z)^j = sum_i C(j,i) (-z)^i.
  std::vector<long long> a(m + 1, 0), b(m + 1, 0);
  for (int j = 0; j <= m; ++j)
    for (int i = 0; i <= j; ++i) {
      const long long sign = (i % 2) ? -1 : 1;
      a[i] += 2 * binom(n, 2 * j) * binom(j, i) * sign;
      b[i] += 2 * binom(n, 2 * j + 1) * binom(j, i) * sign;
    }
  PadeCoefficients out;
  out.p.resize(m + 1);
  out.q.resize(m + 1);
  const double q0 = static_cast<double>(b[0]);
  for (int k = 0; k <= m; ++k) {
    out.p[k] = static_cast<double>(a[k]) / q0;
    out.q[k] = static_cast<double>(b[k]) / q0;
  }
  return out;
}

}  // namespace covpool
