// The method registry: every matrix-square-root method, its options and their defaults, in one
// place shared by all backends. TypeScript validates options with friendly messages first; this
// validation is the second line of defence so that no option value can reach the kernels unchecked.
#pragma once
#include <string>
#include <vector>

#include "dtype.h"

namespace covpool {

enum class Method {
  NS,          // Newton-Schulz iteration (iSQRT-COV); backward = exact derivative of the iteration
  SVD,         // eigen forward, ordinary K = 1/(l_i - l_j) backward (MPN-COV)
  SVD_TRUNC,   // ordinary K clipped to [-kappa, kappa]
  SVD_TOPN,    // keep the n largest eigenvalues in the forward, ordinary backward
  SVD_TAYLOR,  // K from the degree-D Taylor series of 1/(1-r)
  SVD_PADE,    // K from the [L/L] Pade approximant of 1/(1-r) (Song et al., ICCV 2021)
  SVD_PI,      // power-iteration gradient (Wang et al., NeurIPS 2019)
  SVD_NEWTON,  // eigen forward, Newton-Schulz backward
  SVD_LYAP,    // eigen forward, exact Lyapunov (closed form) backward
  MPA_LYA,     // Pade forward of sqrt(I - Z), Lyapunov backward by the NS sign iteration
};

enum class Normalization { None, Trace, Frobenius };

struct MethodInfo {
  Method method;
  const char* name;
  bool eigenForward;  // forward uses the symmetric eigendecomposition
};

const std::vector<MethodInfo>& methodTable();
Method parseMethod(const std::string& name);
const char* methodName(Method m);
bool usesEigenForward(Method m);
Normalization parseNormalization(const std::string& name);
const char* normalizationName(Normalization n);

// Options of every method; fields a method does not use are ignored by it. Values of -1 / NaN
// in the raw input mean "use the default", resolved by resolveOptions().
struct SqrtmOptions {
  Method method = Method::SVD;
  DType precision = DType::F64;        // spectral precision
  Normalization normalization = Normalization::None;
  int iterations = 5;                  // ns, svd-newton (NS iterations); svd-pi (power iterations); mpa-lya (sign iterations)
  int degree = 100;                    // svd-taylor: D; svd-pade: L; mpa-lya: m
  double kappa = 1e10;                 // svd-trunc clip
  int topN = -1;                       // svd-topn: eigenvalues kept (-1: C - round(50 C / 256))
  double eps = -1;                     // eigenvalue floor (-1: machine epsilon of the precision)
  std::vector<double> padeP, padeQ;    // svd-pade: optional user coefficients (empty: derived)
  bool checkPsd = false;               // ns, mpa-lya (sqrtm): refuse inputs with a negative eigenvalue
};

// Raw options as they arrive from JS; absent values carry sentinels.
struct RawOptions {
  std::string method;
  std::string precision;      // "" = default
  std::string normalization;  // "" = default
  int iterations = -1, degree = -1, topN = -1;
  double kappa = -1, eps = -1;
  std::vector<double> padeP, padeQ;
  bool checkPsd = false;
};

// Fills defaults (which depend on the method, the input dtype and the matrix size C) and
// validates ranges; throws CovpoolError naming the option, the allowed range and the value.
SqrtmOptions resolveOptions(const RawOptions& raw, DType inputDType, int C);

}  // namespace covpool
