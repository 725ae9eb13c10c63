#include "pade.h"

#include <cmath>
#include <utility>

#include "errors.h"

namespace covpool {

PadeCoefficients geometricSeriesPade(int L) {
  if (L < 1) fail("Pade degree must be >= 1");
  PadeCoefficients c;
  c.p.resize(L + 1);
  c.q.resize(L + 1);
  c.q[0] = 1.0;
  for (int j = 1; j <= L; ++j) c.q[j] = -1.0 / L;
  for (int k = 0; k <= L; ++k) c.p[k] = 1.0 - static_cast<double>(k) / L;
  return c;
}

PadeCoefficients sqrtPade(int m) {
  if (m < 1) fail("Pade degree must be >= 1");
  const int n = 2 * m + 1;
  std::vector<long double> c(n);
  // Taylor coefficients of sqrt(1 - z): c_0 = 1, c_k = c_{k-1} * (k - 3/2) / k
  c[0] = 1.0L;
  for (int k = 1; k < n; ++k) c[k] = c[k - 1] * (static_cast<long double>(k) - 1.5L) / k;
  auto coef = [&](int k) { return k < 0 ? 0.0L : c[k]; };
  // Solve for q_1..q_m:  sum_{j=1}^{m} q_j c_{k-j} = -c_k  for k = m+1..2m.
  std::vector<std::vector<long double>> a(m, std::vector<long double>(m + 1));
  for (int r = 0; r < m; ++r) {
    const int k = m + 1 + r;
    for (int j = 1; j <= m; ++j) a[r][j - 1] = coef(k - j);
    a[r][m] = -coef(k);
  }
  for (int col = 0; col < m; ++col) {  // Gaussian elimination with partial pivoting
    int piv = col;
    for (int r = col + 1; r < m; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[piv][col])) piv = r;
    std::swap(a[col], a[piv]);
    if (a[col][col] == 0.0L) fail("internal: singular Pade system for sqrt(1-z)");
    for (int r = 0; r < m; ++r) {
      if (r == col) continue;
      const long double f = a[r][col] / a[col][col];
      for (int k = col; k <= m; ++k) a[r][k] -= f * a[col][k];
    }
  }
  std::vector<long double> q(m + 1, 0.0L);
  q[0] = 1.0L;
  for (int j = 1; j <= m; ++j) q[j] = a[j - 1][m] / a[j - 1][j - 1];
  PadeCoefficients out;
  out.q.resize(m + 1);
  out.p.resize(m + 1);
  for (int k = 0; k <= m; ++k) {
    long double s = 0.0L;
    for (int j = 0; j <= k; ++j) s += q[j] * c[k - j];
    out.p[k] = static_cast<double>(s);
    out.q[k] = static_cast<double>(q[k]);
  }
  return out;
}

}  // namespace covpool
