// Host-side check of native/cuda/kmath.cuh against the CPU backend, runnable without a GPU: the
// per-element math the CUDA kernels use (every K-matrix variant, the svd-pade pole rule, svd-pi's
// two degrees, the per-matrix non-finite replacement, the fused Hadamard / symmetrization into the
// `inner` matrix, svd-lyap's C) must give the CPU's values bit for bit from the same eigenvalues.
//
// The CPU reference is the real code: cpu::fillF for the coefficient matrix and
// cpu::eigenSqrtBackward run with W = I, where M = W G W^T = G and dA = W^T inner W = inner exactly,
// so its output *is* the inner matrix. Built and run by scripts/check-cuda-kernels.sh.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../core/pade.h"
#include "../../cpu/eigen_sqrtm.h"
#include "../kmath.cuh"

using namespace covpool;
namespace km = covpool::cuda::kmath;

namespace {

int failures = 0, checks = 0;

// Same value, or both NaN. Bit-identical except for the sign of zero, which the reference cannot
// keep: its inner matrix comes out of a GEMM with W = I, where -0 + 0 = +0.
template <class T> bool sameBits(T a, T b) {
  if (a != a && b != b) return true;
  return a == b;
}

struct Rng {
  std::uint64_t s = 0x9e3779b97f4a7c15ULL;
  double uniform() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0;
  }
};

// Ascending spectra as the backend sees them after flooring at eps.
template <class T> std::vector<std::vector<T>> spectra(int n, Rng& rng) {
  const T eps = km::epsilon<T>();
  std::vector<std::vector<T>> out;
  std::vector<T> l(n);
  for (int i = 0; i < n; ++i) l[i] = static_cast<T>(0.1 + 0.37 * i + 0.01 * rng.uniform());  // separated
  out.push_back(l);
  for (int i = 0; i < n; ++i) l[i] = i < n / 2 ? eps : static_cast<T>(0.5 + i + rng.uniform());  // ties at eps
  out.push_back(l);
  for (int i = 0; i < n; ++i) l[i] = T(1) + T(i) * eps;  // near ties: the svd-pade pole rule's region
  out.push_back(l);
  for (int i = 0; i < n; ++i) l[i] = T(1) + T(i / 2) * T(4) * eps;  // exact pairs of ties, then near
  out.push_back(l);
  for (int i = 0; i < n; ++i) l[i] = static_cast<T>(std::pow(10.0, -12.0 + 15.0 * i / (n > 1 ? n - 1 : 1)));  // wide range
  for (auto& v : l) v = v < eps ? eps : v;
  out.push_back(l);
  for (int i = 0; i < n; ++i) l[i] = T(2.5);  // all equal
  out.push_back(l);
  return out;
}

struct Case {
  std::string name;
  SqrtmOptions o;
  PadeCoefficients pade;
};

std::vector<Case> cases() {
  std::vector<Case> cs;
  auto add = [&](const std::string& name, Method m, auto&& tweak) {
    Case c;
    c.name = name;
    c.o.method = m;
    tweak(c);
    cs.push_back(c);
  };
  add("svd", Method::SVD, [](Case&) {});
  add("svd-topn", Method::SVD_TOPN, [](Case&) {});
  add("svd-trunc kappa=1e10", Method::SVD_TRUNC, [](Case& c) { c.o.kappa = 1e10; });
  add("svd-trunc kappa=3", Method::SVD_TRUNC, [](Case& c) { c.o.kappa = 3; });
  for (int D : {0, 1, 7, 100}) add("svd-taylor D=" + std::to_string(D), Method::SVD_TAYLOR, [D](Case& c) { c.o.degree = D; });
  for (int L : {1, 5, 50}) add("svd-pade L=" + std::to_string(L), Method::SVD_PADE, [L](Case& c) {
    c.o.degree = L;
    c.pade = geometricSeriesPade(L);
  });
  add("svd-pade user p,q", Method::SVD_PADE, [](Case& c) {
    // A member of the degenerate family scaled by (1 + r/3): P(r)(1 - r) = Q(r) still holds.
    c.o.degree = 4;
    PadeCoefficients g = geometricSeriesPade(3);
    c.pade.p.assign(5, 0.0);
    c.pade.q.assign(5, 0.0);
    for (int k = 0; k <= 3; ++k) {
      c.pade.p[k] += g.p[k];
      c.pade.p[k + 1] += g.p[k] / 3;
      c.pade.q[k] += g.q[k];
      c.pade.q[k + 1] += g.q[k] / 3;
    }
  });
  for (int T_ : {1, 2, 19}) add("svd-pi T=" + std::to_string(T_), Method::SVD_PI, [T_](Case& c) { c.o.iterations = T_; });
  add("svd-lyap", Method::SVD_LYAP, [](Case&) {});
  return cs;
}

template <class T> void report(const std::string& what, int n, int i, int j, T want, T got) {
  if (++failures <= 20)
    std::printf("MISMATCH %s n=%d (%d,%d): cpu %.17g cuda-kmath %.17g\n", what.c_str(), n, i, j,
                static_cast<double>(want), static_cast<double>(got));
}

template <class T> void runType(const char* tname) {
  Rng rng;
  for (int n : {1, 2, 3, 8, 33}) {
    const auto specs = spectra<T>(n, rng);
    for (const Case& c : cases()) {
      const int L = static_cast<int>(c.pade.q.size()) - 1;
      for (std::size_t si = 0; si < specs.size(); ++si) {
        const std::vector<T>& l = specs[si];
        const std::string tag = std::string(tname) + " " + c.name + " spectrum " + std::to_string(si);
        const std::size_t m = static_cast<std::size_t>(n) * n;

        // Per-matrix statistics, the two-pass way the kernels do it.
        const cuda::KParams kRaw = cuda::makeKParams(c.o, c.pade.p.data(), c.pade.q.data(), L, false);
        const cuda::KParams kRep = cuda::makeKParams(c.o, c.pade.p.data(), c.pade.q.data(), L, true);
        km::FStats<T> st = km::emptyStats<T>();
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) km::accumulate(st, km::coefficient<T>(kRep, i, j, l[i], l[j]));
        st = km::finish(st);

        // 1. The analysis coefficient matrix, with and without replacement (not svd-lyap: the CPU
        //    fills its C in cpu_backend.cpp, not in fillF).
        if (c.o.method != Method::SVD_LYAP) {
          for (bool replace : {false, true}) {
            std::vector<T> F(m);
            cpu::fillF(c.o, l.data(), F.data(), n, &c.pade, replace);
            const cuda::KParams& k = replace ? kRep : kRaw;
            for (int i = 0; i < n; ++i)
              for (int j = 0; j < n; ++j) {
                ++checks;
                const T got = km::analysisEntry<T>(k, l.data(), i, j, st);
                if (!sameBits(F[i * n + j], got)) report(tag + (replace ? " F(replaced)" : " F(raw)"), n, i, j, F[i * n + j], got);
              }
          }
        }

        // 2. The fused inner matrix against the CPU backward with W = I.
        std::vector<T> dS(m), dA(m), w(m, T(0)), M(m), work(3 * m);
        for (auto& v : dS) v = static_cast<T>(2 * rng.uniform() - 1);
        for (int i = 0; i < n; ++i) w[i * n + i] = T(1);
        cpu::eigenSqrtBackward(c.o, dS.data(), dA.data(), w.data(), l.data(), n, &c.pade, work.data());
        cpu::symmetrize(dS.data(), M.data(), n);  // M = W sym(dS) W^T = sym(dS)
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) {
            ++checks;
            const T got = km::innerEntry<T>(kRep, M.data(), l.data(), n, i, j, st);
            if (!sameBits(dA[i * n + j], got)) report(tag + " inner", n, i, j, dA[i * n + j], got);
          }
      }
    }
  }
}

}  // namespace

int main() {
  runType<float>("float32");
  runType<double>("float64");
  std::printf("kmath host test: %d entries compared, %d mismatches\n", checks, failures);
  return failures ? 1 : 0;
}
