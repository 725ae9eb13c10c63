#include "methods.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "errors.h"
#include "pade.h"

namespace covpool {

const std::vector<MethodInfo>& methodTable() {
  static const std::vector<MethodInfo> table = {
      {Method::NS, "ns", false},
      {Method::SVD, "svd", true},
      {Method::SVD_TRUNC, "svd-trunc", true},
      {Method::SVD_TOPN, "svd-topn", true},
      {Method::SVD_TAYLOR, "svd-taylor", true},
      {Method::SVD_PADE, "svd-pade", true},
      {Method::SVD_PI, "svd-pi", true},
      {Method::SVD_NEWTON, "svd-newton", true},
      {Method::SVD_LYAP, "svd-lyap", true},
      {Method::MPA_LYA, "mpa-lya", false},
  };
  return table;
}

Method parseMethod(const std::string& name) {
  for (const auto& m : methodTable())
    if (name == m.name) return m.method;
  std::ostringstream os;
  os << "unknown method '" << name << "'; expected one of:";
  for (const auto& m : methodTable()) os << ' ' << m.name;
  failRange(os.str());
}

const char* methodName(Method m) {
  for (const auto& e : methodTable())
    if (e.method == m) return e.name;
  return "?";
}

bool usesEigenForward(Method m) {
  for (const auto& e : methodTable())
    if (e.method == m) return e.eigenForward;
  return false;
}

Normalization parseNormalization(const std::string& name) {
  if (name == "none") return Normalization::None;
  if (name == "trace") return Normalization::Trace;
  if (name == "frobenius") return Normalization::Frobenius;
  failRange("unknown normalization '" + name + "'; expected 'none', 'trace' or 'frobenius'");
}

const char* normalizationName(Normalization n) {
  switch (n) {
    case Normalization::None: return "none";
    case Normalization::Trace: return "trace";
    default: return "frobenius";
  }
}

namespace {
// Bounds on the work one option can ask for. Newton-Schulz converges in a handful of iterations
// (the paper uses 5; MPA-Lya's sign iteration 8); every iteration of ns also adds 3 matrices per
// item to the state, so 1000 iterations at C = 256 asked for gigabytes to no benefit.
constexpr int kMaxIterations = 100;
constexpr int kMaxPowerIterations = 1000;  // svd-pi: 19 by default
constexpr int kMaxTaylorDegree = 1000;     // svd-taylor: 100 by default; each term costs C^2 per item

void checkIntRange(const char* method, const char* opt, int v, int lo, int hi) {
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << method << ": option '" << opt << "' must be an integer in [" << lo << ", " << hi << "], got " << v;
    failRange(os.str());
  }
}
}  // namespace

SqrtmOptions resolveOptions(const RawOptions& raw, DType inputDType, int C) {
  SqrtmOptions o;
  o.method = parseMethod(raw.method);
  const char* name = methodName(o.method);
  const bool eigen = usesEigenForward(o.method);

  // Spectral precision: float64 for eigen-based methods (the paper's data-precision finding),
  // the input precision for the GEMM-only methods.
  if (raw.precision.empty()) o.precision = eigen ? DType::F64 : inputDType;
  else if (raw.precision == "float32") o.precision = DType::F32;
  else if (raw.precision == "float64") o.precision = DType::F64;
  else failRange(std::string(name) + ": option 'precision' must be 'float32' or 'float64', got '" + raw.precision + "'");

  if (raw.normalization.empty())
    o.normalization = o.method == Method::NS ? Normalization::Trace
                      : o.method == Method::MPA_LYA ? Normalization::Frobenius
                                                    : Normalization::None;
  else o.normalization = parseNormalization(raw.normalization);
  if ((o.method == Method::NS || o.method == Method::MPA_LYA) && o.normalization == Normalization::None)
    failRange(std::string(name) + ": normalization 'none' is not allowed: the iteration only converges for inputs scaled to norm <= 1 (use 'trace' or 'frobenius')");

  switch (o.method) {
    case Method::NS:
    case Method::SVD_NEWTON: o.iterations = raw.iterations < 0 ? 5 : raw.iterations; checkIntRange(name, "iterations", o.iterations, 1, kMaxIterations); break;
    case Method::SVD_PI: o.iterations = raw.iterations < 0 ? 19 : raw.iterations; checkIntRange(name, "iterations", o.iterations, 1, kMaxPowerIterations); break;
    case Method::MPA_LYA: o.iterations = raw.iterations < 0 ? 8 : raw.iterations; checkIntRange(name, "iterations", o.iterations, 1, kMaxIterations); break;
    default: break;
  }
  switch (o.method) {
    case Method::SVD_TAYLOR: o.degree = raw.degree < 0 ? 100 : raw.degree; checkIntRange(name, "degree", o.degree, 0, kMaxTaylorDegree); break;
    case Method::SVD_PADE: o.degree = raw.degree < 0 ? 50 : raw.degree; checkIntRange(name, "degree", o.degree, 1, kMaxGeometricPadeDegree); break;
    case Method::MPA_LYA: o.degree = raw.degree < 0 ? 5 : raw.degree; checkIntRange(name, "degree", o.degree, 1, kMaxSqrtPadeDegree); break;
    default: break;
  }
  if (o.method == Method::SVD_TRUNC) {
    o.kappa = raw.kappa < 0 ? 1e10 : raw.kappa;
    if (!(o.kappa > 0) || !std::isfinite(o.kappa)) failRange(std::string(name) + ": option 'kappa' must be a finite number > 0");
  }
  if (o.method == Method::SVD_TOPN) {
    if (raw.topN < 0) o.topN = std::max(1, C - static_cast<int>(std::lround(50.0 * C / 256.0)));  // default, >= 1 for tiny C
    else o.topN = raw.topN;
    checkIntRange(name, "n", o.topN, 1, C);
  }
  if (raw.eps < 0) o.eps = o.precision == DType::F64 ? machineEpsilon<double>() : machineEpsilon<float>();
  else {
    o.eps = raw.eps;
    if (!(o.eps > 0) || !std::isfinite(o.eps)) failRange(std::string(name) + ": option 'eps' must be a finite number > 0");
  }
  if (o.method == Method::SVD_PADE && (!raw.padeP.empty() || !raw.padeQ.empty())) {
    const std::size_t want = static_cast<std::size_t>(o.degree) + 1;
    if (raw.padeP.size() != want || raw.padeQ.size() != want) {
      std::ostringstream os;
      os << name << ": options 'p' and 'q' must both hold degree+1 = " << want << " coefficients, got "
         << raw.padeP.size() << " and " << raw.padeQ.size();
      failRange(os.str());
    }
    for (double v : raw.padeP) if (!std::isfinite(v)) failRange(std::string(name) + ": Pade coefficient in 'p' is not finite");
    for (double v : raw.padeQ) if (!std::isfinite(v)) failRange(std::string(name) + ": Pade coefficient in 'q' is not finite");
    o.padeP = raw.padeP;
    o.padeQ = raw.padeQ;
  }
  if (raw.checkPsd && o.method != Method::NS && o.method != Method::MPA_LYA)
    failRange(std::string(name) + ": option 'checkPsd' applies to ns and mpa-lya only (eigen methods floor negative eigenvalues to eps)");
  o.checkPsd = raw.checkPsd;
  return o;
}

}  // namespace covpool
