// The opt-in check for indefinite inputs (option checkPsd of ns and mpa-lya). Both methods are
// polynomial/rational iterations: on a matrix with a negative eigenvalue they return a matrix
// that is silently not its square root. A Cholesky factorization of A + delta I succeeds exactly
// when every eigenvalue exceeds -delta; delta allows for rounding (a singular covariance has
// eigenvalues of order eps ||A|| of either sign).
#pragma once
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../core/buffer.h"
#include "../core/threadpool.h"
#include "blas.h"

namespace covpool::cpu {

inline void requirePositiveSemidefinite(const Buffer& a, int B, int C, const char* method) {
  const std::size_t m = static_cast<std::size_t>(C) * C;
  const double eps = a.dtype() == DType::F32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  parallelFor(B, [&](std::size_t b) {
    std::vector<double> w(m);
    dispatchDType(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* src = a.as<T>() + b * m;
      for (std::size_t i = 0; i < m; ++i) w[i] = static_cast<double>(src[i]);
      return 0;
    });
    double fro = 0;
    for (double v : w) fro += v * v;
    const double delta = 10.0 * C * eps * std::sqrt(fro);
    for (int i = 0; i < C; ++i) w[static_cast<std::size_t>(i) * C + i] += delta;
    const lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', C, w.data(), C);
    if (info > 0) {
      std::ostringstream os;
      os << "batch item " << b << ": the matrix is not positive semi-definite (it has an eigenvalue below -" << delta
         << "; Cholesky failed at column " << info << "): " << method
         << " would return a matrix that is not its square root (checkPsd)";
      fail(os.str());
    }
  });
}

}  // namespace covpool::cpu
