// The CUDA backend: every op of core/backend.h on one GPU, numerically the CPU backend's twin
// (native/cpu/cpu_backend.cpp): same options, same formulas in the same order, same per-matrix
// checks and error messages, same svd-pade pole rule and svd-pi degrees (the per-element math is
// shared with a host test through kmath.cuh). What differs is only what cannot be the same: GEMM
// summation order (cuBLAS vs OpenBLAS) and the eigensolver (cuSOLVER vs LAPACK), so results agree
// to rounding, not bit for bit.
//
// Structure of every op: upload the host Buffers, run the whole batch as batched cuBLAS / cuSOLVER
// calls plus the kernels of kernels.cu on the device's one stream, check per-item status flags
// (downloaded once before any eigensolver / iteration and once at the end), download the result.
// Forward states keep what the backward needs (U, lambda, Newton-Schulz tapes, ...) on the GPU.
//
// Layout: the library is row-major and cuBLAS column-major. A row-major matrix read column-major
// is its transpose, so a row-major product C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T:
// gemm() below swaps the operands. A symmetric matrix is its own transpose, so eigensolvers take
// row-major input as is, and their column-major eigenvector matrix, read row-major, has the
// eigenvector of l_i in row i: W = U^T, the CPU backend's convention.
//
// Needs cuBLAS and cuSOLVER headers: compiled only when CMake finds them (COVPOOL_WITH_CUDA).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "../core/backend.h"
#include "../core/pade.h"
#include "cuda_backend.h"
#include "device_memory.h"
#include "kernels.cuh"
#include "layer_precision.h"
#include "plan.h"

namespace covpool::cuda {
namespace {

namespace K = kernels;

// ---- errors -------------------------------------------------------------------------------------

void checkCuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess) fail(std::string("CUDA error: ") + call + " failed: " + cudaGetErrorString(e));
}
void checkBlas(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(std::string("cuBLAS error: ") + call + " failed: " + cublasGetStatusString(s));
}
const char* solverStatusName(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "cuSOLVER error";
  }
}
void checkSolver(cusolverStatus_t s, const char* call) {
  if (s != CUSOLVER_STATUS_SUCCESS)
    fail(std::string("cuSOLVER error: ") + call + " failed: " + solverStatusName(s) + " (" + std::to_string(static_cast<int>(s)) + ")");
}
#define CK_CUDA(x) checkCuda((x), #x)
#define CK_BLAS(x) checkBlas((x), #x)
#define CK_SOLVER(x) checkSolver((x), #x)

[[noreturn]] void failItem(std::size_t b, const std::string& what) {
  fail("batch item " + std::to_string(b) + ": " + what);
}
// The tail of the addon's message for a non-finite result (native/addon: requireFinite).
constexpr const char* kOverflowAdvice =
    " (it overflowed or the computation broke down; the input is out of the range this op can represent)";

// ---- type-generic library wrappers -----------------------------------------------------------------

template <class T> cudaDataType dataType();
template <> cudaDataType dataType<float>() { return CUDA_R_32F; }
template <> cudaDataType dataType<double>() { return CUDA_R_64F; }

cublasStatus_t gemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, long long sA, const float* B, int ldb,
                                  long long sB, const float* beta, float* C, int ldc, long long sC, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
cublasStatus_t gemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double* alpha, const double* A, int lda, long long sA, const double* B, int ldb,
                                  long long sB, const double* beta, double* C, int ldc, long long sC, int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

cublasStatus_t getrfBatched(cublasHandle_t h, int n, float* const A[], int lda, int* piv, int* info, int batch) {
  return cublasSgetrfBatched(h, n, A, lda, piv, info, batch);
}
cublasStatus_t getrfBatched(cublasHandle_t h, int n, double* const A[], int lda, int* piv, int* info, int batch) {
  return cublasDgetrfBatched(h, n, A, lda, piv, info, batch);
}
cublasStatus_t getrsBatched(cublasHandle_t h, int n, int nrhs, const float* const A[], int lda, const int* piv,
                            float* const Bm[], int ldb, int* info, int batch) {
  return cublasSgetrsBatched(h, CUBLAS_OP_N, n, nrhs, A, lda, piv, Bm, ldb, info, batch);
}
cublasStatus_t getrsBatched(cublasHandle_t h, int n, int nrhs, const double* const A[], int lda, const int* piv,
                            double* const Bm[], int ldb, int* info, int batch) {
  return cublasDgetrsBatched(h, CUBLAS_OP_N, n, nrhs, A, lda, piv, Bm, ldb, info, batch);
}

cusolverStatus_t syevjBatchedBufferSize(cusolverDnHandle_t h, int n, const float* A, const float* W, int* lwork,
                                        syevjInfo_t p, int batch) {
  return cusolverDnSsyevjBatched_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, A, n, W, lwork, p, batch);
}
cusolverStatus_t syevjBatchedBufferSize(cusolverDnHandle_t h, int n, const double* A, const double* W, int* lwork,
                                        syevjInfo_t p, int batch) {
  return cusolverDnDsyevjBatched_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, A, n, W, lwork, p, batch);
}
cusolverStatus_t syevjBatched(cusolverDnHandle_t h, int n, float* A, float* W, float* work, int lwork, int* info,
                              syevjInfo_t p, int batch) {
  return cusolverDnSsyevjBatched(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, A, n, W, work, lwork, info, p, batch);
}
cusolverStatus_t syevjBatched(cusolverDnHandle_t h, int n, double* A, double* W, double* work, int lwork, int* info,
                              syevjInfo_t p, int batch) {
  return cusolverDnDsyevjBatched(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, A, n, W, work, lwork, info, p, batch);
}

// ---- one GPU: stream, library handles, memory -------------------------------------------------------

// Parked device memory allowed per GPU (COVPOOL_CUDA_CACHE_MB; unset or 0: no limit).
std::size_t cacheLimitBytes() {
  const char* v = std::getenv("COVPOOL_CUDA_CACHE_MB");
  if (!v || !*v) return 0;
  const long long mb = std::atoll(v);
  return mb > 0 ? static_cast<std::size_t>(mb) << 20 : 0;
}
// COVPOOL_CUDA_EXACT_ALLOC=1: no rounding, no reuse (device_memory.h), for sanitizer runs.
bool exactAllocation() {
  const char* v = std::getenv("COVPOOL_CUDA_EXACT_ALLOC");
  return v && std::strcmp(v, "1") == 0;
}

// Bytes of each of the two pinned staging blocks (COVPOOL_CUDA_STAGING_KB; default 8 MiB): a copy of
// a host array goes through them in chunks of this size (DeviceContext::toDevice / toHost).
std::size_t stagingChunkBytes() {
  const char* v = std::getenv("COVPOOL_CUDA_STAGING_KB");
  const long long kb = v && *v ? std::atoll(v) : 0;
  return kb > 0 ? static_cast<std::size_t>(kb) << 10 : std::size_t(8) << 20;
}

// Everything one device needs. Created once per device and never destroyed: the CUDA runtime may
// already be torn down when static destructors run at process exit, and destroying handles then
// crashes; the driver reclaims all of it when the process ends.
struct DeviceContext {
  // When any step fails (out of memory, a library that cannot initialize), what was created so far
  // is destroyed, the calling thread's device is restored, and the error propagates: a later call
  // can try again, and nothing leaks.
  explicit DeviceContext(int dev) : device(dev), name("cuda:" + std::to_string(dev)), cache(dev, cacheLimitBytes(), exactAllocation()) {
    int prev = 0;
    CK_CUDA(cudaGetDevice(&prev));
    try {
      CK_CUDA(cudaSetDevice(device));
      // Non-blocking: no implicit synchronization with the legacy default stream that other code
      // in the process (e.g. another CUDA-using addon) may be using.
      CK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      CK_BLAS(cublasCreate(&blas));
      CK_BLAS(cublasSetStream(blas, stream));
      // Default math: fp32 GEMMs stay fp32 (no TF32 unless NVIDIA_TF32_OVERRIDE=1 is set in the
      // environment), so results stay comparable with the CPU backend's.
      CK_BLAS(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
      CK_SOLVER(cusolverDnCreate(&solver));
      CK_SOLVER(cusolverDnSetStream(solver, stream));
      CK_SOLVER(cusolverDnCreateParams(&params));
      // Jacobi defaults: tolerance = machine precision, at most 100 sweeps, eigenvalues sorted
      // ascending (as LAPACK returns them, which every method relies on).
      CK_SOLVER(cusolverDnCreateSyevjInfo(&syevj));
    } catch (...) {
      if (syevj) cusolverDnDestroySyevjInfo(syevj);
      if (params) cusolverDnDestroyParams(params);
      if (solver) cusolverDnDestroy(solver);
      if (blas) cublasDestroy(blas);
      if (stream) cudaStreamDestroy(stream);
      cudaSetDevice(prev);
      throw;
    }
    CK_CUDA(cudaSetDevice(prev));
  }

  int device;
  std::string name;
  std::mutex mu;  // one op at a time per device: the handles and the stream are not shared safely
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  cusolverDnParams_t params = nullptr;
  syevjInfo_t syevj = nullptr;
  DeviceCache cache;
  std::vector<unsigned char> hostWork;  // XsyevBatched's host workspace, kept between calls

  template <class T> DeviceArray<T> alloc(std::size_t count) { return DeviceArray<T>(cache, count); }

  // ---- copies between host arrays and the device --------------------------------------------------
  // From pageable memory the driver copies through small buffers of its own, at a fraction of the
  // bus's rate and without overlap. So copies of host arrays go through pinned blocks instead: two
  // for each direction (allocated on first use, `stagingChunk` bytes each, kept). The host's memcpy
  // of one chunk into a pinned block overlaps the DMA of the previous chunk out of the other, and
  // each DMA runs at the full PCIe rate; an event per block says when its last DMA is done, before
  // the host refills it. Copies of at most kDirectBytes (status words, info arrays, single values)
  // go directly, and so does everything when pinned memory cannot be had.
  struct Staging {
    void* block[2] = {nullptr, nullptr};
    cudaEvent_t done[2] = {nullptr, nullptr};  // the last DMA in or out of each block
    bool busy[2] = {false, false};
  };
  static constexpr std::size_t kDirectBytes = std::size_t(64) << 10;
  std::size_t stagingChunk = stagingChunkBytes();
  Staging up, down;  // host -> device, device -> host (a pipelined call uses both at once)
  bool pinnedUnavailable = false;

  bool staged(std::size_t bytes) {
    if (bytes <= std::min(kDirectBytes, stagingChunk / 4) || pinnedUnavailable) return false;
    if (down.block[1]) return true;
    for (Staging* st : {&up, &down})
      for (int k = 0; k < 2; ++k)
        if (cudaHostAlloc(&st->block[k], stagingChunk, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&st->done[k], cudaEventDisableTiming) != cudaSuccess) {
          cudaGetLastError();
          for (Staging* t : {&up, &down}) {
            for (int j = 0; j < 2; ++j) {
              if (t->block[j]) cudaFreeHost(t->block[j]);
              if (t->done[j]) cudaEventDestroy(t->done[j]);
            }
            *t = Staging{};
          }
          pinnedUnavailable = true;  // no pinned memory here: pageable copies from now on
          return false;
        }
    return true;
  }
  void waitPinned(Staging& st, int k) {
    if (st.busy[k]) CK_CUDA(cudaEventSynchronize(st.done[k]));
    st.busy[k] = false;
  }
  // Block k of `st` once its last DMA is done, for the host to fill (up) or read (down).
  void* pinned(Staging& st, int k) {
    waitPinned(st, k);
    return st.block[k];
  }
  // The DMA of block k of `up` (filled by the host) to dst, on stream s.
  void sendPinned(int k, cudaStream_t s, void* dst, std::size_t bytes) {
    CK_CUDA(cudaMemcpyAsync(dst, up.block[k], bytes, cudaMemcpyHostToDevice, s));
    CK_CUDA(cudaEventRecord(up.done[k], s));
    up.busy[k] = true;
  }
  // Host -> device through block k of `up`, on stream s: returns once the host's part is done.
  void stageIn(int k, cudaStream_t s, void* dst, const void* src, std::size_t bytes) {
    std::memcpy(pinned(up, k), src, bytes);
    sendPinned(k, s, dst, bytes);
  }
  // Device -> block k of `down`, on stream s; finishOut copies it to the host once the DMA is done.
  void stageOut(int k, cudaStream_t s, const void* src, std::size_t bytes) {
    waitPinned(down, k);
    CK_CUDA(cudaMemcpyAsync(down.block[k], src, bytes, cudaMemcpyDeviceToHost, s));
    CK_CUDA(cudaEventRecord(down.done[k], s));
    down.busy[k] = true;
  }
  void finishOut(int k, void* dst, std::size_t bytes) {
    waitPinned(down, k);
    std::memcpy(dst, down.block[k], bytes);
  }
  // Host array -> device, in stream order; `src` may be reused as soon as this returns.
  void toDevice(void* dst, const void* src, std::size_t bytes) {
    if (!bytes) return;
    if (!staged(bytes)) {
      CK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
      return;
    }
    for (std::size_t off = 0, k = 0; off < bytes; off += stagingChunk, ++k)
      stageIn(static_cast<int>(k & 1), stream, static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
              std::min(stagingChunk, bytes - off));
  }
  // Device -> host array, after everything queued before it; `dst` holds the data when this returns.
  void toHost(void* dst, const void* src, std::size_t bytes) {
    if (!bytes) return;
    if (!staged(bytes)) {
      CK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
      sync();
      return;
    }
    const std::size_t chunks = (bytes + stagingChunk - 1) / stagingChunk;
    auto size = [&](std::size_t k) { return std::min(stagingChunk, bytes - k * stagingChunk); };
    auto issue = [&](std::size_t k) { stageOut(static_cast<int>(k & 1), stream, static_cast<const char*>(src) + k * stagingChunk, size(k)); };
    issue(0);
    if (chunks > 1) issue(1);
    for (std::size_t k = 0; k < chunks; ++k) {  // the DMA of chunk k + 1 runs while chunk k is copied out
      finishOut(static_cast<int>(k & 1), static_cast<char*>(dst) + k * stagingChunk, size(k));
      if (k + 2 < chunks) issue(k + 2);
    }
  }
  // The stream copies of a pipelined call run on (created on first use), beside `stream`.
  cudaStream_t copyStream() {
    if (!copies) CK_CUDA(cudaStreamCreateWithFlags(&copies, cudaStreamNonBlocking));
    return copies;
  }
  cudaStream_t copies = nullptr;
  void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) CK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  }
  void sync() { CK_CUDA(cudaStreamSynchronize(stream)); }
};

// Held for the whole of an op: takes the device's lock, makes the device current on this thread
// (libuv pool threads, the JS thread for sync calls) and restores the previous one afterwards, so
// other CUDA users in the process see no change.
class Scope {
 public:
  explicit Scope(DeviceContext& cx) : cx_(cx), lock_(cx.mu) {
    CK_CUDA(cudaGetDevice(&prev_));
    if (prev_ != cx.device) CK_CUDA(cudaSetDevice(cx.device));
    cx.cache.trim();  // release what states freed by the garbage collector parked over the limit
  }
  ~Scope() {
    if (prev_ != cx_.device) cudaSetDevice(prev_);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  DeviceContext& cx_;
  std::lock_guard<std::mutex> lock_;
  int prev_ = 0;
};

// ---- device-resident tensors -------------------------------------------------------------------------

// A block of a device's cache holding one device-resident tensor (a Buffer::onDevice). Giving it back
// makes no CUDA call (DeviceCache::release), so the last holder may be any thread, the JS garbage
// collector's included.
class CudaStorage final : public DeviceStorage {
 public:
  template <class T> CudaStorage(DeviceContext& cx, DeviceArray<T>&& a) : cx_(&cx), bytes_(a.bytes()), p_(a.release()), owns_(true) {}
  // A slice of memory someone else owns and keeps alive longer (a pipelined call's chunks).
  CudaStorage(DeviceContext& cx, void* p) : cx_(&cx), bytes_(0), p_(p), owns_(false) {}
  ~CudaStorage() override {
    if (owns_) cx_->cache.release(p_, bytes_);
  }
  void* data() const override { return p_; }
  int device() const override { return cx_->device; }
  DeviceContext* context() const { return cx_; }

 private:
  DeviceContext* cx_;
  std::size_t bytes_;
  void* p_;
  bool owns_;
};

// The device memory of a device buffer, which must live on this context's device.
const void* deviceData(DeviceContext& cx, const Buffer& b) {
  const auto* st = dynamic_cast<const CudaStorage*>(b.storage().get());
  if (!st) fail("internal: device memory of another backend");
  if (st->context() != &cx)
    fail("a tensor on cuda:" + std::to_string(st->device()) + " was given to a call on " + cx.name + "; move it there first");
  return st->data();
}

// The op's input in fresh device memory of this context: uploaded from a host array, or copied from
// a device tensor (ops work on their inputs in place, and a device tensor must not change).
template <class T> DeviceArray<T> upload(DeviceContext& cx, const Buffer& b) {
  DeviceArray<T> d = cx.alloc<T>(b.size());
  if (b.onDevice()) cx.copy(d.data(), deviceData(cx, b), b.byteSize());
  else cx.toDevice(d.data(), b.as<T>(), b.byteSize());
  return d;
}

// An op's result: kept on the device when its input was there (`onDevice`), else copied into a host
// array. Either way the caller still checks the items' status before returning it.
template <class T> Buffer result(DeviceContext& cx, DeviceArray<T>&& d, std::size_t count, bool onDevice) {
  if (onDevice) return Buffer::onDevice(DTypeOf<T>::value, count, std::make_shared<CudaStorage>(cx, std::move(d)));
  Buffer out(DTypeOf<T>::value, count);
  cx.toHost(out.as<T>(), d.data(), out.byteSize());
  return out;
}

// Element i of an input buffer, for messages (one small copy when it lives on the device).
template <class T> T elementOf(DeviceContext& cx, const Buffer& b, std::size_t i) {
  if (!b.onDevice()) return b.as<T>()[i];
  T v{};
  cx.toHost(&v, static_cast<const T*>(deviceData(cx, b)) + i, sizeof(T));
  return v;
}

// ---- per-item checks ----------------------------------------------------------------------------------

// One status word per batch item (kernels.cuh StatusCode bits), downloaded at the checkpoints.
class ItemChecks {
 public:
  ItemChecks(DeviceContext& cx, int B) : dev_(cx.alloc<int>(B)), host_(B, 0) {
    if (B) CK_CUDA(cudaMemsetAsync(dev_.data(), 0, sizeof(int) * B, cx.stream));
  }
  int* data() { return dev_.data(); }
  // Downloads the flags (synchronizing the stream) and returns the first failing item, or -1.
  int fetch(DeviceContext& cx) {
    cx.toHost(host_.data(), dev_.data(), sizeof(int) * host_.size());
    cx.sync();
    for (std::size_t b = 0; b < host_.size(); ++b)
      if (host_[b]) return static_cast<int>(b);
    return -1;
  }
  int status(int b) const { return host_[b]; }
  // The first of `order` that item b failed (the CPU's order of checks for this op).
  int firstCode(int b, std::initializer_list<int> order) const {
    for (int c : order)
      if (host_[b] & c) return c;
    return host_[b] & -host_[b];
  }

 private:
  DeviceArray<int> dev_;
  std::vector<int> host_;
};

// ---- batched building blocks ---------------------------------------------------------------------------

cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Row-major batched C (m x n) = alpha op(A) op(B) + beta C, op(A) m x k; strides in elements.
template <class T>
void gemm(DeviceContext& cx, bool ta, bool tb, int m, int n, int k, T alpha, const T* A, int lda, long long sA, const T* Bm,
          int ldb, long long sB, T beta, T* C, int ldc, long long sC, int batch) {
  if (batch <= 0) return;
  // Column-major view: C^T (n x m) = op(B)^T op(A)^T, and the stored row-major X reads as X^T.
  CK_BLAS(gemmStridedBatched(cx.blas, op(tb), op(ta), n, m, k, &alpha, Bm, ldb, sB, A, lda, sA, &beta, C, ldc, sC, batch));
}
// Square n x n matrices, each operand a batch with stride n * n.
template <class T> void gemmSq(DeviceContext& cx, bool ta, bool tb, int n, T alpha, const T* A, const T* Bm, T beta, T* C, int batch) {
  const long long m = static_cast<long long>(n) * n;
  gemm<T>(cx, ta, tb, n, n, n, alpha, A, n, m, Bm, n, m, beta, C, n, m, batch);
}

// A = Xc Xc^T / N per item (upper triangle mirrored down, like the CPU's syrk + mirror).
template <class T> void covarianceForward(DeviceContext& cx, const T* xc, T* a, int B, int C, int N) {
  const long long sx = static_cast<long long>(C) * N, sa = static_cast<long long>(C) * C;
  gemm<T>(cx, false, true, C, C, N, T(1) / static_cast<T>(N), xc, N, sx, xc, N, sx, T(0), a, C, sa, B);
  K::mirrorUpper(a, B, C, cx.stream);
}

// dX = (G + G^T) Xc / N; g is overwritten with G + G^T.
template <class T> void covarianceBackward(DeviceContext& cx, const T* xc, T* g, T* dx, int B, int C, int N) {
  K::addTranspose(g, B, C, cx.stream);
  const long long sx = static_cast<long long>(C) * N, sa = static_cast<long long>(C) * C;
  gemm<T>(cx, false, false, C, N, C, T(1) / static_cast<T>(N), g, C, sa, xc, N, sx, T(0), dx, N, sx, B);
}

// Features [B, N, C] (channels last) as [B, C, N], the layout every step below works in, and a
// gradient [B, C, N] back to [B, N, C]. Batch-wise transposes on the device: with the features
// there already, a host round trip would cost more than the whole layer.
template <class T> DeviceArray<T> channelsFirst(DeviceContext& cx, DeviceArray<T> x, int B, int C, int N) {
  DeviceArray<T> t = cx.alloc<T>(x.size());
  K::transposeBatch<T>(x.data(), t.data(), B, N, C, cx.stream);
  return t;
}
template <class T> DeviceArray<T> channelsLast(DeviceContext& cx, DeviceArray<T> x, int B, int C, int N) {
  DeviceArray<T> t = cx.alloc<T>(x.size());
  K::transposeBatch<T>(x.data(), t.data(), B, C, N, cx.stream);
  return t;
}

// Eigendecomposition in place: w (symmetric, both triangles equal) -> rows = eigenvectors, l
// ascending. Jacobi (syevjBatched) for n <= 32, the 64-bit XsyevBatched above: a standalone
// cuSOLVER timing on an H200 (B = 1024, n = 32, fp32: 0.49 vs 0.61 ms) put the switch there; this
// backend itself has not run on a GPU yet, so the choice is unconfirmed. Returns the solver's name
// and fills info (one entry per item, 0 = converged).
template <class T> const char* eigensolve(DeviceContext& cx, T* w, T* l, int B, int n, std::vector<int>& info) {
  info.assign(B, 0);
  if (B <= 0) return "";
  DeviceArray<int> dInfo = cx.alloc<int>(B);
  const char* name;
  if (n <= 32) {
    name = "syevjBatched";
    int lwork = 0;
    CK_SOLVER(syevjBatchedBufferSize(cx.solver, n, w, l, &lwork, cx.syevj, B));
    DeviceArray<T> work = cx.alloc<T>(static_cast<std::size_t>(std::max(lwork, 1)));
    CK_SOLVER(syevjBatched(cx.solver, n, w, l, work.data(), lwork, dInfo.data(), cx.syevj, B));
  } else {
    name = "XsyevBatched";
    // One call may take at most INT32_MAX / (n * lda) matrices (e.g. 32767 at n = 256): larger
    // batches go in chunks; the workspace sized for the first (largest) chunk serves them all.
    const int perCall = xsyevBatchedItemsPerCall(n);
    const int first = std::min(B, perCall);
    std::size_t devBytes = 0, hostBytes = 0;
    CK_SOLVER(cusolverDnXsyevBatched_bufferSize(cx.solver, cx.params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                                dataType<T>(), w, n, dataType<T>(), l, dataType<T>(), &devBytes,
                                                &hostBytes, first));
    DeviceArray<unsigned char> work = cx.alloc<unsigned char>(std::max<std::size_t>(devBytes, 1));
    if (cx.hostWork.size() < std::max<std::size_t>(hostBytes, 1)) cx.hostWork.resize(std::max<std::size_t>(hostBytes, 1));
    for (int b0 = 0; b0 < B; b0 += perCall) {
      const int nb = std::min(perCall, B - b0);
      CK_SOLVER(cusolverDnXsyevBatched(cx.solver, cx.params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, dataType<T>(),
                                       w + static_cast<std::size_t>(b0) * n * n, n, dataType<T>(), l + static_cast<std::size_t>(b0) * n,
                                       dataType<T>(), work.data(), devBytes, cx.hostWork.data(), hostBytes, dInfo.data() + b0, nb));
    }
  }
  cx.toHost(info.data(), dInfo.data(), sizeof(int) * B);
  cx.sync();
  return name;
}

// ---- Newton-Schulz (batched), see native/cpu/newton_schulz.h ---------------------------------------

// The tape of T iterations over a batch: planes of B matrices. Y_0..Y_{T-1}, Z_0..Z_{T-1}, P_1..P_T.
template <class T> struct NsTapeView {
  T* base = nullptr;
  int B = 0, n = 0, iters = 0;
  static std::size_t planes(int iters) { return 3 * static_cast<std::size_t>(iters); }
  std::size_t plane() const { return static_cast<std::size_t>(B) * n * n; }
  T* y(int k) const { return base + static_cast<std::size_t>(k) * plane(); }
  T* z(int k) const { return base + static_cast<std::size_t>(iters + k) * plane(); }
  T* p(int k) const { return base + static_cast<std::size_t>(2 * iters + k - 1) * plane(); }
};

template <class T> void nsForward(DeviceContext& cx, const T* a, T* s, const NsTapeView<T>& t) {
  const int n = t.n, B = t.B, T_ = t.iters;
  cudaStream_t st = cx.stream;
  cx.copy(t.y(0), a, t.plane() * sizeof(T));
  K::axpbyIdentity<T>(nullptr, t.z(0), T(0), T(1), B, n, st);
  for (int k = 1; k <= T_; ++k) {
    T* p = t.p(k);
    if (k == 1) {
      K::axpbyIdentity<T>(t.y(0), p, T(-0.5), T(1.5), B, n, st);  // Z_0 = I: P_1 = (3I - Y_0)/2
    } else {
      gemmSq<T>(cx, false, false, n, T(-0.5), t.z(k - 1), t.y(k - 1), T(0), p, B);
      K::addDiagonal<T>(p, T(1.5), B, n, st);
    }
    if (k < T_) {
      gemmSq<T>(cx, false, false, n, T(1), t.y(k - 1), p, T(0), t.y(k), B);
      if (k == 1) cx.copy(t.z(1), p, t.plane() * sizeof(T));
      else gemmSq<T>(cx, false, false, n, T(1), p, t.z(k - 1), T(0), t.z(k), B);
    } else {
      gemmSq<T>(cx, false, false, n, T(1), t.y(k - 1), p, T(0), s, B);
    }
  }
}

// The work matrices nsBackward needs per item, beside the tape.
constexpr std::size_t kNsBackwardWork = 5;

// work: kNsBackwardWork * t.plane() values (the caller's: svd-newton budgets it per chunk).
template <class T> void nsBackward(DeviceContext& cx, const T* dS, T* dA, const NsTapeView<T>& t, T* work) {
  const int n = t.n, B = t.B, T_ = t.iters;
  const std::size_t mm = t.plane();
  cudaStream_t st = cx.stream;
  T* dY = work;
  T* dZ = dY + mm;
  T* dP = dY + 2 * mm;
  T* dYprev = dY + 3 * mm;
  T* dZprev = dY + 4 * mm;
  cx.copy(dY, dS, mm * sizeof(T));
  bool haveDZ = false;  // Z_T is never formed
  for (int k = T_; k >= 1; --k) {
    const T* yPrev = t.y(k - 1);
    const T* zPrev = t.z(k - 1);
    const T* p = t.p(k);
    gemmSq<T>(cx, true, false, n, T(1), yPrev, dY, T(0), dP, B);  // dP = Y_{k-1}^T dY
    if (haveDZ) {
      if (k == 1) K::axpy<T>(dP, T(1), dZ, mm, st);  // Z_0 = I
      else gemmSq<T>(cx, false, true, n, T(1), dZ, zPrev, T(1), dP, B);
    }
    gemmSq<T>(cx, false, true, n, T(1), dY, p, T(0), dYprev, B);  // dY_{k-1} = dY P_k^T
    if (k == 1) {
      K::axpy<T>(dYprev, T(-0.5), dP, mm, st);
    } else {
      gemmSq<T>(cx, true, false, n, T(-0.5), zPrev, dP, T(1), dYprev, B);
      if (haveDZ) gemmSq<T>(cx, true, false, n, T(1), p, dZ, T(0), dZprev, B);
      gemmSq<T>(cx, false, true, n, T(-0.5), dP, yPrev, haveDZ ? T(1) : T(0), dZprev, B);
      std::swap(dZ, dZprev);
      haveDZ = true;
    }
    std::swap(dY, dYprev);
  }
  cx.copy(dA, dY, mm * sizeof(T));
}

// ---- MPA-Lya (batched), see native/cpu/mpa_lya.h -----------------------------------------------------

// s = Q(Z)^{-1} P(Z), Z = I - a. Returns the first item whose Q(Z) is singular (getrf info > 0), or -1.
template <class T> int mpaForward(DeviceContext& cx, const T* a, T* s, int B, int n, const PadeCoefficients& c, int& infoOut) {
  const std::size_t mm = static_cast<std::size_t>(B) * n * n;
  cudaStream_t st = cx.stream;
  DeviceArray<T> work = cx.alloc<T>(4 * mm);
  T* z = work.data();
  T* zk = z + mm;
  T* q = z + 2 * mm;
  T* tmp = z + 3 * mm;
  const int deg = static_cast<int>(c.p.size()) - 1;
  K::axpbyIdentity<T>(a, z, T(-1), T(1), B, n, st);  // z = -a + I
  K::axpbyIdentity<T>(nullptr, s, T(0), static_cast<T>(c.p[0]), B, n, st);
  K::axpbyIdentity<T>(nullptr, q, T(0), static_cast<T>(c.q[0]), B, n, st);
  cx.copy(zk, z, mm * sizeof(T));
  for (int k = 1; k <= deg; ++k) {
    K::padeAccumulate<T>(s, q, zk, static_cast<T>(c.p[k]), static_cast<T>(c.q[k]), mm, st);
    if (k < deg) {
      gemmSq<T>(cx, false, false, n, T(1), zk, z, T(0), tmp, B);
      std::swap(zk, tmp);
    }
  }
  // getrf/getrs are column-major: transposed copies make the stored matrices Q and P themselves,
  // so the solve is Q X = P exactly as LAPACK's row-major gesv does. X comes back column-major,
  // i.e. X^T read row-major, and sym(X^T) = sym(X) is what the forward keeps.
  T* qT = zk;  // zk and tmp (two distinct buffers, whatever the swaps did) are free now
  T* pT = tmp;
  K::transpose<T>(q, qT, B, n, st);
  K::transpose<T>(s, pT, B, n, st);
  DeviceArray<T*> ptrs = cx.alloc<T*>(2 * static_cast<std::size_t>(B));
  K::pointerArray<T>(ptrs.data(), qT, static_cast<std::size_t>(n) * n, B, st);
  K::pointerArray<T>(ptrs.data() + B, pT, static_cast<std::size_t>(n) * n, B, st);
  DeviceArray<int> piv = cx.alloc<int>(static_cast<std::size_t>(B) * n);
  DeviceArray<int> info = cx.alloc<int>(B);
  CK_BLAS(getrfBatched(cx.blas, n, ptrs.data(), n, piv.data(), info.data(), B));
  std::vector<int> hInfo(B);
  cx.toHost(hInfo.data(), info.data(), sizeof(int) * B);
  cx.sync();
  for (int b = 0; b < B; ++b)
    if (hInfo[b] != 0) {
      infoOut = hInfo[b];
      return b;
    }
  int argInfo = 0;  // host: reports an invalid argument, not a numerical failure
  CK_BLAS(getrsBatched(cx.blas, n, n, ptrs.data(), n, piv.data(), ptrs.data() + B, n, &argInfo, B));
  if (argInfo != 0) fail("cuBLAS getrsBatched rejected argument " + std::to_string(-argInfo));
  K::symmetrize<T>(pT, s, B, n, st);  // Q and P commute: the exact result is symmetric
  return -1;
}

// Solves S X + X S = G per item by the coupled Newton-Schulz sign iteration (sNorm = S/sqrt(tau)).
template <class T> void lyapunovSignIteration(DeviceContext& cx, const T* sNorm, const T* g, T* out, int B, int n, int iters) {
  const std::size_t mm = static_cast<std::size_t>(B) * n * n;
  cudaStream_t st = cx.stream;
  DeviceArray<T> work = cx.alloc<T>(6 * mm);
  T* b = work.data();
  T* c = b + mm;
  T* b2 = b + 2 * mm;
  T* t1 = b + 3 * mm;
  T* t2 = b + 4 * mm;
  T* x = b + 5 * mm;
  cx.copy(b, sNorm, mm * sizeof(T));
  K::symmetrize<T>(g, c, B, n, st);
  for (int it = 0; it < iters; ++it) {
    gemmSq<T>(cx, false, false, n, T(1), b, b, T(0), b2, B);
    K::axpbyIdentity<T>(b2, t2, T(-1), T(3), B, n, st);     // t2 = 3I - B^2
    gemmSq<T>(cx, false, false, n, T(1), c, b, T(0), t1, B);      // C B
    gemmSq<T>(cx, false, false, n, T(0.5), b, t1, T(0), x, B);    // x = B C B / 2
    gemmSq<T>(cx, false, false, n, T(0.5), c, t2, T(1), x, B);    // + C (3I - B^2) / 2
    gemmSq<T>(cx, false, false, n, T(-0.5), b2, c, T(1), x, B);   // - B^2 C / 2
    std::swap(c, x);
    gemmSq<T>(cx, false, false, n, T(0.5), b, t2, T(0), x, B);    // B (3I - B^2) / 2
    std::swap(b, x);
  }
  // Symmetric up to rounding; sqrtmBackward symmetrizes every method's gradient once, as the CPU.
  K::axpbyIdentity<T>(c, out, T(0.5), T(0), B, n, st);
}

// ---- eigen-based square root (batched), see native/cpu/eigen_sqrtm.h --------------------------------

// dA = W^T inner W, inner from M = W sym(dS) W^T by the fused K kernel.
template <class T> void eigenBackward(DeviceContext& cx, const KParams& k, const T* w, const T* l, const T* dS, T* dA, int B, int n) {
  const std::size_t mm = static_cast<std::size_t>(B) * n * n;
  cudaStream_t st = cx.stream;
  DeviceArray<T> work = cx.alloc<T>(3 * mm + 4 * static_cast<std::size_t>(B));
  T* g = work.data();
  T* t1 = g + mm;
  T* inner = g + 2 * mm;
  T* stats = g + 3 * mm;
  K::symmetrize<T>(dS, g, B, n, st);
  gemmSq<T>(cx, false, false, n, T(1), w, g, T(0), t1, B);   // W G
  gemmSq<T>(cx, false, true, n, T(1), t1, w, T(0), g, B);    // M = W G W^T
  K::eigenBackwardInner<T>(k, g, l, inner, stats, B, n, st);
  gemmSq<T>(cx, false, false, n, T(1), inner, w, T(0), t1, B);  // inner W
  gemmSq<T>(cx, true, false, n, T(1), w, t1, T(0), dA, B);      // W^T inner W
  // Symmetric up to rounding: sqrtmBackward symmetrizes once, after the normalization backward,
  // in the CPU's order (native/cpu/eigen_sqrtm.h).
}

// ---- states -------------------------------------------------------------------------------------------

template <class Ti, class Ts> class CudaState final : public State {
 public:
  explicit CudaState(DeviceContext& c) : cx(&c) {}
  using Tc = typename LayerPrecision<Ti, Ts>::Covariance;
  DeviceContext* cx;       // the device it lives on; backward refuses other devices' states
  DeviceArray<Tc> xc;      // layer: centered features, in the covariance precision
  DeviceArray<Ts> tau;     // per item normalization factor (1 for 'none')
  DeviceArray<Ts> ahat;    // A / tau
  DeviceArray<Ts> araw;    // svd-newton: the un-normalized A
  DeviceArray<Ts> shat;    // S / sqrt(tau)
  DeviceArray<Ts> w, lam;  // eigen methods: W = U^T (rows) and the floored eigenvalues
  DeviceArray<Ts> tape;    // ns: the Newton-Schulz tape, NsTapeView layout
  DeviceArray<double> padeP, padeQ;  // svd-pade: coefficients for the K kernel
  PadeCoefficients pade;

  std::size_t m() const { return static_cast<std::size_t>(dims.C) * dims.C; }
  // Device bytes, reported to the JS garbage collector like host bytes: a state the program forgot
  // pins GPU memory, and the collector should feel that pressure.
  std::size_t bytes() const override {
    return xc.bytes() + tau.bytes() + ahat.bytes() + araw.bytes() + shat.bytes() + w.bytes() + lam.bytes() +
           tape.bytes() + padeP.bytes() + padeQ.bytes();
  }
  bool keepsNormalized() const { return options.normalization != Normalization::None || options.method == Method::MPA_LYA; }
  NsTapeView<Ts> nsTape() const { return {tape.data(), dims.B, dims.C, options.iterations}; }
  KParams kParams() const {
    const int L = static_cast<int>(pade.q.size()) - 1;
    return makeKParams(options, padeP.data(), padeQ.data(), L < 0 ? 0 : L, true);
  }

  void allocate() {
    DeviceContext& c = *cx;
    const std::size_t B = dims.B, mm = m();
    tau = c.alloc<Ts>(B);
    if (keepsNormalized()) ahat = c.alloc<Ts>(B * mm);
    if (options.method == Method::SVD_NEWTON) araw = c.alloc<Ts>(B * mm);
    if (keepsNormalized()) shat = c.alloc<Ts>(B * mm);
    if (usesEigenForward(options.method)) {
      w = c.alloc<Ts>(B * mm);
      lam = c.alloc<Ts>(B * dims.C);
    }
    if (options.method == Method::NS) tape = c.alloc<Ts>(B * mm * NsTapeView<Ts>::planes(options.iterations));
    if (options.method == Method::SVD_PADE) {
      pade = options.padeP.empty() ? geometricSeriesPade(options.degree) : PadeCoefficients{options.padeP, options.padeQ};
      padeP = c.alloc<double>(pade.p.size());
      padeQ = c.alloc<double>(pade.q.size());
      c.toDevice(padeP.data(), pade.p.data(), pade.p.size() * sizeof(double));
      c.toDevice(padeQ.data(), pade.q.data(), pade.q.size() * sizeof(double));
    } else if (options.method == Method::MPA_LYA) {
      pade = sqrtPade(options.degree);
    }
  }
};

// ---- messages (the CPU backend's wording) -------------------------------------------------------------

std::string nonSymmetricMessage(DeviceContext& cx, const Buffer& in, int b, int C, int flat) {
  const int i = flat / C, j = flat % C;
  const std::size_t base = static_cast<std::size_t>(b) * C * C;
  std::ostringstream os;
  os << "the matrix is not symmetric: ";
  dispatchDType(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    os << "A[" << i << "][" << j << "] = " << elementOf<T>(cx, in, base + i * C + j) << " but A[" << j << "][" << i
       << "] = " << elementOf<T>(cx, in, base + j * C + i);
    return 0;
  });
  return os.str();
}

std::string normalizerMessage(Normalization nm, double tau) {
  return std::string("cannot normalize by the ") + normalizationName(nm) + " (it is " + std::to_string(tau) +
         "): the matrix is zero or not positive semi-definite";
}

// ---- forward ------------------------------------------------------------------------------------------

// Square root of the batch a (Ts, normalized in place) into s (Ts): the batched twin of the CPU's
// sqrtmItem. `checks` already holds the input checks; `raiseInput` reports one of them.
//
// Errors follow the CPU's rule: the lowest failing item is reported, whatever its failure. So when
// the input checkpoint finds item b bad, items 0 .. b - 1 still run (an eigensolver that does not
// converge, a singular Pade denominator or a non-finite result there comes first), and only then is
// b's input error raised; nothing ever runs on a non-finite or unnormalizable item (an eigensolver
// fed NaN can spin to its sweep limit).
template <class Ti, class Ts, class RaiseInput>
void sqrtmForward(CudaState<Ti, Ts>& st, Ts* a, Ts* s, ItemChecks& checks, RaiseInput&& raiseInput) {
  DeviceContext& cx = *st.cx;
  cudaStream_t stream = cx.stream;
  const SqrtmOptions& o = st.options;
  const int B = st.dims.B, n = st.dims.C;
  const std::size_t m = st.m();

  K::flagNonFinite<Ts>(a, m, B, checks.data(), kBadMatrix, stream);
  K::normalizer<Ts>(a, B, n, o.normalization, st.tau.data(), checks.data(), kBadNormalizer, stream);
  const int badInput = checks.fetch(cx);
  const int Bn = badInput >= 0 ? badInput : B;  // the items that go on
  const std::size_t mm = static_cast<std::size_t>(Bn) * m;

  if (Bn > 0) {
    if (o.method == Method::SVD_NEWTON) cx.copy(st.araw.data(), a, mm * sizeof(Ts));
    if (o.normalization != Normalization::None) K::divideByTau<Ts>(a, a, st.tau.data(), m, Bn, stream);
    if (st.keepsNormalized()) cx.copy(st.ahat.data(), a, mm * sizeof(Ts));

    if (o.method == Method::NS) {
      nsForward<Ts>(cx, a, s, NsTapeView<Ts>{st.tape.data(), Bn, n, o.iterations});
    } else if (o.method == Method::MPA_LYA) {
      int info = 0;
      const int singular = mpaForward<Ts>(cx, a, s, Bn, n, st.pade, info);
      if (singular >= 0)
        failItem(singular, "MPA-Lya: the Pade denominator Q(Z) is singular (cuBLAS getrfBatched info=" + std::to_string(info) + ")");
    } else {
      Ts* w = st.w.data();
      Ts* l = st.lam.data();
      cx.copy(w, a, mm * sizeof(Ts));
      K::mirrorLower<Ts>(w, Bn, n, stream);  // the row-major lower triangle is the input (core/backend.h)
      std::vector<int> info;
      const char* solverName = eigensolve<Ts>(cx, w, l, Bn, n, info);
      for (int b = 0; b < Bn; ++b)
        if (info[b] != 0)
          failItem(b, std::string("eigendecomposition did not converge (cuSOLVER ") + solverName + " info=" + std::to_string(info[b]) + ")");
      const int topN = o.method == Method::SVD_TOPN ? o.topN : 0;
      K::floorEigenvalues<Ts>(l, Bn, n, static_cast<Ts>(o.eps), topN, stream);
      // s = V^T V, V = diag(l^{1/4}) W; upper triangle mirrored down, as the CPU's syrk + mirror.
      DeviceArray<Ts> v = cx.alloc<Ts>(mm);
      K::scaleRowsQuarterRoot<Ts>(w, l, v.data(), Bn, n, stream);
      gemmSq<Ts>(cx, true, false, n, Ts(1), v.data(), v.data(), Ts(0), s, Bn);
      K::mirrorUpper<Ts>(s, Bn, n, stream);
    }
    K::flagNonFinite<Ts>(s, m, Bn, checks.data(), kBadSqrt, stream);
    if (st.keepsNormalized()) cx.copy(st.shat.data(), s, mm * sizeof(Ts));
    if (o.normalization != Normalization::None) K::scaleBySqrtTau<Ts>(s, s, st.tau.data(), m, Bn, true, stream);
  }
  if (badInput < 0) return;
  // A non-finite result before the bad input item comes first; else that item's input error.
  const int first = checks.fetch(cx);
  if (first < badInput) failItem(first, std::string(methodName(o.method)) + " produced a non-finite square root");
  const int code = checks.firstCode(badInput, {kBadFeatures, kBadMatrix, kAsymmetric, kBadNormalizer});
  if (code == kBadNormalizer) {
    Ts t = 0;
    cx.toHost(&t, st.tau.data() + badInput, sizeof(Ts));
    cx.sync();
    failItem(badInput, normalizerMessage(o.normalization, static_cast<double>(t)));
  }
  raiseInput(badInput, code);
}

// The whole forward of a batch on the device (the caller holds the device's Scope).
template <class Ti, class Ts>
std::shared_ptr<State> forwardLocked(DeviceContext& cx, const Buffer& in, Dims d, const SqrtmOptions& o, bool fromFeatures,
                                     bool vectorize, Buffer& out) {
  cudaStream_t stream = cx.stream;
  auto st = std::make_shared<CudaState<Ti, Ts>>(cx);
  st->describe(fromFeatures ? StateKind::Layer : StateKind::Sqrtm, d, DTypeOf<Ti>::value, o, fromFeatures && vectorize);
  st->allocate();
  const int B = d.B, C = d.C, N = d.N;
  const std::size_t m = st->m(), mm = static_cast<std::size_t>(B) * m, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
  const std::size_t outPer = st->vectorize ? tri : m;

  ItemChecks checks(cx, B);
  DeviceArray<int> firstBad;
  DeviceArray<Ts> a = cx.alloc<Ts>(mm);
  {
    DeviceArray<Ti> x = upload<Ti>(cx, in);
    if (fromFeatures) {
      using Tc = typename LayerPrecision<Ti, Ts>::Covariance;
      K::flagNonFinite<Ti>(x.data(), static_cast<std::size_t>(C) * N, B, checks.data(), kBadFeatures, stream);
      if (d.channelsLast) x = channelsFirst(cx, std::move(x), B, C, N);
      // Converted first, centered and multiplied in Tc (= Ts): the CPU backend's order.
      st->xc = cx.alloc<Tc>(static_cast<std::size_t>(B) * C * N);
      K::convert<Ti, Tc>(x.data(), st->xc.data(), st->xc.size(), stream);
      K::centerRows<Tc>(st->xc.data(), st->xc.data(), static_cast<std::size_t>(B) * C, N, stream);
      covarianceForward<Tc>(cx, st->xc.data(), a.data(), B, C, N);
    } else {
      K::flagNonFinite<Ti>(x.data(), m, B, checks.data(), kBadMatrix, stream);
      firstBad = cx.alloc<int>(B);
      K::fill<int>(firstBad.data(), INT_MAX, B, stream);
      K::checkSymmetric<Ti>(x.data(), B, C, firstBad.data(), checks.data(), stream);
      K::convert<Ti, Ts>(x.data(), a.data(), mm, stream);
    }
  }

  auto raiseInput = [&](int b, int code) {
    if (code == kBadFeatures) failItem(b, "the features contain NaN or Infinity");
    if (code == kAsymmetric) {
      int flat = 0;
      cx.toHost(&flat, firstBad.data() + b, sizeof(int));
      cx.sync();
      failItem(b, nonSymmetricMessage(cx, in, b, C, flat));
    }
    failItem(b, "the matrix contains NaN or Infinity");
  };
  DeviceArray<Ts> s = cx.alloc<Ts>(mm);
  sqrtmForward<Ti, Ts>(*st, a.data(), s.data(), checks, raiseInput);

  DeviceArray<Ti> si = cx.alloc<Ti>(mm);
  K::convert<Ts, Ti>(s.data(), si.data(), mm, stream);
  if (st->vectorize) {
    DeviceArray<Ti> y = cx.alloc<Ti>(static_cast<std::size_t>(B) * tri);
    K::packUpper<Ti>(si.data(), y.data(), B, C, stream);
    si = std::move(y);
  }
  out = result<Ti>(cx, std::move(si), static_cast<std::size_t>(B) * outPer, in.onDevice());
  const int bad = checks.fetch(cx);
  if (bad >= 0) failItem(bad, std::string(methodName(o.method)) + " produced a non-finite square root");
  return st;
}

// ---- backward -----------------------------------------------------------------------------------------

// svd-newton's backward: the derivative of T Newton-Schulz iterations (trace normalization) at A.
// The tape (3 * iters matrices per item) and all the work (3 matrices here, kNsBackwardWork in
// nsBackward) are allocated once for one chunk of items and reused chunk after chunk, so a chunk
// uses exactly the bytes it was budgeted (plan.h): each item's result does not depend on the chunking.
std::size_t chunkBudgetBytes() {
  const char* v = std::getenv("COVPOOL_CUDA_CHUNK_MB");
  const long long mb = v && *v ? std::atoll(v) : 0;
  return mb > 0 ? static_cast<std::size_t>(mb) << 20 : kDefaultChunkBytes;
}
template <class T> void newtonSchulzGradientAt(DeviceContext& cx, const T* a, const T* dS, T* dA, int B, int n, int iters, int* status) {
  const std::size_t m = static_cast<std::size_t>(n) * n;
  cudaStream_t stream = cx.stream;
  const std::size_t workMatrices = 3 + kNsBackwardWork;
  const int chunk = itemsPerChunk((NsTapeView<T>::planes(iters) + workMatrices) * m * sizeof(T), chunkBudgetBytes(), B);
  const std::size_t cm = static_cast<std::size_t>(chunk) * m;
  DeviceArray<T> tau = cx.alloc<T>(B);
  DeviceArray<T> work = cx.alloc<T>(workMatrices * cm);
  DeviceArray<T> tapeStore = cx.alloc<T>(NsTapeView<T>::planes(iters) * cm);
  DeviceArray<double> dots = cx.alloc<double>(2 * static_cast<std::size_t>(chunk));
  for (int b0 = 0; b0 < B; b0 += chunk) {
    const int nb = std::min(chunk, B - b0);
    const std::size_t off = static_cast<std::size_t>(b0) * m, mm = static_cast<std::size_t>(nb) * m;
    T* aHat = work.data();
    T* sHat = aHat + mm;
    T* dsHat = aHat + 2 * mm;
    T* t = tau.data() + b0;
    K::normalizer<T>(a + off, nb, n, Normalization::Trace, t, status + b0, 0, stream);  // code 0: flag below instead
    K::flagNotPositive<T>(t, nb, status + b0, kBadNewtonTrace, stream);                // the CPU's test: !(tau > 0)
    K::divideByTau<T>(a + off, aHat, t, m, nb, stream);
    const NsTapeView<T> tape{tapeStore.data(), nb, n, iters};
    nsForward<T>(cx, aHat, sHat, tape);
    K::scaleBySqrtTau<T>(dS + off, dsHat, t, m, nb, true, stream);
    nsBackward<T>(cx, dsHat, dA + off, tape, dsHat + mm);
    K::normalizationBackward<T>(Normalization::Trace, t, dS + off, sHat, aHat, dA + off, dots.data(), nb, n, stream);
  }
}

// Backward of the square root over the batch: dS (Ts, raw) -> dA (Ts, symmetric).
template <class Ti, class Ts> void sqrtmBackward(const CudaState<Ti, Ts>& st, const Ts* dS, Ts* dA, ItemChecks& checks) {
  DeviceContext& cx = *st.cx;
  cudaStream_t stream = cx.stream;
  const SqrtmOptions& o = st.options;
  const int B = st.dims.B, n = st.dims.C;
  const std::size_t m = st.m(), mm = static_cast<std::size_t>(B) * m;
  if (o.method == Method::SVD_NEWTON) {
    newtonSchulzGradientAt<Ts>(cx, st.araw.data(), dS, dA, B, n, o.iterations, checks.data());
  } else if (o.method == Method::MPA_LYA) {
    // The Lyapunov solution is the derivative of the whole square root, normalization included.
    DeviceArray<Ts> g = cx.alloc<Ts>(mm);
    K::scaleBySqrtTau<Ts>(dS, g.data(), st.tau.data(), m, B, false, stream);
    lyapunovSignIteration<Ts>(cx, st.shat.data(), g.data(), dA, B, n, o.iterations);
  } else {
    DeviceArray<Ts> dsHat = cx.alloc<Ts>(mm);
    K::scaleBySqrtTau<Ts>(dS, dsHat.data(), st.tau.data(), m, B, true, stream);
    if (o.method == Method::NS) {
      DeviceArray<Ts> work = cx.alloc<Ts>(kNsBackwardWork * mm);
      nsBackward<Ts>(cx, dsHat.data(), dA, st.nsTape(), work.data());
    } else {
      eigenBackward<Ts>(cx, st.kParams(), st.w.data(), st.lam.data(), dsHat.data(), dA, B, n);
    }
    if (o.normalization != Normalization::None) {
      DeviceArray<double> dots = cx.alloc<double>(2 * static_cast<std::size_t>(B));
      K::normalizationBackward<Ts>(o.normalization, st.tau.data(), dS, st.shat.data(), st.ahat.data(), dA, dots.data(), B, n, stream);
    }
  }
  K::symmetrize<Ts>(dA, dA, B, n, stream);
}

// The whole backward of a state on the device (the caller holds the device's Scope).
template <class Ti, class Ts> Buffer backwardLocked(DeviceContext& cx, const State& base, const Buffer& dOut) {
  const auto* stp = dynamic_cast<const CudaState<Ti, Ts>*>(&base);
  if (!stp || stp->cx != &cx)
    failType("the state was made on another device or backend; run backward where its forward ran (" + cx.name + " here)");
  const CudaState<Ti, Ts>& st = *stp;
  cudaStream_t stream = cx.stream;
  const Dims d = st.dims;
  const int B = d.B, C = d.C, N = d.N;
  const bool layer = st.kind == StateKind::Layer;
  const std::size_t m = st.m(), mm = static_cast<std::size_t>(B) * m, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
  const std::size_t inPer = st.vectorize ? tri : m;

  ItemChecks checks(cx, B);
  DeviceArray<Ti> ti = cx.alloc<Ti>(mm);
  {
    DeviceArray<Ti> dy = upload<Ti>(cx, dOut);
    K::flagNonFinite<Ti>(dy.data(), inPer, B, checks.data(), kBadGradIn, stream);
    if (st.vectorize) K::unpackUpper<Ti>(dy.data(), ti.data(), B, C, stream);
    else cx.copy(ti.data(), dy.data(), mm * sizeof(Ti));
  }
  DeviceArray<Ts> dS = cx.alloc<Ts>(mm), dA = cx.alloc<Ts>(mm);
  K::convert<Ti, Ts>(ti.data(), dS.data(), mm, stream);
  sqrtmBackward<Ti, Ts>(st, dS.data(), dA.data(), checks);
  K::flagNonFinite<Ts>(dA.data(), m, B, checks.data(), kBadGradOut, stream);

  const std::size_t gradCount = layer ? static_cast<std::size_t>(B) * C * N : mm;
  Buffer grad;
  if (layer) {  // back-propagated in the covariance precision too, then rounded once to Ti
    using Tc = typename LayerPrecision<Ti, Ts>::Covariance;
    DeviceArray<Tc> dAc, dx = cx.alloc<Tc>(gradCount);
    Tc* g;
    if constexpr (std::is_same_v<Tc, Ts>) {
      g = dA.data();
    } else {
      dAc = cx.alloc<Tc>(mm);
      K::convert<Ts, Tc>(dA.data(), dAc.data(), mm, stream);
      g = dAc.data();
    }
    covarianceBackward<Tc>(cx, st.xc.data(), g, dx.data(), B, C, N);
    DeviceArray<Ti> dxi = cx.alloc<Ti>(gradCount);
    K::convert<Tc, Ti>(dx.data(), dxi.data(), gradCount, stream);
    if (d.channelsLast) dxi = channelsLast(cx, std::move(dxi), B, C, N);
    grad = result<Ti>(cx, std::move(dxi), gradCount, dOut.onDevice());
  } else {
    K::convert<Ts, Ti>(dA.data(), ti.data(), mm, stream);
    grad = result<Ti>(cx, std::move(ti), gradCount, dOut.onDevice());
  }
  const int bad = checks.fetch(cx);
  if (bad >= 0) {
    const int code = checks.firstCode(bad, {kBadGradIn, kBadNewtonTrace, kBadGradOut});
    if (code == kBadGradIn) failItem(bad, "the output gradient contains NaN or Infinity");
    if (code == kBadNewtonTrace) failItem(bad, "svd-newton: the trace of the matrix is not positive, Newton-Schulz cannot be normalized");
    failItem(bad, std::string(methodName(st.options.method)) + " produced a non-finite gradient");
  }
  return grad;
}

// ---- pipelined calls on host arrays -----------------------------------------------------------------
// A call on host arrays copies its input to the device and its result back. Split into chunks of
// items, the copy of chunk k + 1 in and of chunk k - 1 out run on a second stream (through the
// pinned blocks) while chunk k computes: the call costs about the device-resident call plus one
// chunk's copies, instead of plus all of them. Each chunk is the device-resident call on its slice
// of the batch, which gives every item exactly the result the whole batch gives it (every step is
// per item). Its state is a ChunkedState of the chunks' states, whose backward runs the same way.

// A state made chunk by chunk: each part is the state of items first[k] ...
class ChunkedState final : public State {
 public:
  explicit ChunkedState(DeviceContext& c) : cx(&c) {}
  DeviceContext* cx;
  std::vector<int> first;  // each part's first item, and B at the end
  std::vector<std::shared_ptr<State>> parts;
  std::size_t bytes() const override {
    std::size_t b = 0;
    for (const auto& p : parts) b += p->bytes();
    return b;
  }
};

// Items per chunk of a pipelined call whose items take `inBytes` and `outBytes` on the host: what one
// pinned block holds (COVPOOL_CUDA_PIPELINE_ITEMS sets it; 0 never pipelines). B (no pipelining)
// when that gives fewer than two chunks.
int pipelineItems(const DeviceContext& cx, int B, std::size_t inBytes, std::size_t outBytes) {
  long long items = static_cast<long long>(cx.stagingChunk / std::max<std::size_t>({inBytes, outBytes, 1}));
  const char* v = std::getenv("COVPOOL_CUDA_PIPELINE_ITEMS");
  if (v && *v) items = std::min(items, std::atoll(v));  // never more than a pinned block holds
  if (items <= 0 || items >= B) return B;
  return static_cast<int>(items);
}

// A per-chunk error with its item number made the batch's.
[[noreturn]] void rethrowForBatch(const CovpoolError& e, int first) {
  static const std::string tag = "batch item ";
  const std::string msg = e.what();
  if (first == 0 || msg.rfind(tag, 0) != 0) throw e;
  std::size_t used = 0;
  const long long item = std::stoll(msg.substr(tag.size()), &used);
  throw CovpoolError(tag + std::to_string(item + first) + msg.substr(tag.size() + used));
}

// Runs f on a second host thread until the returned guard is joined or destroyed (inline if no thread
// can be made). Only plain memory copies run there: every CUDA call stays on the calling thread.
class HostSide {
 public:
  template <class F> explicit HostSide(F&& f) {
    try {
      t_ = std::thread(std::forward<F>(f));
    } catch (const std::system_error&) {
      f();
    }
  }
  ~HostSide() { join(); }
  void join() {
    if (t_.joinable()) t_.join();
  }

 private:
  std::thread t_;
};

// Runs the pipeline: for each chunk k of `items`-item slices, `in` (per item inPer elements of Ti,
// host) goes to the device, run(k, first item, items, device input slice) computes it there and
// returns its result (per item outPer elements of To, on the device), which comes back into `out`
// (host). run() blocks (its checkpoints wait for the device), so everything else is arranged to
// happen while it does:
//   - on the copy stream, the DMA of chunk k + 1 in and of chunk k - 1 out;
//   - on a second host thread, the memcpy of chunk k + 2 into a pinned block and of chunk k - 2 out
//     of one (each block's previous DMA is finished before that thread is started).
// Not hidden: chunk 0's copy in and chunk 1's memcpy, the last two chunks' memcpy out. Both streams
// are idle when it returns or throws, so nothing it queued outlives the buffers it used.
template <class Ti, class To, class Run>
void pipeline(DeviceContext& cx, const Buffer& in, std::size_t inPer, int B, int items, Buffer& out, std::size_t outPer, Run&& run) {
  const int chunks = (B + items - 1) / items;
  auto first = [&](int k) { return static_cast<std::size_t>(std::min(B, k * items)); };
  auto count = [&](int k) { return first(k + 1) - first(k); };
  auto inBytes = [&](int k) { return count(k) * inPer * sizeof(Ti); };
  auto outBytes = [&](int k) { return count(k) * outPer * sizeof(To); };
  const Ti* host = in.as<Ti>();
  To* hostOut = out.as<To>();
  cudaStream_t copies = cx.copyStream();
  DeviceArray<Ti> din = cx.alloc<Ti>(static_cast<std::size_t>(B) * inPer);  // the whole input, landing chunk by chunk
  std::vector<Buffer> results(chunks);                                        // each chunk's result, until it is out
  cudaEvent_t computed = nullptr;
  CK_CUDA(cudaEventCreateWithFlags(&computed, cudaEventDisableTiming));
  struct Idle {  // on every exit: both streams drained, the event gone
    DeviceContext& cx;
    cudaEvent_t ev;
    ~Idle() {
      cudaStreamSynchronize(cx.copies);
      cudaStreamSynchronize(cx.stream);
      cudaEventDestroy(ev);
    }
  } idle{cx, computed};
  auto dmaIn = [&](int k) { cx.sendPinned(k & 1, copies, din.data() + first(k) * inPer, inBytes(k)); };
  auto copyOut = [&](int k, const void* block) { std::memcpy(hostOut + first(k) * outPer, block, outBytes(k)); };

  cx.stageIn(0, copies, din.data(), host, inBytes(0));
  if (chunks > 1) cx.stageIn(1, copies, din.data() + first(1) * inPer, host + first(1) * inPer, inBytes(1));
  for (int k = 0; k < chunks; ++k) {
    CK_CUDA(cudaStreamWaitEvent(cx.stream, cx.up.done[k & 1], 0));  // chunk k has landed
    // The host's share of chunks k + 2 (in) and k - 2 (out), both through blocks k & 1, beside run(k).
    void* inBlock = k + 2 < chunks ? cx.pinned(cx.up, k & 1) : nullptr;
    const void* outBlock = k >= 2 ? cx.pinned(cx.down, k & 1) : nullptr;
    HostSide side([&, k, inBlock, outBlock] {
      if (inBlock) std::memcpy(inBlock, host + first(k + 2) * inPer, inBytes(k + 2));
      if (outBlock) copyOut(k - 2, outBlock);
    });
    const Buffer slice = Buffer::onDevice(DTypeOf<Ti>::value, count(k) * inPer, std::make_shared<CudaStorage>(cx, din.data() + first(k) * inPer));
    try {
      results[k] = run(k, static_cast<int>(first(k)), static_cast<int>(count(k)), slice);
    } catch (const CovpoolError& e) {
      side.join();
      rethrowForBatch(e, static_cast<int>(first(k)));
    }
    side.join();
    if (k >= 2) results[k - 2] = Buffer();
    if (inBlock) dmaIn(k + 2);
    CK_CUDA(cudaEventRecord(computed, cx.stream));
    CK_CUDA(cudaStreamWaitEvent(copies, computed, 0));
    cx.stageOut(k & 1, copies, deviceData(cx, results[k]), outBytes(k));
  }
  for (int k = std::max(0, chunks - 2); k < chunks; ++k) {
    copyOut(k, cx.pinned(cx.down, k & 1));
    results[k] = Buffer();
  }
}

// The forward on host arrays in chunks: a ChunkedState of the chunks' states.
template <class Ti, class Ts>
std::shared_ptr<State> forwardPipelined(DeviceContext& cx, const Buffer& in, Dims d, const SqrtmOptions& o, bool fromFeatures, bool vectorize,
                                        int items, Buffer& out) {
  const std::size_t C = d.C, tri = C * (C + 1) / 2;
  const std::size_t inPer = fromFeatures ? C * d.N : C * C, outPer = fromFeatures && vectorize ? tri : C * C;
  auto chunked = std::make_shared<ChunkedState>(cx);
  chunked->describe(fromFeatures ? StateKind::Layer : StateKind::Sqrtm, d, DTypeOf<Ti>::value, o, fromFeatures && vectorize);
  out = Buffer(DTypeOf<Ti>::value, static_cast<std::size_t>(d.B) * outPer);
  pipeline<Ti, Ti>(cx, in, inPer, d.B, items, out, outPer, [&](int, int b0, int nb, const Buffer& slice) {
    Dims dk = d;
    dk.B = nb;
    Buffer y;
    chunked->parts.push_back(forwardLocked<Ti, Ts>(cx, slice, dk, o, fromFeatures, vectorize, y));
    chunked->first.push_back(b0);
    return y;
  });
  chunked->first.push_back(d.B);
  return chunked;
}

// The backward of a ChunkedState: chunk by chunk, pipelined for a host gradient; for a device
// gradient each chunk's gradient lands in its slice of one device result.
template <class Ti, class Ts> Buffer backwardChunked(DeviceContext& cx, const ChunkedState& st, const Buffer& dOut) {
  const std::size_t C = st.dims.C, tri = C * (C + 1) / 2;
  const bool layer = st.kind == StateKind::Layer;
  const std::size_t inPer = st.vectorize ? tri : C * C, outPer = layer ? C * st.dims.N : C * C;
  const int chunks = static_cast<int>(st.parts.size()), B = st.dims.B;
  auto part = [&](int k, const Buffer& dk) {
    try {
      return backwardLocked<Ti, Ts>(cx, *st.parts[k], dk);
    } catch (const CovpoolError& e) {
      rethrowForBatch(e, st.first[k]);
    }
  };
  if (!dOut.onDevice()) {
    Buffer out(DTypeOf<Ti>::value, static_cast<std::size_t>(B) * outPer);
    pipeline<Ti, Ti>(cx, dOut, inPer, B, st.first[1] - st.first[0], out, outPer,
                     [&](int k, int, int, const Buffer& slice) { return backwardLocked<Ti, Ts>(cx, *st.parts[k], slice); });
    return out;
  }
  DeviceArray<Ti> all = cx.alloc<Ti>(static_cast<std::size_t>(B) * outPer);
  const Ti* src = static_cast<const Ti*>(deviceData(cx, dOut));
  for (int k = 0; k < chunks; ++k) {
    const std::size_t b0 = st.first[k], nb = st.first[k + 1] - st.first[k];
    const Buffer slice = Buffer::onDevice(DTypeOf<Ti>::value, nb * inPer, std::make_shared<CudaStorage>(cx, const_cast<Ti*>(src + b0 * inPer)));
    const Buffer g = part(k, slice);
    cx.copy(all.data() + b0 * outPer, deviceData(cx, g), nb * outPer * sizeof(Ti));
  }
  return result<Ti>(cx, std::move(all), static_cast<std::size_t>(B) * outPer, true);
}

// Every forward: pipelined in chunks for host arrays large enough to be worth it, whole otherwise.
template <class Ti, class Ts>
std::shared_ptr<State> forwardImpl(DeviceContext& cx, const Buffer& in, Dims d, const SqrtmOptions& o, bool fromFeatures, bool vectorize,
                                   Buffer& out) {
  Scope scope(cx);
  if (!in.onDevice() && d.B > 1) {
    const std::size_t C = d.C, tri = C * (C + 1) / 2;
    const std::size_t inPer = fromFeatures ? C * d.N : C * C, outPer = fromFeatures && vectorize ? tri : C * C;
    const int items = pipelineItems(cx, d.B, inPer * sizeof(Ti), outPer * sizeof(Ti));
    if (items < d.B && cx.staged(cx.stagingChunk)) return forwardPipelined<Ti, Ts>(cx, in, d, o, fromFeatures, vectorize, items, out);
  }
  return forwardLocked<Ti, Ts>(cx, in, d, o, fromFeatures, vectorize, out);
}

template <class Ti, class Ts> Buffer backwardImpl(DeviceContext& cx, const State& base, const Buffer& dOut) {
  Scope scope(cx);
  if (const auto* chunked = dynamic_cast<const ChunkedState*>(&base)) {
    if (chunked->cx != &cx)
      failType("the state was made on another device or backend; run backward where its forward ran (" + cx.name + " here)");
    return backwardChunked<Ti, Ts>(cx, *chunked, dOut);
  }
  return backwardLocked<Ti, Ts>(cx, base, dOut);
}

template <class F> auto dispatch2(DType ti, DType ts, F&& f) {
  return dispatchDType(ti, [&](auto i) { return dispatchDType(ts, [&](auto s) { return f(i, s); }); });
}

// ---- the backend ----------------------------------------------------------------------------------------

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : cx_(new DeviceContext(device)) {}
  const char* name() const override { return cx_->name.c_str(); }
  // Channels-last features are transposed on the device (channelsFirst above), not by the addon.
  bool channelsLastFeatures() const override { return true; }

  // For the addon's memoryStats() / emptyCache(): this device's cache, in use and parked.
  DeviceMemoryStats memory() const { return {cx_->device, cx_->cache.liveBytes(), cx_->cache.parkedBytes()}; }
  std::size_t emptyCache() {
    Scope scope(*cx_);
    const std::size_t parked = cx_->cache.parkedBytes();
    cx_->cache.trim(true);
    return parked;
  }

  Buffer toDevice(const Buffer& host) override {
    return dispatchDType(host.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      DeviceArray<T> d = upload<T>(cx, host);
      cx.sync();  // the copy is done when the tensor is handed out
      return Buffer::onDevice(host.dtype(), host.size(), std::make_shared<CudaStorage>(cx, std::move(d)));
    });
  }

  Buffer toHost(const Buffer& device) override {
    DeviceContext& cx = *cx_;
    Scope scope(cx);
    Buffer out(device.dtype(), device.size());
    cx.toHost(out.raw(), deviceData(cx, device), out.byteSize());
    return out;
  }

  long firstNonFiniteItem(const Buffer& device, std::size_t items) override {
    return dispatchDType(device.dtype(), [&](auto tag) -> long {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      if (!items) return -1;
      ItemChecks checks(cx, static_cast<int>(items));
      K::flagNonFinite<T>(static_cast<const T*>(deviceData(cx, device)), device.size() / items, static_cast<int>(items), checks.data(),
                          kBadMatrix, cx.stream);
      return checks.fetch(cx);
    });
  }

  Buffer covpool(const Buffer& x, Dims d) override {
    return dispatchDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      const int B = d.B, C = d.C, N = d.N;
      const std::size_t mm = static_cast<std::size_t>(B) * C * C;
      ItemChecks checks(cx, B);
      DeviceArray<T> dx = upload<T>(cx, x);
      K::flagNonFinite<T>(dx.data(), static_cast<std::size_t>(C) * N, B, checks.data(), kBadFeatures, cx.stream);
      if (d.channelsLast) dx = channelsFirst(cx, std::move(dx), B, C, N);
      DeviceArray<T> xc = cx.alloc<T>(x.size()), a = cx.alloc<T>(mm);
      K::centerRows<T>(dx.data(), xc.data(), static_cast<std::size_t>(B) * C, N, cx.stream);
      covarianceForward<T>(cx, xc.data(), a.data(), B, C, N);
      K::flagNonFinite<T>(a.data(), static_cast<std::size_t>(C) * C, B, checks.data(), kBadMatrix, cx.stream);
      Buffer out = result<T>(cx, std::move(a), mm, x.onDevice());
      const int bad = checks.fetch(cx);
      if (bad >= 0) {
        if (checks.firstCode(bad, {kBadFeatures, kBadMatrix}) == kBadFeatures) failItem(bad, "the features contain NaN or Infinity");
        failItem(bad, std::string("the covariance is not finite in ") + dtypeName(x.dtype()) + kOverflowAdvice);
      }
      return out;
    });
  }

  Buffer covpoolBackward(const Buffer& x, const Buffer& dA, Dims d) override {
    return dispatchDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      const int B = d.B, C = d.C, N = d.N;
      const std::size_t m = static_cast<std::size_t>(C) * C;
      if (x.onDevice() != dA.onDevice()) fail("the features and the covariance gradient must both be on " + cx.name + " or both on the host");
      ItemChecks checks(cx, B);
      DeviceArray<T> dx = upload<T>(cx, x), g = upload<T>(cx, dA);
      K::flagNonFinite<T>(g.data(), m, B, checks.data(), kBadGradIn, cx.stream);
      K::flagNonFinite<T>(dx.data(), static_cast<std::size_t>(C) * N, B, checks.data(), kBadFeatures, cx.stream);
      if (d.channelsLast) dx = channelsFirst(cx, std::move(dx), B, C, N);
      DeviceArray<T> xc = cx.alloc<T>(x.size()), out = cx.alloc<T>(x.size());
      K::centerRows<T>(dx.data(), xc.data(), static_cast<std::size_t>(B) * C, N, cx.stream);
      covarianceBackward<T>(cx, xc.data(), g.data(), out.data(), B, C, N);
      if (d.channelsLast) out = channelsLast(cx, std::move(out), B, C, N);
      K::flagNonFinite<T>(out.data(), static_cast<std::size_t>(C) * N, B, checks.data(), kBadGradOut, cx.stream);
      Buffer grad = result<T>(cx, std::move(out), x.size(), x.onDevice());
      const int bad = checks.fetch(cx);
      if (bad >= 0) {
        const int code = checks.firstCode(bad, {kBadGradIn, kBadFeatures, kBadGradOut});
        if (code == kBadGradIn) failItem(bad, "the covariance gradient contains NaN or Infinity");
        if (code == kBadFeatures) failItem(bad, "the features contain NaN or Infinity");
        failItem(bad, std::string("the gradient w.r.t. the features is not finite in ") + dtypeName(x.dtype()) + kOverflowAdvice);
      }
      return grad;
    });
  }

  Buffer triuvec(const Buffer& s, int B, int C) override {
    return dispatchDType(s.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      const std::size_t m = static_cast<std::size_t>(C) * C, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
      ItemChecks checks(cx, B);
      DeviceArray<T> a = upload<T>(cx, s), y = cx.alloc<T>(static_cast<std::size_t>(B) * tri);
      K::flagNonFinite<T>(a.data(), m, B, checks.data(), kBadMatrix, cx.stream);
      K::packUpper<T>(a.data(), y.data(), B, C, cx.stream);
      Buffer out = result<T>(cx, std::move(y), static_cast<std::size_t>(B) * tri, s.onDevice());
      const int bad = checks.fetch(cx);
      if (bad >= 0) failItem(bad, "the matrix contains NaN or Infinity");
      return out;
    });
  }

  Buffer triuvecBackward(const Buffer& dy, int B, int C) override {
    return dispatchDType(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      const std::size_t m = static_cast<std::size_t>(C) * C, tri = static_cast<std::size_t>(C) * (C + 1) / 2;
      ItemChecks checks(cx, B);
      DeviceArray<T> y = upload<T>(cx, dy), a = cx.alloc<T>(static_cast<std::size_t>(B) * m);
      K::flagNonFinite<T>(y.data(), tri, B, checks.data(), kBadGradIn, cx.stream);
      K::unpackUpper<T>(y.data(), a.data(), B, C, cx.stream);
      Buffer out = result<T>(cx, std::move(a), static_cast<std::size_t>(B) * m, dy.onDevice());
      const int bad = checks.fetch(cx);
      if (bad >= 0) failItem(bad, "the gradient contains NaN or Infinity");
      return out;
    });
  }

  void eigh(const Buffer& a, int B, int C, Buffer& values, Buffer& vectors) override {
    dispatchDType(a.dtype(), [&](auto tag) {
      using T = decltype(tag);
      DeviceContext& cx = *cx_;
      Scope scope(cx);
      const std::size_t m = static_cast<std::size_t>(C) * C, mm = static_cast<std::size_t>(B) * m;
      ItemChecks checks(cx, B);
      DeviceArray<T> w = upload<T>(cx, a);
      DeviceArray<int> firstBad = cx.alloc<int>(B);
      K::flagNonFinite<T>(w.data(), m, B, checks.data(), kBadMatrix, cx.stream);
      K::fill<int>(firstBad.data(), INT_MAX, B, cx.stream);
      K::checkSymmetric<T>(w.data(), B, C, firstBad.data(), checks.data(), cx.stream);
      // The lowest failing item is reported (the CPU's rule): items before a bad one still get
      // their eigendecomposition, whose non-convergence comes first.
      const int bad = checks.fetch(cx);
      const int Bn = bad >= 0 ? bad : B;
      K::mirrorLower<T>(w.data(), Bn, C, cx.stream);  // the row-major lower triangle is the input (core/backend.h)
      DeviceArray<T> l = cx.alloc<T>(static_cast<std::size_t>(B) * C), v = cx.alloc<T>(mm);
      std::vector<int> info;
      const char* solverName = eigensolve<T>(cx, w.data(), l.data(), Bn, C, info);
      for (int b = 0; b < Bn; ++b)
        if (info[b] != 0)
          failItem(b, std::string("eigendecomposition did not converge (cuSOLVER ") + solverName + " info=" + std::to_string(info[b]) + ")");
      if (bad >= 0) {
        if (checks.firstCode(bad, {kBadMatrix, kAsymmetric}) == kBadMatrix) failItem(bad, "the matrix contains NaN or Infinity");
        int flat = 0;
        cx.toHost(&flat, firstBad.data() + bad, sizeof(int));
        cx.sync();
        failItem(bad, nonSymmetricMessage(cx, a, bad, C, flat));
      }
      K::transpose<T>(w.data(), v.data(), B, C, cx.stream);  // columns = eigenvectors (U)
      values = result<T>(cx, std::move(l), static_cast<std::size_t>(B) * C, a.onDevice());
      vectors = result<T>(cx, std::move(v), mm, a.onDevice());
      cx.sync();
      return 0;
    });
  }

  std::shared_ptr<State> sqrtm(const Buffer& a, int B, int C, const SqrtmOptions& o, Buffer& s) override {
    return dispatch2(a.dtype(), o.precision, [&](auto i, auto p) {
      return forwardImpl<decltype(i), decltype(p)>(*cx_, a, Dims{B, C, 0}, o, false, false, s);
    });
  }

  std::shared_ptr<State> layer(const Buffer& x, Dims d, const SqrtmOptions& o, bool vectorize, Buffer& y) override {
    return dispatch2(x.dtype(), o.precision, [&](auto i, auto p) {
      return forwardImpl<decltype(i), decltype(p)>(*cx_, x, d, o, true, vectorize, y);
    });
  }

  Buffer backward(const State& st, const Buffer& dOut) override {
    return dispatch2(st.dtype, st.options.precision, [&](auto i, auto p) {
      return backwardImpl<decltype(i), decltype(p)>(*cx_, st, dOut);
    });
  }

  Buffer coefficients(const Buffer& values, int B, int C, const SqrtmOptions& o, bool replace) override {
    if (!usesEigenForward(o.method) || o.method == Method::SVD_NEWTON)
      fail(std::string(methodName(o.method)) + " has no eigenbasis coefficient matrix (its backward is an iteration)");
    DeviceContext& cx = *cx_;
    Scope scope(cx);
    const std::size_t m = static_cast<std::size_t>(C) * C;
    PadeCoefficients pade;
    if (o.method == Method::SVD_PADE) pade = o.padeP.empty() ? geometricSeriesPade(o.degree) : PadeCoefficients{o.padeP, o.padeQ};
    DeviceArray<double> p = cx.alloc<double>(pade.p.size()), q = cx.alloc<double>(pade.q.size());
    cx.toDevice(p.data(), pade.p.data(), pade.p.size() * sizeof(double));
    cx.toDevice(q.data(), pade.q.data(), pade.q.size() * sizeof(double));
    const int L = static_cast<int>(pade.q.size()) - 1;
    const KParams k = makeKParams(o, p.data(), q.data(), L < 0 ? 0 : L, replace);
    ItemChecks checks(cx, B);
    DeviceArray<double> l = upload<double>(cx, values);
    K::flagNonFinite<double>(l.data(), C, B, checks.data(), kBadMatrix, cx.stream);
    DeviceArray<double> F = cx.alloc<double>(static_cast<std::size_t>(B) * m), stats = cx.alloc<double>(4 * static_cast<std::size_t>(B));
    K::coefficientMatrix<double>(k, l.data(), F.data(), stats.data(), B, C, cx.stream);
    Buffer out = result<double>(cx, std::move(F), static_cast<std::size_t>(B) * m, values.onDevice());
    const int bad = checks.fetch(cx);
    if (bad >= 0) failItem(bad, "the eigenvalues contain NaN or Infinity");
    return out;
  }

 private:
  DeviceContext* cx_;  // never deleted (see DeviceContext)
};

}  // namespace
}  // namespace covpool::cuda

namespace covpool {

int cudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver / no device: not an error for the caller, just zero devices
    return 0;
  }
  return n;
}

std::string cudaUnavailableReason() {
  int driver = 0, n = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  cudaGetLastError();
  return cuda::cudaUnavailableReason(driver, CUDART_VERSION, e == cudaSuccess ? "" : cudaGetErrorString(e), e == cudaSuccess ? n : 0);
}

namespace {
std::mutex backendsMutex;
std::vector<cuda::CudaBackend*> backends;  // by device; pointees intentionally never deleted
}  // namespace

std::vector<DeviceMemoryStats> cudaMemoryStats() {
  std::lock_guard<std::mutex> lock(backendsMutex);
  std::vector<DeviceMemoryStats> r;
  for (cuda::CudaBackend* b : backends)
    if (b) r.push_back(b->memory());
  return r;
}

std::size_t cudaEmptyCache() {
  std::lock_guard<std::mutex> lock(backendsMutex);
  std::size_t released = 0;
  for (cuda::CudaBackend* b : backends)
    if (b) released += b->emptyCache();
  return released;
}

Backend& cudaBackend(int device) {
  auto& mu = backendsMutex;
  const int count = cudaDeviceCount();
  if (count == 0) fail("device 'cuda:" + std::to_string(device) + "' was asked for, but " + cudaUnavailableReason());
  if (device < 0 || device >= count)
    failRange("device 'cuda:" + std::to_string(device) + "' does not exist: " + std::to_string(count) +
              " CUDA device(s) visible (cuda:0 to cuda:" + std::to_string(count - 1) + ")");
  std::lock_guard<std::mutex> lock(mu);
  if (backends.size() < static_cast<std::size_t>(count)) backends.resize(count, nullptr);
  if (!backends[device]) backends[device] = new cuda::CudaBackend(device);
  return *backends[device];
}

}  // namespace covpool
