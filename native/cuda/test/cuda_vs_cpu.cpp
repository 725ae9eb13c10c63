// CUDA backend vs CPU backend, op by op, method by method, float32 and float64: the first thing to
// run on a GPU machine (native/cuda/README.md, "GPU test plan"). Links both backends directly (no
// N-API), so it works before the addon can select a device.
//
//   covpool_cuda_test              all checks; exit status 1 if any fails (or no GPU is visible)
//   covpool_cuda_test --bench      then times the gpu-l workload (B=128, C=256, N=196, float32)
//   covpool_cuda_test --no-gpu-ok  without a GPU (CI): says why, runs the checks that need none
//                                  (plan.h decisions, the layer plan replayed on the CPU, the
//                                  eigensolver spread) and passes if they do
//
// Built with -DCOVPOOL_CUDA_TEST_SELF_CHECK it compares the CPU backend with itself and needs no
// CUDA at all: scripts/check-cuda-kernels.sh runs it that way to keep the driver itself working.
//
// What must hold (the issue: "same options and same results as the CPU backend"):
//   - triuvec / unpack and the coefficient matrices (same eigenvalues in, same formulas): exact;
//   - everything else on well-conditioned inputs: equal to rounding (relative max-norm tolerances
//     below), since only GEMM summation order and the eigensolver differ;
//   - the same errors with the same messages for bad input (eigensolver wording aside);
//   - on singular covariances (N < C, the normal GCP case) the forward to rounding; the backward of
//     the K methods depends on how each eigensolver resolves the tied eigenvalues, so it is
//     reported, and only required to be finite where the CPU's is.
#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../../core/backend.h"
#include "../../core/methods.h"
#include "../../cpu/blas.h"
#include "../layer_precision.h"
#include "../plan.h"
#ifndef COVPOOL_CUDA_TEST_SELF_CHECK
#include "../cuda_backend.h"
#endif
#ifdef COVPOOL_CUDA_EMULATED
#include "emulator/report.h"
#endif

using namespace covpool;

namespace {

int failures = 0, checks = 0;

struct Rng {
  std::uint64_t s = 0x2545f4914f6cdd1dULL;
  double uniform() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) / 9007199254740992.0;
  }
  double normal() {
    const double u = std::max(uniform(), 1e-300), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

double at(const Buffer& b, std::size_t i) {
  return b.dtype() == DType::F32 ? static_cast<double>(b.as<float>()[i]) : b.as<double>()[i];
}
void put(Buffer& b, std::size_t i, double v) {
  if (b.dtype() == DType::F32) b.as<float>()[i] = static_cast<float>(v);
  else b.as<double>()[i] = v;
}

// max |a - b| / max |a| (infinite when shapes differ or anything is non-finite on one side only).
double relDiff(const Buffer& a, const Buffer& b) {
  if (a.size() != b.size() || a.dtype() != b.dtype()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = at(a, i), y = at(b, i);
    if (std::isfinite(x) != std::isfinite(y)) return INFINITY;
    if (!std::isfinite(x)) continue;
    num = std::max(num, std::fabs(x - y));
    den = std::max(den, std::fabs(x));
  }
  return den > 0 ? num / den : num;
}

bool allFinite(const Buffer& a) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(at(a, i))) return false;
  return true;
}

void record(const std::string& what, double diff, double tol, bool strict) {
  ++checks;
  const bool ok = diff <= tol;
  if (!ok && strict) ++failures;
  std::printf("%-5s %-64s diff %-10.3g tol %-8.1g%s\n", ok ? "ok" : (strict ? "FAIL" : "info"), what.c_str(), diff, tol,
              strict ? "" : " (reported only)");
}

// Runs f on both backends; both must succeed or both fail with the same message.
// f gets the backend and its side (0 = CPU, 1 = CUDA) to know where to put its results.
bool sameOutcome(const std::string& what, const std::function<void(Backend&, int)>& f, Backend& cpu, Backend& gpu,
                 bool compareMessages = true) {
  std::string ec, eg;
  try { f(cpu, 0); } catch (const std::exception& e) { ec = e.what(); }
  try { f(gpu, 1); } catch (const std::exception& e) { eg = e.what(); }
  if (ec.empty() && eg.empty()) return true;
  ++checks;
  const bool ok = !ec.empty() && !eg.empty() && (!compareMessages || ec == eg);
  if (!ok) ++failures;
  std::printf("%-5s %-64s\n      cpu:  %s\n      cuda: %s\n", ok ? "ok" : "FAIL", (what + " (error)").c_str(),
              ec.empty() ? "(no error)" : ec.c_str(), eg.empty() ? "(no error)" : eg.c_str());
  return false;
}

Buffer randomBuffer(DType t, std::size_t n, Rng& rng, bool relu) {
  Buffer b(t, n);
  for (std::size_t i = 0; i < n; ++i) {
    const double v = rng.normal();
    put(b, i, relu ? std::max(v, 0.0) : v);
  }
  return b;
}

// B symmetric positive definite C x C matrices: X X^T / N + ridge I.
Buffer spdBatch(DType t, int B, int C, int N, double ridge, Rng& rng) {
  Buffer a(t, static_cast<std::size_t>(B) * C * C);
  std::vector<double> x(static_cast<std::size_t>(C) * N);
  for (int b = 0; b < B; ++b) {
    for (auto& v : x) v = rng.normal();
    for (int i = 0; i < C; ++i)
      for (int j = i; j < C; ++j) {
        double s = 0;
        for (int k = 0; k < N; ++k) s += x[i * N + k] * x[j * N + k];
        s = s / N + (i == j ? ridge : 0);
        put(a, (static_cast<std::size_t>(b) * C + i) * C + j, s);
        put(a, (static_cast<std::size_t>(b) * C + j) * C + i, s);
      }
  }
  return a;
}

RawOptions rawOf(const std::string& method) {
  RawOptions r;
  r.method = method;
  return r;
}

struct Variant {
  std::string label;
  RawOptions raw;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  auto add = [&](const std::string& label, const std::string& method, const std::function<void(RawOptions&)>& tweak = {}) {
    Variant x;
    x.label = label;
    x.raw.method = method;
    if (tweak) tweak(x.raw);
    v.push_back(x);
  };
  add("ns", "ns");
  add("ns frobenius T=8", "ns", [](RawOptions& r) { r.normalization = "frobenius"; r.iterations = 8; });
  add("svd", "svd");
  add("svd float32", "svd", [](RawOptions& r) { r.precision = "float32"; });
  add("svd-trunc kappa=1e3", "svd-trunc", [](RawOptions& r) { r.kappa = 1e3; });
  add("svd-topn", "svd-topn");
  add("svd-taylor", "svd-taylor");
  add("svd-taylor D=7", "svd-taylor", [](RawOptions& r) { r.degree = 7; });
  add("svd-pade", "svd-pade");
  add("svd-pade L=2 user p,q", "svd-pade", [](RawOptions& r) {
    r.degree = 2;
    r.padeP = {1.0, 0.5, 0.0};
    r.padeQ = {1.0, -0.5, -0.5};
  });
  add("svd-pi", "svd-pi");
  add("svd-pi T=2", "svd-pi", [](RawOptions& r) { r.iterations = 2; });
  add("svd-newton", "svd-newton");
  add("svd-lyap", "svd-lyap");
  add("svd-lyap trace", "svd-lyap", [](RawOptions& r) { r.normalization = "trace"; });
  add("mpa-lya", "mpa-lya");
  return v;
}

double tolFor(DType out, DType spectral, bool backward) {
  if (out == DType::F32 || spectral == DType::F32) return backward ? 2e-3 : 2e-4;
  return backward ? 1e-8 : 1e-10;
}

// Forward tolerance of the eigen methods on singular covariances (N < C): the C - N + 1 zero
// eigenvalues come out of any eigensolver as rounding noise of order eps_s * lambda_max (eps_s: the
// spectral precision's epsilon), and their square roots, of order sqrt(eps_s * lambda_max), enter
// S. Two correct eigensolvers therefore agree only to a small multiple of sqrt(eps_s) relative to
// |S| ~ sqrt(lambda_max): about 3e-4 in float32 (dsyevd vs dsyev alone differ by ~2e-4 there).
double singularForwardTol(DType out, DType spectral) {
  const double eps = spectral == DType::F32 ? 1.1920928955078125e-7 : 2.220446049250313e-16;
  return std::max(tolFor(out, spectral, false), 8 * std::sqrt(eps));
}

Buffer converted(const Buffer& b, DType t) {
  Buffer r(t, b.size());
  for (std::size_t i = 0; i < b.size(); ++i) put(r, i, at(b, i));
  return r;
}

// A random orthogonal C x C matrix: the rows of a Gaussian matrix, orthonormalized (Gram-Schmidt, twice).
std::vector<double> randomOrthogonal(int C, Rng& rng) {
  std::vector<double> q(static_cast<std::size_t>(C) * C);
  for (auto& v : q) v = rng.normal();
  for (int pass = 0; pass < 2; ++pass)
    for (int i = 0; i < C; ++i) {
      double* r = &q[static_cast<std::size_t>(i) * C];
      for (int j = 0; j < i; ++j) {
        const double* p = &q[static_cast<std::size_t>(j) * C];
        double d = 0;
        for (int k = 0; k < C; ++k) d += r[k] * p[k];
        for (int k = 0; k < C; ++k) r[k] -= d * p[k];
      }
      double nrm = 0;
      for (int k = 0; k < C; ++k) nrm += r[k] * r[k];
      nrm = std::sqrt(nrm);
      for (int k = 0; k < C; ++k) r[k] /= nrm;
    }
  return q;
}

struct Shape {
  const char* name;
  int B, C, N;
  bool singular;  // N < C: tied eigenvalues at eps
};

void layerChecks(Backend& cpu, Backend& gpu, DType t, const Shape& sh, Rng& rng) {
  const Dims d{sh.B, sh.C, sh.N};
  const Buffer x = randomBuffer(t, static_cast<std::size_t>(sh.B) * sh.C * sh.N, rng, true);
  const std::string tag = std::string(dtypeName(t)) + " " + sh.name;
  {
    Buffer ac, ag;
    if (sameOutcome(tag + " covpool", [&](Backend& be, int side) { (side == 0 ? ac : ag) = be.covpool(x, d); }, cpu, gpu))
      record(tag + " covpool", relDiff(ac, ag), t == DType::F32 ? 1e-5 : 1e-13, true);
    const Buffer dA = randomBuffer(t, static_cast<std::size_t>(sh.B) * sh.C * sh.C, rng, false);
    Buffer gc, gg;
    if (sameOutcome(tag + " covpoolBackward", [&](Backend& be, int side) { (side == 0 ? gc : gg) = be.covpoolBackward(x, dA, d); }, cpu, gpu))
      record(tag + " covpoolBackward", relDiff(gc, gg), t == DType::F32 ? 1e-5 : 1e-13, true);
  }
  for (const Variant& v : variants()) {
    SqrtmOptions o;
    try {
      o = resolveOptions(v.raw, t, sh.C);
    } catch (const std::exception& e) {
      std::printf("skip  %s %s: %s\n", tag.c_str(), v.label.c_str(), e.what());
      continue;
    }
    const std::string name = tag + " layer " + v.label;
    Buffer yc, yg;
    std::shared_ptr<State> sc, sg;
    if (!sameOutcome(name, [&](Backend& be, int side) {
          auto& y = side == 0 ? yc : yg;
          (side == 0 ? sc : sg) = be.layer(x, d, o, true, y);
        }, cpu, gpu, !usesEigenForward(o.method)))
      continue;
    const bool eigenSingular = sh.singular && usesEigenForward(o.method);
    record(name + " forward", relDiff(yc, yg), eigenSingular ? singularForwardTol(t, o.precision) : tolFor(t, o.precision, false), true);
    const Buffer dy = randomBuffer(t, yc.size(), rng, false);
    Buffer gc, gg;
    if (!sameOutcome(name + " backward", [&](Backend& be, int side) {
          (side == 0 ? gc : gg) = be.backward(*(side == 0 ? sc : sg), dy);
        }, cpu, gpu))
      continue;
    const bool kMethod = usesEigenForward(o.method) && o.method != Method::SVD_NEWTON && o.method != Method::SVD_LYAP;
    if (sh.singular && kMethod) {
      record(name + " backward", relDiff(gc, gg), tolFor(t, o.precision, true), false);
      ++checks;
      if (allFinite(gc) && !allFinite(gg)) {
        ++failures;
        std::printf("FAIL  %s backward: finite on the CPU, not on CUDA\n", name.c_str());
      }
    } else {
      record(name + " backward", relDiff(gc, gg), (sh.singular && usesEigenForward(o.method) ? 1e-4 : tolFor(t, o.precision, true)), true);
    }
#ifndef COVPOOL_CUDA_TEST_SELF_CHECK
    // Foreign states must be refused, not misread.
    ++checks;
    try {
      gpu.backward(*sc, dy);
      ++failures;
      std::printf("FAIL  %s: CUDA backward accepted a CPU state\n", name.c_str());
    } catch (const std::exception&) {
    }
#endif
  }
}

// The CUDA layer's precision plan (layer_precision.h) replayed with CPU ops: features converted to
// the covariance precision, covpool there, sqrtm in the spectral precision, its backward, the
// covariance backward in the covariance precision, one rounding to the input dtype. It must give
// the CPU backend's layer (which forms the covariance in the spectral precision) to rounding; a
// plan that forms the covariance in the input precision fails here for float32 features, N < C,
// and a float64 spectral part (gradients O(1) off). Runs without a GPU.
void layerPlanChecks(Backend& cpu, DType t, const Shape& sh, Rng& rng) {
  const Dims d{sh.B, sh.C, sh.N};
  const Buffer x = randomBuffer(t, static_cast<std::size_t>(sh.B) * sh.C * sh.N, rng, true);
  const std::string tag = std::string(dtypeName(t)) + " " + sh.name + " CUDA layer plan replayed on the CPU";
  for (const Variant& v : variants()) {
    const SqrtmOptions o = resolveOptions(v.raw, t, sh.C);
    if (o.method == Method::SVD_TOPN && o.topN > sh.C) continue;
    const DType ts = o.precision;
    const DType tc = dispatchDType(t, [&](auto i) {
      return dispatchDType(ts, [&](auto p) {
        return DTypeOf<typename cuda::LayerPrecision<decltype(i), decltype(p)>::Covariance>::value;
      });
    });
    const std::string name = tag + " " + v.label;
    try {
      Buffer yRef;
      auto stRef = cpu.layer(x, d, o, false, yRef);
      const Buffer xc = converted(x, tc);
      const Buffer a = converted(cpu.covpool(xc, d), ts);
      Buffer s;
      auto st = cpu.sqrtm(a, sh.B, sh.C, o, s);
      record(name + " forward", relDiff(yRef, converted(s, t)), t == DType::F32 ? 1e-6 : 1e-12, true);
      const Buffer dy = randomBuffer(t, yRef.size(), rng, false);
      const Buffer gRef = cpu.backward(*stRef, dy);
      const Buffer dA = cpu.backward(*st, converted(dy, ts));
      const Buffer g = converted(cpu.covpoolBackward(xc, converted(dA, tc), d), t);
      record(name + " backward", relDiff(gRef, g), t == DType::F32 ? 1e-5 : 1e-10, true);
    } catch (const std::exception& e) {
      std::printf("skip  %s: %s\n", name.c_str(), e.what());
    }
  }
}

// A second, correct way to take the eigen methods' square root of a singular covariance, on the
// CPU: rotate the (converted) features by a random orthogonal Q, so the eigensolver sees Q A Q^T
// and rounds differently, and rotate S back. Its spread against the direct result is what two
// eigensolvers (LAPACK, cuSOLVER) legitimately differ by, and it must fit singularForwardTol.
void eigensolverSpreadChecks(Backend& cpu, DType t, const Shape& sh, Rng& rng) {
  const Dims d{sh.B, sh.C, sh.N};
  const int C = sh.C, N = sh.N;
  const Buffer x = randomBuffer(t, static_cast<std::size_t>(sh.B) * C * N, rng, true);
  const std::vector<double> q = randomOrthogonal(C, rng);
  const std::string tag = std::string(dtypeName(t)) + " " + sh.name + " rotated eigensolver input";
  for (const Variant& v : variants()) {
    const SqrtmOptions o = resolveOptions(v.raw, t, C);
    if (!usesEigenForward(o.method) || (o.method == Method::SVD_TOPN && o.topN > C)) continue;
    const DType ts = o.precision;
    Buffer yRef;
    cpu.layer(x, d, o, false, yRef);
    // Q x in double, from the features as the spectral precision holds them, then stored in it.
    const Buffer xs = converted(x, ts);
    Buffer qx(ts, xs.size());
    for (int b = 0; b < sh.B; ++b)
      for (int i = 0; i < C; ++i)
        for (int k = 0; k < N; ++k) {
          double r = 0;
          for (int j = 0; j < C; ++j) r += q[static_cast<std::size_t>(i) * C + j] * at(xs, (static_cast<std::size_t>(b) * C + j) * N + k);
          put(qx, (static_cast<std::size_t>(b) * C + i) * N + k, r);
        }
    Buffer sRot;
    cpu.sqrtm(cpu.covpool(qx, d), sh.B, C, o, sRot);
    Buffer y(t, yRef.size());  // Q^T S' Q
    std::vector<double> tmp(static_cast<std::size_t>(C) * C);
    for (int b = 0; b < sh.B; ++b) {
      const std::size_t base = static_cast<std::size_t>(b) * C * C;
      for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
          double r = 0;
          for (int k = 0; k < C; ++k) r += at(sRot, base + static_cast<std::size_t>(i) * C + k) * q[static_cast<std::size_t>(k) * C + j];
          tmp[static_cast<std::size_t>(i) * C + j] = r;
        }
      for (int i = 0; i < C; ++i)
        for (int j = 0; j < C; ++j) {
          double r = 0;
          for (int k = 0; k < C; ++k) r += q[static_cast<std::size_t>(k) * C + i] * tmp[static_cast<std::size_t>(k) * C + j];
          put(y, base + static_cast<std::size_t>(i) * C + j, r);
        }
    }
    record(tag + " " + v.label + " forward", relDiff(yRef, y), singularForwardTol(t, ts), true);
  }
}

// Host-side decisions (plan.h): batch splitting and the description of an unusable CUDA setup.
void planChecks() {
  auto expect = [](const std::string& what, bool ok) {
    ++checks;
    if (!ok) ++failures;
    std::printf("%-5s plan: %s\n", ok ? "ok" : "FAIL", what.c_str());
  };
  using namespace cuda;
  const int k256 = xsyevBatchedItemsPerCall(256);
  expect("XsyevBatched at n=256 takes " + std::to_string(k256) + " matrices per call, within n*lda*batch <= INT32_MAX",
         256LL * 256 * k256 <= INT_MAX && 256LL * 256 * (k256 + 1) > INT_MAX);
  expect("XsyevBatched at n=33 and n=4096 stays within the bound",
         33LL * 33 * xsyevBatchedItemsPerCall(33) <= INT_MAX && 4096LL * 4096 * xsyevBatchedItemsPerCall(4096) <= INT_MAX &&
             xsyevBatchedItemsPerCall(50000) == 1);
  expect("chunks: 3 items of 100 bytes in a 250-byte budget go 2 at a time; at least 1, at most B",
         itemsPerChunk(100, 250, 3) == 2 && itemsPerChunk(1000, 250, 3) == 1 && itemsPerChunk(1, 1 << 20, 7) == 7 && itemsPerChunk(1, 1, 0) == 0);
  const std::string noDriver = cudaUnavailableReason(0, 13000, "CUDA driver version is insufficient for CUDA runtime version", 0);
  expect("no driver: '" + noDriver + "'", noDriver.find("no NVIDIA driver") != std::string::npos);
  const std::string old = cudaUnavailableReason(12080, 13000, "CUDA driver version is insufficient for CUDA runtime version", 0);
  expect("old driver: '" + old + "'", old.find("supports CUDA 12.8") != std::string::npos && old.find("CUDA 13.0 or newer") != std::string::npos);
  const std::string none = cudaUnavailableReason(13000, 13000, "no CUDA-capable device is detected", 0);
  expect("driver but no GPU: '" + none + "'", none.find("no usable device (no CUDA-capable device is detected)") != std::string::npos);
  expect("a usable device: no reason", cudaUnavailableReason(13010, 13000, "", 1).empty());
}

// svd-newton's backward runs in chunks bounded by COVPOOL_CUDA_CHUNK_MB: with a 1 MiB budget every
// item is its own chunk, and the result must not change. On the emulated device with exact
// allocation (COVPOOL_CUDA_EXACT_ALLOC=1: no rounding, nothing reused within a call) the most device
// memory the backward holds at once is measured too: a 2 MiB budget fits 2 items of C = 64 (tape and
// work: 23 matrices of 32 KiB each), and the chunks may not take more than the budget on top of the
// backward's own four batch-sized buffers.
void chunkedBackwardChecks(Backend& cpu, Backend& gpu, Rng& rng) {
  const int B = 5, C = 64;
  const Buffer a = spdBatch(DType::F64, B, C, 2 * C, 0.1, rng);
  const SqrtmOptions o = resolveOptions(rawOf("svd-newton"), DType::F64, C);
  Buffer sc, sg;
  auto stc = cpu.sqrtm(a, B, C, o, sc);
  auto stg = gpu.sqrtm(a, B, C, o, sg);
  const Buffer dS = randomBuffer(DType::F64, sc.size(), rng, false);
  const Buffer gc = cpu.backward(*stc, dS);
  for (const char* mb : {"1", "2"}) {
    setenv("COVPOOL_CUDA_CHUNK_MB", mb, 1);
    Buffer gg;
#ifdef COVPOOL_CUDA_EMULATED
    cudaEmptyCache();  // what earlier calls parked is not this backward's
    const std::size_t before = cudaEmulatorReport().liveDeviceBytes;
    cudaEmulatorResetPeak();
#endif
    try {
      gg = gpu.backward(*stg, dS);
    } catch (...) {
      unsetenv("COVPOOL_CUDA_CHUNK_MB");
      throw;
    }
    unsetenv("COVPOOL_CUDA_CHUNK_MB");
    record(std::string("float64 svd-newton backward B=5 C=64 in chunks of ") + mb + " MiB", relDiff(gc, gg), tolFor(DType::F64, DType::F64, true), true);
#ifdef COVPOOL_CUDA_EMULATED
    const char* exact = std::getenv("COVPOOL_CUDA_EXACT_ALLOC");
    if (exact && std::strcmp(exact, "1") == 0) {
      const double budget = std::atof(mb) * (1 << 20), own = 4.0 * B * C * C * sizeof(double) + 4096;
      const double chunkBytes = static_cast<double>(cudaEmulatorReport().peakDeviceBytes) - static_cast<double>(before) - own;
      record(std::string("svd-newton backward: device bytes of its chunks / the ") + mb + " MiB budget", chunkBytes / budget, 1.0, true);
    }
#endif
  }
}

// Channels-last features [B, N, C]: the covariance, its backward and the layer (forward and
// backward, gradient in the same layout) as the CPU backend computes them from the same layout.
void channelsLastChecks(Backend& cpu, Backend& gpu, DType t, Rng& rng) {
  const Dims d{3, 20, 30, true};
  const Buffer x = randomBuffer(t, static_cast<std::size_t>(d.B) * d.C * d.N, rng, true);
  const std::string tag = std::string(dtypeName(t)) + " channels-last B=3 C=20 N=30";
  const double tol = t == DType::F32 ? 1e-5 : 1e-12;
  Buffer ac, ag;
  if (sameOutcome(tag + " covpool", [&](Backend& be, int side) { (side == 0 ? ac : ag) = be.covpool(x, d); }, cpu, gpu))
    record(tag + " covpool", relDiff(ac, ag), tol, true);
  const Buffer dA = randomBuffer(t, static_cast<std::size_t>(d.B) * d.C * d.C, rng, false);
  Buffer gc, gg;
  if (sameOutcome(tag + " covpoolBackward", [&](Backend& be, int side) { (side == 0 ? gc : gg) = be.covpoolBackward(x, dA, d); }, cpu, gpu))
    record(tag + " covpoolBackward", relDiff(gc, gg), tol, true);
  for (const char* m : {"ns", "svd-pade"}) {
    const SqrtmOptions o = resolveOptions(rawOf(m), t, d.C);
    Buffer yc, yg;
    auto sc = cpu.layer(x, d, o, true, yc);
    auto sg = gpu.layer(x, d, o, true, yg);
    record(tag + " layer " + m + " forward", relDiff(yc, yg), tolFor(t, o.precision, false), true);
    const Buffer dy = randomBuffer(t, yc.size(), rng, false);
    record(tag + " layer " + m + " backward", relDiff(cpu.backward(*sc, dy), gpu.backward(*sg, dy)), tolFor(t, o.precision, true), true);
  }
}

// Host arrays on CUDA run pipelined in chunks of items (copies of one chunk overlapping the compute
// of another; COVPOOL_CUDA_PIPELINE_ITEMS forces small chunks here). Every step is per item, so each
// item's result must be exactly the one the whole batch gives on the device (device buffers in and
// out: no pipelining), forward and backward — bit for bit on the emulated device — and an error must
// name the batch's item, as the CPU's.
void pipelineChecks(Backend& cpu, Backend& gpu, Rng& rng) {
  for (DType t : {DType::F64, DType::F32}) {
    const Dims d{5, 24, 30};
    const Buffer x = randomBuffer(t, static_cast<std::size_t>(d.B) * d.C * d.N, rng, true);
    const Buffer xd = gpu.toDevice(x);
    for (const char* m : {"ns", "svd-pade", "mpa-lya", "svd-newton"})
      for (const char* items : {"1", "2", "3"}) {
        const SqrtmOptions o = resolveOptions(rawOf(m), t, d.C);
        const std::string tag = std::string(dtypeName(t)) + " layer " + m + " pipelined in chunks of " + items;
        Buffer yWhole, yChunks;
        auto whole = gpu.layer(xd, d, o, true, yWhole);
        setenv("COVPOOL_CUDA_PIPELINE_ITEMS", items, 1);
        std::shared_ptr<State> chunks;
        try {
          chunks = gpu.layer(x, d, o, true, yChunks);
        } catch (...) {
          unsetenv("COVPOOL_CUDA_PIPELINE_ITEMS");
          throw;
        }
        const Buffer dy = randomBuffer(t, yChunks.size(), rng, false);
        const Buffer gChunks = gpu.backward(*chunks, dy);                 // host gradient: pipelined again
        const Buffer gChunksDev = gpu.toHost(gpu.backward(*chunks, gpu.toDevice(dy)));  // device gradient: per chunk
        unsetenv("COVPOOL_CUDA_PIPELINE_ITEMS");
        const Buffer gWhole = gpu.toHost(gpu.backward(*whole, gpu.toDevice(dy)));
        // Bit for bit on the emulated device (OpenBLAS runs each item's GEMM alone); on a GPU cuBLAS
        // may pick another algorithm for another batch count, so there to rounding.
#ifdef COVPOOL_CUDA_EMULATED
        const double fwdTol = 0, bwdTol = 0;
#else
        const double fwdTol = tolFor(t, o.precision, false), bwdTol = tolFor(t, o.precision, true);
#endif
        record(tag + " forward", relDiff(gpu.toHost(yWhole), yChunks), fwdTol, true);
        record(tag + " backward, host gradient", relDiff(gWhole, gChunks), bwdTol, true);
        record(tag + " backward, device gradient", relDiff(gWhole, gChunksDev), bwdTol, true);
      }
    Buffer bad = randomBuffer(t, static_cast<std::size_t>(d.B) * d.C * d.N, rng, true);
    put(bad, 3 * static_cast<std::size_t>(d.C) * d.N + 7, NAN);  // item 3, in the second chunk of two items
    setenv("COVPOOL_CUDA_PIPELINE_ITEMS", "2", 1);
    Buffer y;
    sameOutcome(std::string(dtypeName(t)) + " NaN features in item 3, pipelined in chunks of 2",
                [&](Backend& be, int) { be.layer(bad, d, resolveOptions(rawOf("svd"), t, d.C), true, y); }, cpu, gpu);
    unsetenv("COVPOOL_CUDA_PIPELINE_ITEMS");
  }
}

#ifdef COVPOOL_CUDA_EMULATED
// Error order with injected eigensolver faults: the lowest failing item is reported, as on the CPU
// (items before an input error still get their eigendecomposition).
void faultOrderChecks(Backend& gpu, Rng& rng) {
  Buffer a = spdBatch(DType::F64, 4, 12, 24, 0.1, rng);
  put(a, 2 * 144 + 5, NAN);  // item 2: non-finite
  auto expectError = [&](const char* fault, const std::string& want) {
    setenv("COVPOOL_EMU_EIG_NO_CONVERGE", fault, 1);
    std::string got;
    try {
      Buffer l, v;
      gpu.eigh(a, 4, 12, l, v);
    } catch (const std::exception& e) {
      got = e.what();
    }
    unsetenv("COVPOOL_EMU_EIG_NO_CONVERGE");
    ++checks;
    const bool ok = got.find(want) != std::string::npos;
    if (!ok) ++failures;
    std::printf("%-5s eigh, NaN in item 2, eigensolver fails item %s: '%s'\n", ok ? "ok" : "FAIL", fault, got.c_str());
  };
  expectError("1", "batch item 1: eigendecomposition did not converge (cuSOLVER syevjBatched info=13)");
  expectError("3", "batch item 2: the matrix contains NaN or Infinity");
}
#endif

void sqrtmChecks(Backend& cpu, Backend& gpu, DType t, int B, int C, Rng& rng) {
  const Buffer a = spdBatch(t, B, C, 2 * C, 0.1, rng);
  const std::string tag = std::string(dtypeName(t)) + " sqrtm B=" + std::to_string(B) + " C=" + std::to_string(C);
  for (const Variant& v : variants()) {
    const SqrtmOptions o = resolveOptions(v.raw, t, C);
    Buffer sc, sg;
    std::shared_ptr<State> stc, stg;
    if (!sameOutcome(tag + " " + v.label, [&](Backend& be, int side) {
          (side == 0 ? stc : stg) = be.sqrtm(a, B, C, o, side == 0 ? sc : sg);
        }, cpu, gpu, false))
      continue;
    record(tag + " " + v.label + " forward", relDiff(sc, sg), tolFor(t, o.precision, false), true);
    Buffer dS = randomBuffer(t, sc.size(), rng, false), gc, gg;
    if (sameOutcome(tag + " " + v.label + " backward", [&](Backend& be, int side) {
          (side == 0 ? gc : gg) = be.backward(*(side == 0 ? stc : stg), dS);
        }, cpu, gpu))
      record(tag + " " + v.label + " backward", relDiff(gc, gg), tolFor(t, o.precision, true), true);
  }
}

void elementaryChecks(Backend& cpu, Backend& gpu, DType t, Rng& rng) {
  const int B = 3, C = 37;
  const std::string tag = dtypeName(t);
  const Buffer s = randomBuffer(t, static_cast<std::size_t>(B) * C * C, rng, false);
  Buffer yc, yg;
  if (sameOutcome(tag + " triuvec", [&](Backend& be, int side) { (side == 0 ? yc : yg) = be.triuvec(s, B, C); }, cpu, gpu))
    record(tag + " triuvec (exact)", relDiff(yc, yg), 0, true);
  Buffer uc, ug;
  if (sameOutcome(tag + " triuvecBackward", [&](Backend& be, int side) { (side == 0 ? uc : ug) = be.triuvecBackward(yc, B, C); }, cpu, gpu))
    record(tag + " triuvecBackward (exact)", relDiff(uc, ug), 0, true);

  // eigh: eigenvalues to rounding; eigenvectors are defined up to sign, so check U diag(l) U^T = A.
  for (int n : {12, 48}) {
    const Buffer a = spdBatch(t, B, n, 2 * n, 0.1, rng);
    Buffer vc, vg, uc2, ug2;
    if (!sameOutcome(tag + " eigh n=" + std::to_string(n), [&](Backend& be, int side) {
          if (side == 0) be.eigh(a, B, n, vc, uc2);
          else be.eigh(a, B, n, vg, ug2);
        }, cpu, gpu, false))
      continue;
    record(tag + " eigh n=" + std::to_string(n) + " values", relDiff(vc, vg), t == DType::F32 ? 1e-5 : 1e-12, true);
    double worst = 0, scale = 0;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          double r = 0;
          for (int k = 0; k < n; ++k) {
            const std::size_t base = static_cast<std::size_t>(b) * n * n;
            r += at(ug2, base + i * n + k) * at(vg, static_cast<std::size_t>(b) * n + k) * at(ug2, base + j * n + k);
          }
          const double want = at(a, (static_cast<std::size_t>(b) * n + i) * n + j);
          worst = std::max(worst, std::fabs(r - want));
          scale = std::max(scale, std::fabs(want));
        }
    record(tag + " eigh n=" + std::to_string(n) + " U diag(l) U^T = A (cuda)", worst / scale, t == DType::F32 ? 1e-5 : 1e-12, true);
  }

  // Coefficient matrices: same eigenvalues, same formulas, the same bits (ties included).
  std::vector<double> lv;
  for (int i = 0; i < C; ++i) lv.push_back(i < 9 ? 2.220446049250313e-16 : 0.05 * i + (i % 5 == 0 ? 0 : 1e-3 * i));
  std::sort(lv.begin(), lv.end());
  Buffer l(DType::F64, static_cast<std::size_t>(B) * C);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < C; ++i) put(l, static_cast<std::size_t>(b) * C + i, lv[i] * (1 + b));
  for (const Variant& v : variants()) {
    SqrtmOptions o = resolveOptions(v.raw, DType::F64, C);
    if (!usesEigenForward(o.method) || o.method == Method::SVD_NEWTON) continue;
    for (bool replace : {false, true}) {
      Buffer fc, fg;
      const std::string name = "coefficients " + v.label + (replace ? " replaced" : " raw");
      if (sameOutcome(name, [&](Backend& be, int side) { (side == 0 ? fc : fg) = be.coefficients(l, B, C, o, replace); }, cpu, gpu)) {
        // Bitwise: NaN == NaN, +-inf equal to themselves.
        std::size_t differ = 0;
        for (std::size_t i = 0; i < fc.size(); ++i) {
          const double x = fc.as<double>()[i], y = fg.as<double>()[i];
          if (!(x == y || (std::isnan(x) && std::isnan(y)))) ++differ;
        }
        record(name + " (exact; entries differing)", static_cast<double>(differ), 0, true);
      }
    }
  }
}

void errorChecks(Backend& cpu, Backend& gpu, DType t, Rng& rng) {
  const std::string tag = dtypeName(t);
  const Dims d{3, 10, 12};
  Buffer x = randomBuffer(t, static_cast<std::size_t>(d.B) * d.C * d.N, rng, true);
  put(x, static_cast<std::size_t>(d.C) * d.N + 5, NAN);  // item 1
  Buffer y;
  const SqrtmOptions ns = resolveOptions(rawOf("ns"), t, d.C);
  sameOutcome(tag + " NaN features (item 1)", [&](Backend& be, int side) { be.layer(x, d, ns, true, y); }, cpu, gpu);

  Buffer a = spdBatch(t, 2, 6, 12, 0.1, rng);
  put(a, 36 + 1 * 6 + 4, at(a, 36 + 1 * 6 + 4) + 1.0);  // item 1: A[1][4] != A[4][1]
  const SqrtmOptions svd = resolveOptions(rawOf("svd"), t, 6);
  sameOutcome(tag + " asymmetric matrix (item 1)", [&](Backend& be, int side) { be.sqrtm(a, 2, 6, svd, y); }, cpu, gpu);

  Buffer z(t, 2 * 36);
  for (std::size_t i = 0; i < z.size(); ++i) put(z, i, 0.0);
  sameOutcome(tag + " zero matrix under trace normalization", [&](Backend& be, int side) { be.sqrtm(z, 2, 6, ns, y); }, cpu, gpu);

  const Buffer good = spdBatch(t, 2, 6, 12, 0.1, rng);
  Buffer sc, sg;
  auto stc = cpu.sqrtm(good, 2, 6, svd, sc);
  auto stg = gpu.sqrtm(good, 2, 6, svd, sg);
  Buffer dS = randomBuffer(t, sc.size(), rng, false);
  put(dS, 40, INFINITY);  // item 1
  sameOutcome(tag + " infinite gradient (item 1)", [&](Backend& be, int side) { be.backward(*(side == 0 ? stc : stg), dS); }, cpu, gpu);
}

void bench(Backend& gpu) {
  Rng rng;
  const Dims d{128, 256, 196};
  const Buffer x = randomBuffer(DType::F32, static_cast<std::size_t>(d.B) * d.C * d.N, rng, true);
  for (const char* m : {"ns", "svd-pade", "svd-lyap", "mpa-lya"}) {
    const SqrtmOptions o = resolveOptions(rawOf(m), DType::F32, d.C);
    std::vector<double> ms;
    for (int rep = 0; rep < 7; ++rep) {
      Buffer y;
      const auto t0 = std::chrono::steady_clock::now();
      auto st = gpu.layer(x, d, o, true, y);
      gpu.backward(*st, y);  // any gradient of the right shape will do
      const auto t1 = std::chrono::steady_clock::now();
      if (rep >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("BENCH gpu-l B=128 C=256 N=196 float32 %-10s fwd+bwd median %.2f ms (host copies included)\n", m, ms[ms.size() / 2]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool doBench = false, noGpuOk = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--bench") == 0) doBench = true;
    else if (std::strcmp(argv[i], "--no-gpu-ok") == 0) noGpuOk = true;
    else {
      std::printf("usage: covpool_cuda_test [--bench] [--no-gpu-ok]\n");
      return 2;
    }
  }
  cpu::configureBlasThreads();
  Backend& cpu = cpuBackend();
#ifdef COVPOOL_CUDA_TEST_SELF_CHECK
  (void)noGpuOk;
  Backend* gpu = &cpuBackend();
  std::printf("self-check: the CPU backend against itself (no CUDA)\n");
#else
  const int count = cudaDeviceCount();
  std::printf("CUDA devices: %d\n", count);
  Backend* gpu = nullptr;
  if (count == 0) {
    // Without a GPU (CI) only the checks that need none run; on a GPU machine this is a failure.
    std::printf("%s no CUDA device: %s\n", noGpuOk ? "SKIP " : "FAIL ", cudaUnavailableReason().c_str());
    if (!noGpuOk) return 1;
  } else {
    gpu = &cudaBackend(0);
  }
#endif
  Rng rng;
  const Shape shapes[] = {
      {"layer B=3 C=24 N=64 (syevj)", 3, 24, 64, false},
      {"layer B=2 C=48 N=96 (Xsyev)", 2, 48, 96, false},
      {"layer B=4 C=16 N=8 singular (syevj)", 4, 16, 8, true},
      {"layer B=3 C=40 N=20 singular (Xsyev)", 3, 40, 20, true},
  };
  planChecks();
  for (DType t : {DType::F64, DType::F32}) {
    try {
      for (const Shape& sh : shapes) layerPlanChecks(cpu, t, sh, rng);
      for (const Shape& sh : shapes)
        if (sh.singular) eigensolverSpreadChecks(cpu, t, sh, rng);
      if (!gpu) continue;
      elementaryChecks(cpu, *gpu, t, rng);
      errorChecks(cpu, *gpu, t, rng);
      channelsLastChecks(cpu, *gpu, t, rng);
      sqrtmChecks(cpu, *gpu, t, 3, 10, rng);
      sqrtmChecks(cpu, *gpu, t, 2, 45, rng);
      for (const Shape& sh : shapes) layerChecks(cpu, *gpu, t, sh, rng);
    } catch (const std::exception& e) {
      ++failures;
      std::printf("FAIL  %s: unexpected exception: %s\n", dtypeName(t), e.what());
    }
  }
  if (gpu) {
    // Each group in its own try, so an exception is reported under the group that threw it.
    const auto group = [&](const char* name, const std::function<void()>& run) {
      try {
        run();
      } catch (const std::exception& e) {
        ++failures;
        std::printf("FAIL  %s: unexpected exception: %s\n", name, e.what());
      }
    };
    group("chunked svd-newton backward", [&] { chunkedBackwardChecks(cpu, *gpu, rng); });
#ifndef COVPOOL_CUDA_TEST_SELF_CHECK
    // Pipelining is the CUDA backend's (device buffers, a copy stream); the CPU backend has neither.
    group("pipelined host arrays", [&] { pipelineChecks(cpu, *gpu, rng); });
#endif
#ifdef COVPOOL_CUDA_EMULATED
    group("fault order", [&] { faultOrderChecks(*gpu, rng); });
#endif
    if (doBench) bench(*gpu);
  }
#ifdef COVPOOL_CUDA_EMULATED
  // On the emulated device: no misuse was seen, and once the caching allocator gives everything
  // back (every state above is gone), no device memory is left allocated.
  const std::size_t released = cudaEmptyCache();
  const CudaEmulatorReport r = cudaEmulatorReport();
  ++checks;
  if (r.violations) ++failures;
  std::printf("%-5s emulated device: %d violation(s)%s%s\n", r.violations ? "FAIL" : "ok", r.violations,
              r.messages.empty() ? "" : "; first: ", r.messages.empty() ? "" : r.messages[0].c_str());
  ++checks;
  if (r.liveDeviceBlocks) ++failures;
  std::printf("%-5s emulated device: %zu device block(s), %zu bytes, left allocated after emptyCache (%zu bytes released); "
              "%zu kernel launches, %zu blocks, %zu library calls\n",
              r.liveDeviceBlocks ? "FAIL" : "ok", r.liveDeviceBlocks, r.liveDeviceBytes, released, r.kernelLaunches, r.blocksRun, r.libraryCalls);
#endif
  std::printf("covpool_cuda_test: %d checks, %d failing%s\n", checks, failures, gpu ? "" : " (no GPU: CPU-side checks only)");
  return failures ? 1 : 0;
}
