// The CPU backend: every op of core/backend.h over OpenBLAS + LAPACKE. Batch items are independent
// and run in parallel on the process-wide pool; within one item the whole pipeline (covariance,
// normalization, square root, packing) runs on one core, with the item's data hot in its caches.
#include <cmath>
#include <exception>
#include <sstream>
#include <type_traits>

#include "../core/backend.h"
#include "../core/pade.h"
#include "../core/threadpool.h"
#include "covariance.h"
#include "eigen_sqrtm.h"
#include "mpa_lya.h"
#include "newton_schulz.h"

namespace covpool::cpu {
namespace {

std::string sampleMsg(std::size_t b, const std::string& what) {
  std::ostringstream os;
  os << "batch item " << b << ": " << what;
  return os.str();
}

// Runs one batch item, naming the item in any error it raises (kernels deep down do not know it).
template <class F> void forItem(std::size_t b, F&& f) {
  try {
    f();
  } catch (const CovpoolError& e) {
    const std::string msg = e.what();
    if (msg.rfind("batch item ", 0) == 0) throw;
    throw CovpoolError(sampleMsg(b, msg));
  }
}

// The first step of a group of items (first .. first + count - 1), item by item until one fails:
// returns how many succeeded and leaves the failure in `failed`. The caller finishes the items
// before the failed one and then rethrows, so a grouped call still reports the lowest failing
// item's error, as parallelFor does.
template <class F> std::size_t startGroup(std::size_t first, std::size_t count, std::exception_ptr& failed, F&& step) {
  for (std::size_t q = 0; q < count; ++q) {
    try {
      forItem(first + q, [&] { step(q); });
    } catch (...) {
      failed = std::current_exception();
      return q;
    }
  }
  return count;
}

// Per-thread scratch areas, reused across items and calls (no allocation in the hot loop) and
// freed by emptyCache() between calls. Slot 0 holds an item's pipeline buffers, slot 1 the work
// space of the method kernels, so the two never alias. Contents are not initialized.
template <class T, int Slot = 0> T* scratch(std::size_t count) {
  thread_local ScratchSlot buf;
  return static_cast<T*>(buf.get(count * sizeof(T)));
}

template <class Ti, class Ts> class CpuState : public State {
 public:
  // Cached (recycled) memory: a training loop gets the previous step's pages back.
  // Layer input: the centered features, in the spectral precision (empty for sqrtm states).
  CachedArray<Ts> xc;
  CachedArray<Ts> tau;    // per item normalization factor (1 for 'none')
  CachedArray<Ts> ahat;   // A / tau: normalization backward, and Newton-Schulz's Y_0
  CachedArray<Ts> araw;   // svd-newton: the un-normalized A its Newton-Schulz backward runs at
  CachedArray<Ts> shat;   // S / sqrt(tau): normalization backward and mpa-lya
  CachedArray<Ts> w, lam; // eigen methods: W = U^T and the (floored) eigenvalues
  CachedArray<Ts> tape;   // ns: the Newton-Schulz tape
  PadeCoefficients pade;

  std::size_t m() const { return static_cast<std::size_t>(dims.C) * dims.C; }
  std::size_t bytes() const override {
    return (xc.size() + tau.size() + ahat.size() + araw.size() + shat.size() + w.size() + lam.size() + tape.size()) * sizeof(Ts);
  }
  bool keepsNormalized() const { return options.normalization != Normalization::None || options.method == Method::MPA_LYA; }

  void allocate() {
    const std::size_t B = dims.B, mm = m();
    tau.resize(B);
    for (std::size_t b = 0; b < B; ++b) tau[b] = Ts(1);
    if (keepsNormalized()) {
      ahat.resize(B * mm);
      shat.resize(B * mm);
    }
    if (options.method == Method::SVD_NEWTON) araw.resize(B * mm);
    if (usesEigenForward(options.method)) { w.resize(B * mm); lam.resize(B * dims.C); }
    if (options.method == Method::NS) tape.resize(B * mm * NsTape<Ts>::matricesNeeded(options.iterations));
    if (options.method == Method::SVD_PADE) {
      if (!options.padeP.empty()) pade = {options.padeP, options.padeQ};
      else pade = geometricSeriesPade(options.degree);
    } else if (options.method == Method::MPA_LYA) {
      pade = sqrtPade(options.degree);
    }
  }
  // Newton-Schulz's tape of item b. Its Y_0 is the normalized input, which ahat keeps (ns always
  // normalizes: normalization 'none' is refused for it).
  NsTape<Ts> nsTape(std::size_t b) {
    NsTape<Ts> t;
    t.bind(tape.data() + b * m() * NsTape<Ts>::matricesNeeded(options.iterations), dims.C, options.iterations, ahat.data() + b * m());
    return t;
  }
};

// ||a||_F. The sum of squares (in double) overflows for entries near 1e155 and underflows to
// zero below 1e-162, which would reject valid float64 matrices as zero or non-PSD; only then is
// the norm recomputed with the entries scaled by their largest magnitude (in range the result
// is the plain one, which the CUDA kernel computes too).
template <class T> T frobeniusNorm(const T* a, std::size_t count) {
  const double plain = dotInDouble(a, a, count);
  if (plain >= 1e-290 && plain <= 1e290) return std::sqrt(static_cast<T>(plain));
  double scale = 0;
  for (std::size_t i = 0; i < count; ++i) scale = std::max(scale, std::fabs(static_cast<double>(a[i])));
  if (!(scale > 0) || !std::isfinite(scale)) return std::sqrt(static_cast<T>(plain));
  double scaled = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(a[i]) / scale;
    scaled += v * v;
  }
  return static_cast<T>(scale * std::sqrt(scaled));
}

template <class T> T normalizer(const T* a, int n, Normalization nm) {
  if (nm == Normalization::Trace) return trace(a, n);
  if (nm == Normalization::Frobenius) return frobeniusNorm(a, static_cast<std::size_t>(n) * n);
  return T(1);
}

// The square root of one item in three steps, so that the eigen methods can run the middle one
// (the eigendecomposition) on several items together: a (n x n, Ts, overwritten with scratch)
// -> s (n x n, Ts).
// 1. Checks, normalization A / tau, and what the backward keeps of the input.
template <class Ti, class Ts> void sqrtmItemPrepare(CpuState<Ti, Ts>& st, std::size_t b, Ts* a) {
  const int n = st.dims.C;
  const std::size_t m = st.m();
  const SqrtmOptions& o = st.options;
  if (!allFinite(a, m)) fail(sampleMsg(b, "the matrix contains NaN or Infinity"));
  const Ts tau = normalizer(a, n, o.normalization);
  if (!(tau > 0) || !std::isfinite(tau))
    fail(sampleMsg(b, std::string("cannot normalize by the ") + normalizationName(o.normalization) +
                          " (it is " + std::to_string(static_cast<double>(tau)) +
                          "): the matrix is zero or not positive semi-definite"));
  st.tau[b] = tau;
  if (o.method == Method::SVD_NEWTON) std::copy(a, a + m, st.araw.data() + b * m);
  if (tau != Ts(1)) for (std::size_t i = 0; i < m; ++i) a[i] /= tau;
  if (st.keepsNormalized()) std::copy(a, a + m, st.ahat.data() + b * m);
}

// 2. The method's square root of the normalized matrix. Eigen methods find the item's
// eigendecomposition in the state already (eighGroup below) and only form s from it.
template <class Ti, class Ts> void sqrtmItemCore(CpuState<Ti, Ts>& st, std::size_t b, Ts* a, Ts* s) {
  const int n = st.dims.C;
  const std::size_t m = st.m();
  const SqrtmOptions& o = st.options;
  if (o.method == Method::NS) {
    nsForward(s, st.nsTape(b));  // reads ahat, a's kept copy
  } else if (o.method == Method::MPA_LYA) {
    Ts* work = scratch<Ts, 1>(mpaForwardWorkMatrices * m);
    Vec<lapack_int> ipiv(n);
    mpaForward(a, s, n, st.pade, work, ipiv.data());
  } else {
    const int topN = o.method == Method::SVD_TOPN ? o.topN : 0;
    eigenSqrtFromEigen(s, st.w.data() + b * m, st.lam.data() + b * n, n, static_cast<Ts>(o.eps), topN, scratch<Ts, 1>(m));
  }
}

// 3. Checks, what the backward keeps of the output, and the scale back by sqrt(tau).
template <class Ti, class Ts> void sqrtmItemFinish(CpuState<Ti, Ts>& st, std::size_t b, Ts* s) {
  const std::size_t m = st.m();
  const SqrtmOptions& o = st.options;
  if (!allFinite(s, m)) fail(sampleMsg(b, std::string(methodName(o.method)) + " produced a non-finite square root"));
  if (st.keepsNormalized()) std::copy(s, s + m, st.shat.data() + b * m);
  const Ts tau = st.tau[b];
  if (tau != Ts(1)) {
    const Ts r = std::sqrt(tau);
    for (std::size_t i = 0; i < m; ++i) s[i] *= r;
  }
}

// The eigendecompositions of a group of prepared items (items first .. first + count - 1, their
// matrices at as[q]) into the state's W and eigenvalues, together (symmetric_eigen.h).
template <class Ti, class Ts> void eighGroup(CpuState<Ti, Ts>& st, std::size_t first, std::size_t count, Ts* const* as) {
  const int n = st.dims.C;
  const std::size_t m = st.m();
  Ts* w[kTridiagonalLanes] = {};
  Ts* l[kTridiagonalLanes] = {};
  int info[kTridiagonalLanes] = {};
  for (std::size_t q = 0; q < count; ++q) {
    w[q] = st.w.data() + (first + q) * m;
    l[q] = st.lam.data() + (first + q) * n;
  }
  eighBatch(n, static_cast<int>(count), as, w, l, info);
  for (std::size_t q = 0; q < count; ++q) forItem(first + q, [&] { requireEighConverged(info[q]); });
}

// Backward of the normalization S = sqrt(tau) f(A / tau) around a core backward dA_hat:
//   dA = dA_hat / tau + (<dS, S_hat> / (2 sqrt tau) - <dA_hat, A_hat> / tau) * dtau/dA,
//   dtau/dA = I (trace) or A_hat (Frobenius).
template <class T> void normalizationBackward(Normalization nm, T tau, const T* dS, const T* sHat, const T* aHat,
                                              T* dA /* in: dA_hat, out: dA */, int n) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  if (nm == Normalization::None) return;
  const T c = dot(dS, sHat, m) / (T(2) * std::sqrt(tau)) - dot(dA, aHat, m) / tau;
  for (std::size_t i = 0; i < m; ++i) dA[i] /= tau;
  if (nm == Normalization::Trace) for (int i = 0; i < n; ++i) dA[i * n + i] += c;
  else for (std::size_t i = 0; i < m; ++i) dA[i] += c * aHat[i];
}

// svd-newton's backward: the derivative of T Newton-Schulz iterations (trace normalization) at A.
template <class T> void newtonSchulzGradientAt(const T* a, const T* dS, T* dA, int n, int iters) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  CachedArray<T> tapeStore(NsTape<T>::matricesNeeded(iters) * m), aHat(m), sHat(m), dsHat(m);
  NsTape<T> tape;
  tape.bind(tapeStore.data(), n, iters, aHat.data());
  const T tau = trace(a, n);
  if (!(tau > 0)) fail("svd-newton: the trace of the matrix is not positive, Newton-Schulz cannot be normalized");
  for (std::size_t i = 0; i < m; ++i) aHat[i] = a[i] / tau;
  nsForward(sHat.data(), tape);
  for (std::size_t i = 0; i < m; ++i) dsHat[i] = dS[i] * std::sqrt(tau);
  nsBackward(dsHat.data(), dA, tape, scratch<T, 1>(nsWorkMatrices * m));
  normalizationBackward(Normalization::Trace, tau, dS, sHat.data(), aHat.data(), dA, n);
}

// Backward of one item: dS (n x n, Ts, raw) -> dA (n x n, Ts, symmetric).
template <class Ti, class Ts> void sqrtmItemBackward(CpuState<Ti, Ts>& st, std::size_t b, const Ts* dS, Ts* dA) {
  const int n = st.dims.C;
  const std::size_t m = st.m();
  const SqrtmOptions& o = st.options;
  const Ts tau = st.tau[b];
  if (o.method == Method::SVD_NEWTON) {
    newtonSchulzGradientAt(st.araw.data() + b * m, dS, dA, n, o.iterations);
  } else if (o.method == Method::MPA_LYA) {
    // The Lyapunov solution is the derivative of the true square root as a whole, normalization
    // included, so no normalization backward follows. Scaled so the iteration sees spectrum <= 1.
    Ts* g = scratch<Ts, 1>((lyapunovWorkMatrices + 1) * m);
    const Ts r = std::sqrt(tau);
    for (std::size_t i = 0; i < m; ++i) g[i] = dS[i] / r;
    lyapunovSignIteration(st.shat.data() + b * m, g, dA, n, o.iterations, g + m);
  } else {
    Ts* dsHat = scratch<Ts, 1>((nsWorkMatrices + 1) * m);
    Ts* work = dsHat + m;
    const Ts r = std::sqrt(tau);
    for (std::size_t i = 0; i < m; ++i) dsHat[i] = dS[i] * r;
    if (o.method == Method::NS) nsBackward(dsHat, dA, st.nsTape(b), work);
    else eigenSqrtBackward(o, dsHat, dA, st.w.data() + b * m, st.lam.data() + b * n, n, &st.pade, work);
    if (o.normalization != Normalization::None)
      normalizationBackward(o.normalization, tau, dS, st.shat.data() + b * m, st.ahat.data() + b * m, dA, n);
  }
  symmetrize(dA, dA, n);  // the one symmetrization of every method's gradient
  if (!allFinite(dA, m)) fail(sampleMsg(b, std::string(methodName(o.method)) + " produced a non-finite gradient"));
}

template <class Ti> void checkSymmetric(const Ti* a, int n, std::size_t b) {
  Ti scale = 0;
  for (int i = 0; i < n * n; ++i) scale = std::max(scale, std::fabs(a[i]));
  const Ti tol = Ti(100) * std::numeric_limits<Ti>::epsilon() * scale;
  auto asymmetric = [&](int i, int j) { return std::fabs(a[i * n + j] - a[j * n + i]) > tol; };
  // In 32 x 32 tiles, so the column-order reads stay in cache (a plain pass over the upper triangle
  // misses on every a[j][i] at n = 256) ...
  constexpr int tile = 32;
  bool bad = false;
  for (int ib = 0; ib < n && !bad; ib += tile)
    for (int jb = ib; jb < n; jb += tile)
      for (int i = ib; i < std::min(ib + tile, n); ++i)
        for (int j = std::max(jb, i + 1); j < std::min(jb + tile, n); ++j) bad |= asymmetric(i, j);
  if (!bad) return;
  // ... and, only when something is off, in row order to name the first offending pair.
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (asymmetric(i, j)) {
        std::ostringstream os;
        os << "the matrix is not symmetric: A[" << i << "][" << j << "] = " << a[i * n + j] << " but A[" << j << "][" << i
           << "] = " << a[j * n + i];
        fail(sampleMsg(b, os.str()));
      }
}

template <class Ti, class Ts>
std::shared_ptr<State> forwardImpl(const Buffer& in, Dims d, const SqrtmOptions& o, bool fromFeatures, bool vectorize, Buffer& out) {
  auto st = std::make_shared<CpuState<Ti, Ts>>();
  st->describe(fromFeatures ? StateKind::Layer : StateKind::Sqrtm, d, DTypeOf<Ti>::value, o, fromFeatures && vectorize);
  st->allocate();
  const int C = d.C, N = d.N;
  const std::size_t m = st->m(), tri = static_cast<std::size_t>(C) * (C + 1) / 2;
  const std::size_t outPer = st->vectorize ? tri : m;
  out = Buffer(DTypeOf<Ti>::value, d.B * outPer);
  if (fromFeatures) st->xc.resize(static_cast<std::size_t>(d.B) * C * N);
  const Ti* x = in.as<Ti>();
  Ti* y = out.as<Ti>();
  // The matrix of item b into a: the covariance of its features, or its input matrix.
  auto input = [&](std::size_t b, Ts* a) {
    if (fromFeatures) {
      const Ti* xb = x + b * C * N;
      if (!allFinite(xb, static_cast<std::size_t>(C) * N)) fail(sampleMsg(b, "the features contain NaN or Infinity"));
      // The covariance is formed in the spectral precision: with float32 features and a float64
      // spectral part, a float32 covariance would hand the eigensolver rounding noise of order
      // 1e-7 lambda_max in place of the C - N + 1 zero eigenvalues, and the gradient of the floored
      // noise is far from the gradient a float64 covariance has (measured: 100%+ relative error).
      Ts* xc = st->xc.data() + b * C * N;
      centerFeatures(xb, xc, C, N, d.channelsLast);
      covarianceForward(xc, a, C, N, d.channelsLast);
    } else {
      const Ti* ab = x + b * m;
      if (!allFinite(ab, m)) fail(sampleMsg(b, "the matrix contains NaN or Infinity"));
      checkSymmetric(ab, C, b);
      convert(ab, a, m);
    }
  };
  auto output = [&](std::size_t b, const Ts* s) {
    if (st->vectorize) packUpper(s, y + b * outPer, C);
    else convert(s, y + b * outPer, m);
  };
  // Eigen methods go in groups of kTridiagonalLanes items, whose eigendecompositions run together;
  // the other methods item by item. Errors still name the lowest failing item.
  const std::size_t group = usesEigenForward(o.method) ? kTridiagonalLanes : 1;
  parallelForGroups(d.B, group, [&](std::size_t first, std::size_t count) {
    Ts* buf = scratch<Ts>(count * 2 * m);
    Ts* as[kTridiagonalLanes] = {};
    std::exception_ptr failed;
    const std::size_t ready = startGroup(first, count, failed, [&](std::size_t q) {
      as[q] = buf + q * 2 * m;
      input(first + q, as[q]);
      sqrtmItemPrepare(*st, first + q, as[q]);
    });
    if (ready > 0 && usesEigenForward(o.method)) eighGroup(*st, first, ready, as);
    for (std::size_t q = 0; q < ready; ++q) {
      Ts* s = as[q] + m;
      forItem(first + q, [&] {
        sqrtmItemCore(*st, first + q, as[q], s);
        sqrtmItemFinish(*st, first + q, s);
      });
      output(first + q, s);
    }
    if (failed) std::rethrow_exception(failed);
  });
  return st;
}

template <class Ti, class Ts> Buffer backwardImpl(const State& base, const Buffer& dOut) {
  auto& st = const_cast<CpuState<Ti, Ts>&>(static_cast<const CpuState<Ti, Ts>&>(base));  // read-only use below
  const Dims d = st.dims;
  const int C = d.C, N = d.N;
  const bool layer = st.kind == StateKind::Layer;
  const std::size_t m = st.m(), tri = static_cast<std::size_t>(C) * (C + 1) / 2;
  const std::size_t inPer = st.vectorize ? tri : m;
  Buffer grad(DTypeOf<Ti>::value, layer ? static_cast<std::size_t>(d.B) * C * N : d.B * m);
  const Ti* dy = dOut.as<Ti>();
  Ti* g = grad.as<Ti>();
  parallelFor(d.B, [&](std::size_t b) {
    if (!allFinite(dy + b * inPer, inPer)) fail(sampleMsg(b, "the output gradient contains NaN or Infinity"));
    Ts* dS = scratch<Ts>(2 * m);
    Ts* dA = dS + m;
    if (st.vectorize) {
      unpackUpper(dy + b * inPer, dS, C);
    } else {
      convert(dy + b * inPer, dS, m);
    }
    forItem(b, [&] { sqrtmItemBackward(st, b, dS, dA); });
    if (layer) {  // in the spectral precision too, then rounded once to the input dtype
      const std::size_t cn = static_cast<std::size_t>(C) * N;
      // dA is symmetric: sqrtmItemBackward ends with the symmetrization.
      if constexpr (std::is_same_v<Ti, Ts>) {
        covarianceBackward(st.xc.data() + b * cn, dA, g + b * cn, C, N, d.channelsLast, /*gSymmetric=*/true);
      } else {
        Ts* dx = scratch<Ts, 1>(cn);
        covarianceBackward(st.xc.data() + b * cn, dA, dx, C, N, d.channelsLast, /*gSymmetric=*/true);
        convert(dx, g + b * cn, cn);
      }
    } else {
      convert(dA, g + b * m, m);
    }
  });
  return grad;
}

template <class F> auto dispatch2(DType ti, DType ts, F&& f) {
  return dispatchDType(ti, [&](auto i) {
    return dispatchDType(ts, [&](auto s) { return f(i, s); });
  });
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  bool channelsLastFeatures() const override { return true; }

  Buffer covpool(const Buffer& x, Dims d) override {
    return dispatchDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const int C = d.C, N = d.N;
      const std::size_t m = static_cast<std::size_t>(C) * C;
      Buffer out(x.dtype(), d.B * m);
      parallelFor(d.B, [&](std::size_t b) {
        const T* xb = x.as<T>() + b * C * N;
        if (!allFinite(xb, static_cast<std::size_t>(C) * N)) fail(sampleMsg(b, "the features contain NaN or Infinity"));
        T* xc = scratch<T>(static_cast<std::size_t>(C) * N);
        centerFeatures(xb, xc, C, N, d.channelsLast);
        covarianceForward(xc, out.as<T>() + b * m, C, N, d.channelsLast);
      });
      return out;
    });
  }

  Buffer covpoolBackward(const Buffer& x, const Buffer& dA, Dims d) override {
    return dispatchDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const int C = d.C, N = d.N;
      const std::size_t m = static_cast<std::size_t>(C) * C;
      Buffer out(x.dtype(), static_cast<std::size_t>(d.B) * C * N);
      parallelFor(d.B, [&](std::size_t b) {
        const T* ga = dA.as<T>() + b * m;
        if (!allFinite(ga, m)) fail(sampleMsg(b, "the covariance gradient contains NaN or Infinity"));
        if (!allFinite(x.as<T>() + b * C * N, static_cast<std::size_t>(C) * N)) fail(sampleMsg(b, "the features contain NaN or Infinity"));
        T* xc = scratch<T>(static_cast<std::size_t>(C) * N + m);
        T* g = xc + static_cast<std::size_t>(C) * N;
        centerFeatures(x.as<T>() + b * C * N, xc, C, N, d.channelsLast);
        std::copy(ga, ga + m, g);
        covarianceBackward(xc, g, out.as<T>() + b * C * N, C, N, d.channelsLast);
      });
      return out;
    });
  }

  Buffer triuvec(const Buffer& s, int B, int C) override {
    return dispatchDType(s.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const std::size_t m = static_cast<std::size_t>(C) * C, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
      Buffer out(s.dtype(), B * tri);
      for (int b = 0; b < B; ++b) {
        if (!allFinite(s.as<T>() + b * m, m)) fail(sampleMsg(b, "the matrix contains NaN or Infinity"));
        packUpper(s.as<T>() + b * m, out.as<T>() + b * tri, C);
      }
      return out;
    });
  }

  Buffer triuvecBackward(const Buffer& dy, int B, int C) override {
    return dispatchDType(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const std::size_t m = static_cast<std::size_t>(C) * C, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
      Buffer out(dy.dtype(), B * m);
      for (int b = 0; b < B; ++b) {
        if (!allFinite(dy.as<T>() + b * tri, tri)) fail(sampleMsg(b, "the gradient contains NaN or Infinity"));
        unpackUpper(dy.as<T>() + b * tri, out.as<T>() + b * m, C);
      }
      return out;
    });
  }

  void eigh(const Buffer& a, int B, int C, Buffer& values, Buffer& vectors) override {
    dispatchDType(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const std::size_t m = static_cast<std::size_t>(C) * C;
      values = Buffer(a.dtype(), static_cast<std::size_t>(B) * C);
      vectors = Buffer(a.dtype(), B * m);
      // In groups whose eigendecompositions run together (symmetric_eigen.h: eighBatch).
      parallelForGroups(B, kTridiagonalLanes, [&](std::size_t first, std::size_t count) {
        T* buf = scratch<T>(count * 2 * m);
        T *as[kTridiagonalLanes] = {}, *ws[kTridiagonalLanes] = {}, *ls[kTridiagonalLanes] = {};
        int info[kTridiagonalLanes] = {};
        std::exception_ptr failed;
        const std::size_t ready = startGroup(first, count, failed, [&](std::size_t q) {
          const std::size_t b = first + q;
          const T* ab = a.as<T>() + b * m;
          if (!allFinite(ab, m)) fail(sampleMsg(b, "the matrix contains NaN or Infinity"));
          checkSymmetric(ab, C, b);
          as[q] = buf + q * 2 * m;
          ws[q] = as[q] + m;
          ls[q] = values.as<T>() + b * C;
          std::copy(ab, ab + m, as[q]);
        });
        if (ready > 0) eighBatch(C, static_cast<int>(ready), as, ws, ls, info);
        for (std::size_t q = 0; q < ready; ++q) {
          const std::size_t b = first + q;
          forItem(b, [&] { requireEighConverged(info[q]); });
          const T* w = ws[q];
          T* v = vectors.as<T>() + b * m;  // columns = eigenvectors (U), i.e. the transpose of W
          constexpr int tile = 32;         // transposed in cache-sized tiles
          for (int ib = 0; ib < C; ib += tile)
            for (int jb = 0; jb < C; jb += tile)
              for (int i = ib; i < std::min(ib + tile, C); ++i)
                for (int j = jb; j < std::min(jb + tile, C); ++j) v[i * C + j] = w[j * C + i];
        }
        if (failed) std::rethrow_exception(failed);
      });
      return 0;
    });
  }

  std::shared_ptr<State> sqrtm(const Buffer& a, int B, int C, const SqrtmOptions& o, Buffer& s) override {
    return dispatch2(a.dtype(), o.precision, [&](auto i, auto p) {
      return forwardImpl<decltype(i), decltype(p)>(a, Dims{B, C, 0}, o, false, false, s);
    });
  }

  std::shared_ptr<State> layer(const Buffer& x, Dims d, const SqrtmOptions& o, bool vectorize, Buffer& y) override {
    return dispatch2(x.dtype(), o.precision, [&](auto i, auto p) {
      return forwardImpl<decltype(i), decltype(p)>(x, d, o, true, vectorize, y);
    });
  }

  Buffer coefficients(const Buffer& values, int B, int C, const SqrtmOptions& o, bool replace) override {
    if (!usesEigenForward(o.method) || o.method == Method::SVD_NEWTON)
      fail(std::string(methodName(o.method)) + " has no eigenbasis coefficient matrix (its backward is an iteration)");
    PadeCoefficients pade;
    if (o.method == Method::SVD_PADE) pade = o.padeP.empty() ? geometricSeriesPade(o.degree) : PadeCoefficients{o.padeP, o.padeQ};
    const std::size_t m = static_cast<std::size_t>(C) * C;
    Buffer out(DType::F64, B * m);
    parallelFor(B, [&](std::size_t b) {
      const double* l = values.as<double>() + b * C;
      if (!allFinite(l, C)) fail(sampleMsg(b, "the eigenvalues contain NaN or Infinity"));
      double* f = out.as<double>() + b * m;
      if (o.method == Method::SVD_LYAP) {
        for (int i = 0; i < C; ++i)
          for (int j = 0; j < C; ++j) f[i * C + j] = 1.0 / (std::sqrt(l[i]) + std::sqrt(l[j]));
      } else {
        fillF(o, l, f, C, &pade, replace);
      }
    });
    return out;
  }

  Buffer backward(const State& st, const Buffer& dOut) override {
    return dispatch2(st.dtype, st.options.precision, [&](auto i, auto p) {
      return backwardImpl<decltype(i), decltype(p)>(st, dOut);
    });
  }
};

}  // namespace
}  // namespace covpool::cpu

namespace covpool {
Backend& cpuBackend() {
  static cpu::CpuBackend backend;
  return backend;
}
}  // namespace covpool
