// Custom kernels of the CUDA backend (see kernels.cuh for the contracts). Compiled with -fmad=false
// (CMakeLists.txt, scripts/check-cuda.sh; the emulated device's host build uses -ffp-contract=off,
// its equivalent): the elementwise steps and the K-matrix formulas
// then round exactly as the CPU backend's unfused x86-64 code does. GEMMs and eigensolvers are in
// cuBLAS / cuSOLVER and are not affected.
//
// Reductions are one block per matrix with a fixed tree order, so results are deterministic run to
// run (no floating-point atomics anywhere).
#include "kernels.cuh"

#include <climits>
#include <string>

#include "../core/errors.h"
#include "kmath.cuh"

namespace covpool::cuda::kernels {
namespace {

constexpr int kBlock = 256;  // threads per block everywhere (a multiple of the warp size)

unsigned blocksFor(std::size_t count) {
  const std::size_t b = (count + kBlock - 1) / kBlock;
  const std::size_t cap = std::size_t(1) << 20;  // grid-stride loops cover the rest
  return static_cast<unsigned>(b < cap ? b : cap);
}

// A failed launch (bad configuration, no device, a previous asynchronous fault) surfaces here with
// the kernel's name, instead of as a confusing error from some later cuBLAS call.
void checkLaunch(const char* name) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(std::string("CUDA kernel ") + name + " failed to launch: " + cudaGetErrorString(e));
}

#define COVPOOL_COMMA ,
#define COVPOOL_GRID_STRIDE(i, count) \
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < (count); i += std::size_t(gridDim.x) * blockDim.x)

struct SumOp {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T> __device__ T operator()(T a, T b) const { return kmath::maxT(a, b); }
};
struct MinOp {
  template <class T> __device__ T operator()(T a, T b) const { return kmath::minT(a, b); }
};

template <class T, class Op> __device__ T warpReduce(T v, Op op) {
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  return v;
}

// Reduces one value per thread over the block; every thread gets the result. Calls may follow one
// another: the result is read before the next call's first barrier.
template <class T, class Op> __device__ T blockReduce(T v, Op op, T identity) {
  __shared__ T part[32];
  __shared__ T result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warpReduce(v, op);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) >> 5;
    T x = lane < warps ? part[lane] : identity;
    x = warpReduce(x, op);
    if (lane == 0) result = x;
  }
  __syncthreads();
  return result;
}

// ---- element types and layout -------------------------------------------------------------------

template <class S, class D> __global__ void convertKernel(const S* src, D* dst, std::size_t count) {
  COVPOOL_GRID_STRIDE(i, count) dst[i] = static_cast<D>(src[i]);
}

template <class T> __global__ void fillKernel(T* a, T v, std::size_t count) {
  COVPOOL_GRID_STRIDE(i, count) a[i] = v;
}

template <class T> __global__ void pointerArrayKernel(T** arr, T* base, std::size_t stride, int B) {
  COVPOOL_GRID_STRIDE(b, static_cast<std::size_t>(B)) arr[b] = base + b * stride;
}

// [B, rows, cols] -> [B, cols, rows] (channels-last features to channels-first and back).
template <class T> __global__ void transposeBatchKernel(const T* in, T* out, int B, int rows, int cols) {
  const std::size_t m = std::size_t(rows) * cols;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const std::size_t i = r / cols, j = r % cols;
    out[b * m + j * rows + i] = in[idx];
  }
}

template <class T> __global__ void transposeKernel(const T* in, T* out, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    out[b * m + std::size_t(j) * n + i] = in[idx];
  }
}

// ---- covariance ------------------------------------------------------------------------------------

// One block per row (B * C rows may exceed a grid: blocks stride over rows; every thread of a block
// takes the same rows, so the reduction's barriers are reached by all of them).
template <class T> __global__ void centerRowsKernel(const T* x, T* xc, std::size_t rows, int N) {
  for (std::size_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * N;
    T* out = xc + row * N;
    double sum = 0;  // double, as the CPU: N can be large
    for (int k = threadIdx.x; k < N; k += blockDim.x) sum += static_cast<double>(xr[k]);
    sum = blockReduce(sum, SumOp{}, 0.0);
    const T mu = static_cast<T>(sum / N);
    for (int k = threadIdx.x; k < N; k += blockDim.x) out[k] = xr[k] - mu;
  }
}

template <class T> __global__ void mirrorUpperKernel(T* a, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    if (i > j) a[idx] = a[b * m + std::size_t(j) * n + i];
  }
}

template <class T> __global__ void mirrorLowerKernel(T* a, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    if (i < j) a[idx] = a[b * m + std::size_t(j) * n + i];
  }
}

// One thread per upper-triangle position (i <= j) reads both entries, then writes both: in place
// is safe because no other thread touches the pair.
template <class T> __global__ void addTransposeKernel(T* g, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    if (i <= j) {
      T* gb = g + b * m;
      const T v = gb[i * n + j] + gb[j * n + i];
      gb[i * n + j] = v;
      gb[j * n + i] = v;
    }
  }
}

template <class T> __global__ void symmetrizeKernel(const T* a, T* out, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    const T* ab = a + b * m;
    T* ob = out + b * m;
    if (i == j) {
      ob[i * n + i] = ab[i * n + i];
    } else if (i < j) {
      const T v = T(0.5) * (ab[i * n + j] + ab[j * n + i]);
      ob[i * n + j] = v;
      ob[j * n + i] = v;
    }
  }
}

// ---- triangular vectorization ---------------------------------------------------------------------

// Offset of row i's first element (i, i) in the packed upper triangle: sum_{r<i} (n - r).
__device__ __forceinline__ std::size_t rowStart(int i, int n) {
  return std::size_t(i) * n - std::size_t(i) * (i - 1) / 2;
}

template <class T> __global__ void packUpperKernel(const T* a, T* y, int B, int n) {
  const std::size_t m = std::size_t(n) * n, tri = std::size_t(n) * (n + 1) / 2;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    if (i <= j) y[b * tri + rowStart(i, n) + (j - i)] = a[idx];
  }
}

template <class T> __global__ void unpackUpperKernel(const T* y, T* a, int B, int n) {
  const std::size_t m = std::size_t(n) * n, tri = std::size_t(n) * (n + 1) / 2;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    a[idx] = i <= j ? y[b * tri + rowStart(i, n) + (j - i)] : T(0);
  }
}

// ---- checks -------------------------------------------------------------------------------------------

template <class T> __global__ void flagNonFiniteKernel(const T* a, std::size_t per, int B, int* status, int code) {
  COVPOOL_GRID_STRIDE(idx, per * B) {
    if (!kmath::isFinite(a[idx])) atomicOr(&status[idx / per], code);
  }
}

// One block per matrix: the scale max|A| first, then the smallest violating index i * n + j.
template <class T> __global__ void checkSymmetricKernel(const T* a, int n, int* firstBad, int* status) {
  const std::size_t m = std::size_t(n) * n;
  const T* ab = a + blockIdx.x * m;
  T scale = 0;
  bool finite = true;
  for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) {
    const T v = ab[k];
    if (!kmath::isFinite(v)) finite = false;
    scale = kmath::maxT(scale, kmath::absT(v));
  }
  if (__syncthreads_or(!finite)) return;  // reported as non-finite instead, like the CPU
  scale = blockReduce(scale, MaxOp{}, T(0));
  const T tol = T(100) * kmath::epsilon<T>() * scale;
  int first = INT_MAX;
  for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) {
    const int i = static_cast<int>(k / n), j = static_cast<int>(k % n);
    if (i < j && kmath::absT(ab[i * n + j] - ab[j * n + i]) > tol) {
      first = static_cast<int>(k);
      break;  // k grows along this thread's loop: its first hit is its smallest
    }
  }
  first = blockReduce(first, MinOp{}, INT_MAX);
  if (threadIdx.x == 0 && first != INT_MAX) {
    firstBad[blockIdx.x] = first;
    status[blockIdx.x] |= kAsymmetric;  // this block owns the entry: no atomic needed
  }
}

// ---- normalization -------------------------------------------------------------------------------

template <class T> __global__ void normalizerKernel(const T* a, int n, Normalization nm, T* tau, int* status, int code) {
  const std::size_t m = std::size_t(n) * n;
  const T* ab = a + blockIdx.x * m;
  T t = T(1);
  if (nm == Normalization::Frobenius) {
    double s = 0;  // sum of squares in double, as the CPU's dot()
    for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) s += static_cast<double>(ab[k]) * ab[k];
    s = blockReduce(s, SumOp{}, 0.0);
    t = kmath::sqrtT(static_cast<T>(s));
    // The sum of squares overflows (entries near 1e155) or underflows (below 1e-162) in double:
    // recompute with the entries scaled by the largest magnitude, as the CPU backend does. Every
    // thread holds the same s, so the whole block takes this branch or none.
    if (s == s && !(s >= 1e-290 && s <= 1e290)) {  // (NaN entries are flagged elsewhere)
      double mx = 0;
      for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) mx = fmax(mx, fabs(static_cast<double>(ab[k])));
      mx = blockReduce(mx, MaxOp{}, 0.0);
      if (mx > 0 && mx <= 1.7976931348623157e308) {
        double q = 0;
        for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) {
          const double v = static_cast<double>(ab[k]) / mx;
          q += v * v;
        }
        q = blockReduce(q, SumOp{}, 0.0);
        t = static_cast<T>(mx * sqrt(q));
      }
    }
  } else if (nm == Normalization::Trace) {
    // n additions: done by one thread in the CPU's order, so tau is bit-identical to the CPU's.
    t = T(0);
    if (threadIdx.x == 0)
      for (int i = 0; i < n; ++i) t += ab[i * n + i];
  }
  if (threadIdx.x == 0) {
    tau[blockIdx.x] = t;
    if (nm != Normalization::None && (!(t > T(0)) || !kmath::isFinite(t))) atomicOr(&status[blockIdx.x], code);
  }
}

template <class T> __global__ void flagNotPositiveKernel(const T* tau, int B, int* status, int code) {
  COVPOOL_GRID_STRIDE(b, static_cast<std::size_t>(B)) {
    if (!(tau[b] > T(0))) atomicOr(&status[b], code);
  }
}

template <class T> __global__ void divideByTauKernel(const T* in, T* out, const T* tau, std::size_t per, int B) {
  COVPOOL_GRID_STRIDE(idx, per * B) out[idx] = in[idx] / tau[idx / per];
}

template <class T> __global__ void scaleBySqrtTauKernel(const T* in, T* out, const T* tau, std::size_t per, int B, bool multiply) {
  COVPOOL_GRID_STRIDE(idx, per * B) {
    const T r = kmath::sqrtT(tau[idx / per]);
    out[idx] = multiply ? in[idx] * r : in[idx] / r;
  }
}

template <class T> __global__ void normalizationDotsKernel(const T* dS, const T* sHat, const T* dA, const T* aHat, int n, double* dots) {
  const std::size_t m = std::size_t(n) * n, off = blockIdx.x * m;
  double s1 = 0, s2 = 0;
  for (std::size_t k = threadIdx.x; k < m; k += blockDim.x) {
    s1 += static_cast<double>(dS[off + k]) * sHat[off + k];
    s2 += static_cast<double>(dA[off + k]) * aHat[off + k];
  }
  s1 = blockReduce(s1, SumOp{}, 0.0);
  s2 = blockReduce(s2, SumOp{}, 0.0);
  if (threadIdx.x == 0) {
    dots[2 * blockIdx.x] = s1;
    dots[2 * blockIdx.x + 1] = s2;
  }
}

template <class T> __global__ void normalizationApplyKernel(Normalization nm, const T* tau, const T* aHat, T* dA, const double* dots, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const T t = tau[b];
    const T c = static_cast<T>(dots[2 * b]) / (T(2) * kmath::sqrtT(t)) - static_cast<T>(dots[2 * b + 1]) / t;
    T v = dA[idx] / t;
    if (nm == Normalization::Trace) {
      if (r / n == r % n) v += c;
    } else {
      v += c * aHat[idx];
    }
    dA[idx] = v;
  }
}

// ---- Newton-Schulz / Pade / Lyapunov elementwise steps -------------------------------------------

template <class T> __global__ void axpbyIdentityKernel(const T* in, T* out, T alpha, T diag, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t r = idx % m;
    const bool onDiag = r / n == r % n;
    // Two separate roundings (scale, then add on the diagonal), as the CPU's two loops.
    const T v = in ? alpha * in[idx] : T(0);
    out[idx] = onDiag ? v + diag : v;
  }
}

template <class T> __global__ void addDiagonalKernel(T* a, T v, int B, int n) {
  COVPOOL_GRID_STRIDE(idx, std::size_t(n) * B) {
    const std::size_t b = idx / n, i = idx % n;
    a[b * n * n + i * n + i] += v;
  }
}

template <class T> __global__ void axpyKernel(T* y, T alpha, const T* x, std::size_t count) {
  COVPOOL_GRID_STRIDE(i, count) y[i] += alpha * x[i];
}

template <class T> __global__ void padeAccumulateKernel(T* p, T* q, const T* zk, T pk, T qk, std::size_t count) {
  COVPOOL_GRID_STRIDE(i, count) {
    const T z = zk[i];
    p[i] += pk * z;
    q[i] += qk * z;
  }
}

// ---- eigen-based square root ------------------------------------------------------------------------

template <class T> __global__ void floorEigenvaluesKernel(T* l, int B, int n, T eps, int topN) {
  COVPOOL_GRID_STRIDE(idx, std::size_t(n) * B) {
    const int i = static_cast<int>(idx % n);
    T v = kmath::maxT(l[idx], eps);
    if (topN > 0 && i < n - topN) v = eps;
    l[idx] = v;
  }
}

template <class T> __global__ void scaleRowsQuarterRootKernel(const T* w, const T* l, T* v, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, i = (idx % m) / n;
    const T f = kmath::sqrtT(kmath::sqrtT(l[b * n + i]));
    v[idx] = f * w[idx];
  }
}

// Pass 1 of the replacement: per matrix, the largest / smallest finite F entry and whether any is
// not finite. F is evaluated on the fly (not stored): recomputing it in pass 2 is cheaper than an
// n x n round trip through memory, and keeps the fused kernel's single output.
template <class T> __global__ void fStatsKernel(KParams k, const T* l, T* stats, int n) {
  const T* lb = l + blockIdx.x * std::size_t(n);
  kmath::FStats<T> s = kmath::emptyStats<T>();
  const std::size_t m = std::size_t(n) * n;
  for (std::size_t idx = threadIdx.x; idx < m; idx += blockDim.x) {
    const int i = static_cast<int>(idx / n), j = static_cast<int>(idx % n);
    kmath::accumulate(s, kmath::coefficient<T>(k, i, j, lb[i], lb[j]));
  }
  s.hi = blockReduce(s.hi, MaxOp{}, -kmath::inf<T>());
  s.lo = blockReduce(s.lo, MinOp{}, kmath::inf<T>());
  s.bad = __syncthreads_or(s.bad);
  s = kmath::finish(s);
  if (threadIdx.x == 0) {
    T* out = stats + 4 * blockIdx.x;
    out[0] = s.hi;
    out[1] = s.lo;
    out[2] = s.bad ? T(1) : T(0);
    out[3] = T(0);
  }
}

template <class T> __device__ kmath::FStats<T> loadStats(const KParams& k, const T* stats, std::size_t b) {
  if (!k.replace) return kmath::emptyStats<T>();
  const T* s = stats + 4 * b;
  return {s[0], s[1], s[2] != T(0)};
}

template <class T> __global__ void eigenBackwardInnerKernel(KParams k, const T* M, const T* l, T* inner, const T* stats, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    inner[idx] = kmath::innerEntry<T>(k, M + b * m, l + b * n, n, i, j, loadStats(k, stats, b));
  }
}

template <class T> __global__ void coefficientMatrixKernel(KParams k, const T* l, T* F, const T* stats, int B, int n) {
  const std::size_t m = std::size_t(n) * n;
  COVPOOL_GRID_STRIDE(idx, m * B) {
    const std::size_t b = idx / m, r = idx % m;
    const int i = static_cast<int>(r / n), j = static_cast<int>(r % n);
    F[idx] = kmath::analysisEntry<T>(k, l + b * n, i, j, loadStats(k, stats, b));
  }
}

}  // namespace

// ---- launch wrappers ---------------------------------------------------------------------------------

#define COVPOOL_LAUNCH(name, count, s, ...)                                        \
  do {                                                                             \
    const std::size_t count_ = (count);                                            \
    if (count_ == 0) return;                                                       \
    name<<<blocksFor(count_), kBlock, 0, (s)>>>(__VA_ARGS__);                      \
    checkLaunch(#name);                                                            \
  } while (0)

#define COVPOOL_LAUNCH_PER_ITEM(name, B, s, ...)                                   \
  do {                                                                             \
    if ((B) <= 0) return;                                                          \
    name<<<static_cast<unsigned>(B), kBlock, 0, (s)>>>(__VA_ARGS__);               \
    checkLaunch(#name);                                                            \
  } while (0)

namespace {
inline std::size_t mat(int B, int n) { return std::size_t(B) * n * n; }
}  // namespace

template <class S, class D> void convert(const S* src, D* dst, std::size_t count, cudaStream_t s) {
  COVPOOL_LAUNCH(convertKernel<S COVPOOL_COMMA D>, count, s, src, dst, count);
}
template <class T> void fill(T* a, T value, std::size_t count, cudaStream_t s) {
  COVPOOL_LAUNCH(fillKernel<T>, count, s, a, value, count);
}
template <class T> void pointerArray(T** arr, T* base, std::size_t stride, int B, cudaStream_t s) {
  COVPOOL_LAUNCH(pointerArrayKernel<T>, static_cast<std::size_t>(B), s, arr, base, stride, B);
}
template <class T> void transpose(const T* in, T* out, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(transposeKernel<T>, mat(B, n), s, in, out, B, n);
}
template <class T> void transposeBatch(const T* in, T* out, int B, int rows, int cols, cudaStream_t s) {
  COVPOOL_LAUNCH(transposeBatchKernel<T>, std::size_t(B) * rows * cols, s, in, out, B, rows, cols);
}
template <class T> void centerRows(const T* x, T* xc, std::size_t rows, int N, cudaStream_t s) {
  if (N <= 0 || rows == 0) return;
  const unsigned grid = static_cast<unsigned>(rows < (std::size_t(1) << 20) ? rows : (std::size_t(1) << 20));
  COVPOOL_LAUNCH_PER_ITEM(centerRowsKernel<T>, grid, s, x, xc, rows, N);
}
template <class T> void mirrorUpper(T* a, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(mirrorUpperKernel<T>, mat(B, n), s, a, B, n);
}
template <class T> void mirrorLower(T* a, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(mirrorLowerKernel<T>, mat(B, n), s, a, B, n);
}
template <class T> void addTranspose(T* g, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(addTransposeKernel<T>, mat(B, n), s, g, B, n);
}
template <class T> void symmetrize(const T* a, T* out, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(symmetrizeKernel<T>, mat(B, n), s, a, out, B, n);
}
template <class T> void packUpper(const T* a, T* y, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(packUpperKernel<T>, mat(B, n), s, a, y, B, n);
}
template <class T> void unpackUpper(const T* y, T* a, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(unpackUpperKernel<T>, mat(B, n), s, y, a, B, n);
}
template <class T> void flagNonFinite(const T* a, std::size_t per, int B, int* status, int code, cudaStream_t s) {
  COVPOOL_LAUNCH(flagNonFiniteKernel<T>, per * B, s, a, per, B, status, code);
}
template <class T> void checkSymmetric(const T* a, int B, int n, int* firstBad, int* status, cudaStream_t s) {
  COVPOOL_LAUNCH_PER_ITEM(checkSymmetricKernel<T>, B, s, a, n, firstBad, status);
}
template <class T> void normalizer(const T* a, int B, int n, Normalization nm, T* tau, int* status, int code, cudaStream_t s) {
  COVPOOL_LAUNCH_PER_ITEM(normalizerKernel<T>, B, s, a, n, nm, tau, status, code);
}
template <class T> void flagNotPositive(const T* tau, int B, int* status, int code, cudaStream_t s) {
  COVPOOL_LAUNCH(flagNotPositiveKernel<T>, static_cast<std::size_t>(B), s, tau, B, status, code);
}
template <class T> void divideByTau(const T* in, T* out, const T* tau, std::size_t per, int B, cudaStream_t s) {
  COVPOOL_LAUNCH(divideByTauKernel<T>, per * B, s, in, out, tau, per, B);
}
template <class T> void scaleBySqrtTau(const T* in, T* out, const T* tau, std::size_t per, int B, bool multiply, cudaStream_t s) {
  COVPOOL_LAUNCH(scaleBySqrtTauKernel<T>, per * B, s, in, out, tau, per, B, multiply);
}
template <class T> void normalizationBackward(Normalization nm, const T* tau, const T* dS, const T* sHat, const T* aHat,
                                              T* dA, double* dots, int B, int n, cudaStream_t s) {
  if (nm == Normalization::None || B <= 0) return;
  normalizationDotsKernel<T><<<static_cast<unsigned>(B), kBlock, 0, s>>>(dS, sHat, dA, aHat, n, dots);
  checkLaunch("normalizationDotsKernel");
  COVPOOL_LAUNCH(normalizationApplyKernel<T>, mat(B, n), s, nm, tau, aHat, dA, dots, B, n);
}
template <class T> void axpbyIdentity(const T* in, T* out, T alpha, T diag, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(axpbyIdentityKernel<T>, mat(B, n), s, in, out, alpha, diag, B, n);
}
template <class T> void addDiagonal(T* a, T v, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(addDiagonalKernel<T>, std::size_t(B) * n, s, a, v, B, n);
}
template <class T> void axpy(T* y, T alpha, const T* x, std::size_t count, cudaStream_t s) {
  COVPOOL_LAUNCH(axpyKernel<T>, count, s, y, alpha, x, count);
}
template <class T> void padeAccumulate(T* p, T* q, const T* zk, T pk, T qk, std::size_t count, cudaStream_t s) {
  COVPOOL_LAUNCH(padeAccumulateKernel<T>, count, s, p, q, zk, pk, qk, count);
}
template <class T> void floorEigenvalues(T* l, int B, int n, T eps, int topN, cudaStream_t s) {
  COVPOOL_LAUNCH(floorEigenvaluesKernel<T>, std::size_t(B) * n, s, l, B, n, eps, topN);
}
template <class T> void scaleRowsQuarterRoot(const T* w, const T* l, T* v, int B, int n, cudaStream_t s) {
  COVPOOL_LAUNCH(scaleRowsQuarterRootKernel<T>, mat(B, n), s, w, l, v, B, n);
}
template <class T> void eigenBackwardInner(const KParams& k, const T* M, const T* l, T* inner, T* stats, int B, int n, cudaStream_t s) {
  if (B <= 0) return;
  if (k.replace) {
    fStatsKernel<T><<<static_cast<unsigned>(B), kBlock, 0, s>>>(k, l, stats, n);
    checkLaunch("fStatsKernel");
  }
  COVPOOL_LAUNCH(eigenBackwardInnerKernel<T>, mat(B, n), s, k, M, l, inner, stats, B, n);
}
template <class T> void coefficientMatrix(const KParams& k, const T* l, T* F, T* stats, int B, int n, cudaStream_t s) {
  if (B <= 0) return;
  if (k.replace) {
    fStatsKernel<T><<<static_cast<unsigned>(B), kBlock, 0, s>>>(k, l, stats, n);
    checkLaunch("fStatsKernel");
  }
  COVPOOL_LAUNCH(coefficientMatrixKernel<T>, mat(B, n), s, k, l, F, stats, B, n);
}

// ---- explicit instantiations ---------------------------------------------------------------------------

#define COVPOOL_INSTANTIATE(T)                                                                                        \
  template void fill<T>(T*, T, std::size_t, cudaStream_t);                                                            \
  template void pointerArray<T>(T**, T*, std::size_t, int, cudaStream_t);                                             \
  template void transpose<T>(const T*, T*, int, int, cudaStream_t);                                                   \
  template void centerRows<T>(const T*, T*, std::size_t, int, cudaStream_t);                                          \
  template void transposeBatch<T>(const T*, T*, int, int, int, cudaStream_t);                                         \
  template void mirrorUpper<T>(T*, int, int, cudaStream_t);                                                           \
  template void mirrorLower<T>(T*, int, int, cudaStream_t);                                                           \
  template void addTranspose<T>(T*, int, int, cudaStream_t);                                                          \
  template void symmetrize<T>(const T*, T*, int, int, cudaStream_t);                                                  \
  template void packUpper<T>(const T*, T*, int, int, cudaStream_t);                                                   \
  template void unpackUpper<T>(const T*, T*, int, int, cudaStream_t);                                                 \
  template void flagNonFinite<T>(const T*, std::size_t, int, int*, int, cudaStream_t);                                \
  template void checkSymmetric<T>(const T*, int, int, int*, int*, cudaStream_t);                                      \
  template void normalizer<T>(const T*, int, int, Normalization, T*, int*, int, cudaStream_t);                        \
  template void flagNotPositive<T>(const T*, int, int*, int, cudaStream_t);                                           \
  template void divideByTau<T>(const T*, T*, const T*, std::size_t, int, cudaStream_t);                               \
  template void scaleBySqrtTau<T>(const T*, T*, const T*, std::size_t, int, bool, cudaStream_t);                      \
  template void normalizationBackward<T>(Normalization, const T*, const T*, const T*, const T*, T*, double*, int, int, \
                                         cudaStream_t);                                                               \
  template void axpbyIdentity<T>(const T*, T*, T, T, int, int, cudaStream_t);                                         \
  template void addDiagonal<T>(T*, T, int, int, cudaStream_t);                                                        \
  template void axpy<T>(T*, T, const T*, std::size_t, cudaStream_t);                                                  \
  template void padeAccumulate<T>(T*, T*, const T*, T, T, std::size_t, cudaStream_t);                                 \
  template void floorEigenvalues<T>(T*, int, int, T, int, cudaStream_t);                                              \
  template void scaleRowsQuarterRoot<T>(const T*, const T*, T*, int, int, cudaStream_t);                              \
  template void eigenBackwardInner<T>(const KParams&, const T*, const T*, T*, T*, int, int, cudaStream_t);            \
  template void coefficientMatrix<T>(const KParams&, const T*, T*, T*, int, int, cudaStream_t);

COVPOOL_INSTANTIATE(float)
COVPOOL_INSTANTIATE(double)
template void fill<int>(int*, int, std::size_t, cudaStream_t);

template void convert<float, float>(const float*, float*, std::size_t, cudaStream_t);
template void convert<float, double>(const float*, double*, std::size_t, cudaStream_t);
template void convert<double, float>(const double*, float*, std::size_t, cudaStream_t);
template void convert<double, double>(const double*, double*, std::size_t, cudaStream_t);

}  // namespace covpool::cuda::kernels
