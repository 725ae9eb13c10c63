// The emulated cuSOLVER: exactly what native/cuda calls (handles, params, syevjInfo, the batched
// symmetric eigensolvers syevjBatched and XsyevBatched with their workspace queries), with the
// signatures of NVIDIA's cusolverDn.h and its documented semantics: each matrix column-major,
// A_k(i, j) = A[i + lda * j + lda * n * k]; only the `uplo` triangle is read; W ascending,
// W_k(j) = W[j + n * k]; with jobz = VECTOR, A holds the orthonormal eigenvectors; info one int per
// matrix in device memory (syevjBatched: n + 1 when an item did not converge; XsyevBatched: > 0).
// Stricter than the library: workspaces are filled with NaN before use, the host workspace of
// XsyevBatched is touched only when the work runs (it must stay alive until the sync), the sizes
// it asks for grow with the batch (so a workspace sized for a smaller batch is caught), and each
// eigenvector's sign is flipped at random (so no caller depends on one library's convention).
// The eigendecomposition itself is LAPACK's ?syevd in the same precision.
#include <cusolverDn.h>
#include <lapacke.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "libraries.h"

struct cusolverDnContext {
  cudaStream_t stream = nullptr;
};
struct cusolverDnParams {
  int unused = 0;
};
struct syevjInfo {
  int unused = 0;
};

namespace {

using namespace cuemu;

std::mutex mu;
std::set<const void*> objects;  // live handles, params and syevjInfo objects
unsigned long long calls = 0;

bool alive(const void* p) {
  std::lock_guard<std::mutex> lock(mu);
  return p && objects.count(p);
}
template <class T> cusolverStatus_t create(T** out) {
  if (!out) return CUSOLVER_STATUS_INVALID_VALUE;
  T* p = new T;
  std::lock_guard<std::mutex> lock(mu);
  objects.insert(p);
  *out = p;
  return CUSOLVER_STATUS_SUCCESS;
}
template <class T> cusolverStatus_t destroy(T* p) {
  std::lock_guard<std::mutex> lock(mu);
  if (!p || !objects.erase(p)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  delete p;
  return CUSOLVER_STATUS_SUCCESS;
}

lapack_int syevd(char jobz, char uplo, lapack_int n, float* a, lapack_int lda, float* w) {
  return LAPACKE_ssyevd(LAPACK_COL_MAJOR, jobz, uplo, n, a, lda, w);
}
lapack_int syevd(char jobz, char uplo, lapack_int n, double* a, lapack_int lda, double* w) {
  return LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz, uplo, n, a, lda, w);
}

// Solves matrices [0, batch) of A (lda, column-major) into A and W; info per item on the device.
// `noConvergence`: the info value that reports an item as not converged (fault injection).
template <class T>
void solveBatch(const char* call, cusolverEigMode_t jobz, cublasFillMode_t uplo, long long n, T* A, long long lda, T* W, int* info,
                long long batch, int noConvergence, unsigned long long serial, int faultItem) {
  std::vector<T> a(static_cast<std::size_t>(n * n)), w(static_cast<std::size_t>(n));
  const char u = uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U';
  for (long long k = 0; k < batch; ++k) {
    T* ak = A + k * lda * n;
    T* wk = W + k * n;
    // Only the `uplo` triangle is the input: the other one goes in as NaN, so nothing depends on it.
    for (long long j = 0; j < n; ++j)
      for (long long i = 0; i < n; ++i) {
        const bool inTriangle = u == 'L' ? i >= j : i <= j;
        a[j * n + i] = inTriangle ? ak[j * lda + i] : static_cast<T>(NAN);
      }
    lapack_int r = syevd(jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N', u, static_cast<lapack_int>(n), a.data(), static_cast<lapack_int>(n), w.data());
    if (r != 0) r = noConvergence;
    if (k == faultItem) {
      std::fprintf(stderr, "covpool CUDA emulator: injected non-convergence, %s item %lld\n", call, k);
      r = noConvergence;
    }
    info[k] = static_cast<int>(r);
    if (r != 0) {  // results of an unconverged item are not to be used
      for (long long j = 0; j < n; ++j) poison(ak + j * lda, sizeof(T) * n);
      poison(wk, sizeof(T) * n);
      continue;
    }
    for (long long j = 0; j < n; ++j) {
      wk[j] = w[j];
      const T sign = jobz == CUSOLVER_EIG_MODE_VECTOR && flipSign(serial, k, j) ? T(-1) : T(1);
      for (long long i = 0; i < n; ++i) ak[j * lda + i] = jobz == CUSOLVER_EIG_MODE_VECTOR ? sign * a[j * n + i] : static_cast<T>(NAN);
    }
  }
}

// The stream an eigensolver call on h goes to (null, reported, when it is not alive), with the
// call counted and numbered (the number seeds its eigenvectors' random signs).
StreamState* beginCall(cusolverDnHandle_t h, const char* call, unsigned long long& serial) {
  StreamState* s = resolveStream(h->stream, call);
  if (!s) {
    violation("%s: the handle's stream %p is not a live stream", call, static_cast<void*>(h->stream));
    return nullptr;
  }
  ++stats().libraryCalls;
  std::lock_guard<std::mutex> lock(mu);
  serial = ++calls;
  return s;
}

bool validMode(cusolverEigMode_t jobz) { return jobz == CUSOLVER_EIG_MODE_NOVECTOR || jobz == CUSOLVER_EIG_MODE_VECTOR; }
bool validFill(cublasFillMode_t uplo) { return uplo == CUBLAS_FILL_MODE_LOWER || uplo == CUBLAS_FILL_MODE_UPPER; }

// ---- syevjBatched (n <= 32) ----------------------------------------------------------------------------
// Workspace in elements, growing with the batch.
long long syevjWork(long long n, long long batch) { return batch * (2 * n * n + 8); }

cusolverStatus_t syevjArgs(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, int lda, syevjInfo_t params, int batch) {
  if (!alive(h) || !alive(params)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  // The batched Jacobi solver is documented for n <= 32; it is only ever called that way here.
  if (!validMode(jobz) || !validFill(uplo) || n < 0 || n > 32 || lda < std::max(1, n) || batch < 0) return CUSOLVER_STATUS_INVALID_VALUE;
  return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t syevjBatched(const char* call, cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, T* A, int lda, T* W,
                              T* work, int lwork, int* info, syevjInfo_t params, int batch) {
  if (cusolverStatus_t st = syevjArgs(h, jobz, uplo, n, lda, params, batch); st != CUSOLVER_STATUS_SUCCESS) return st;
  if (lwork < syevjWork(n, batch)) {
    violation("%s: lwork %d is smaller than the %lld elements the _bufferSize query returns for n = %d, batch %d", call, lwork,
              syevjWork(n, batch), n, batch);
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  if (batch == 0) return CUSOLVER_STATUS_SUCCESS;
  if (!requireMatrices(call, "A", A, n, n, lda, static_cast<long long>(lda) * n, batch) ||
      !requireRange(W, sizeof(T) * n * batch, MemKind::Device, "syevjBatched: W") ||
      !requireRange(work, sizeof(T) * lwork, MemKind::Device, "syevjBatched: work") ||
      !requireRange(info, sizeof(int) * batch, MemKind::Device, "syevjBatched: info"))
    return CUSOLVER_STATUS_INVALID_VALUE;
  unsigned long long serial;
  StreamState* s = beginCall(h, call, serial);
  if (!s) return CUSOLVER_STATUS_EXECUTION_FAILED;
  const int faultItem = faultEigenItem();
  enqueue(s, call, [=] {
    poison(work, sizeof(T) * lwork);
    solveBatch<T>(call, jobz, uplo, n, A, lda, W, info, batch, n + 1, serial, faultItem);
  });
  return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
cusolverStatus_t syevjBatchedBufferSize(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, int lda, int* lwork,
                                        syevjInfo_t params, int batch) {
  if (cusolverStatus_t st = syevjArgs(h, jobz, uplo, n, lda, params, batch); st != CUSOLVER_STATUS_SUCCESS) return st;
  if (!lwork) return CUSOLVER_STATUS_INVALID_VALUE;
  const long long need = std::max(1LL, syevjWork(n, batch));
  if (need > INT_MAX) return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = static_cast<int>(need);
  return CUSOLVER_STATUS_SUCCESS;
}

// ---- XsyevBatched (64-bit API) -------------------------------------------------------------------------
std::size_t elementSize(cudaDataType t) { return t == CUDA_R_32F ? 4 : 8; }
std::size_t xsyevDeviceBytes(long long n, long long batch, cudaDataType t) { return static_cast<std::size_t>(batch * (n * n + 16)) * elementSize(t); }
std::size_t xsyevHostBytes(long long n, long long batch) { return static_cast<std::size_t>(batch * (n + 8)) * 8; }

cusolverStatus_t xsyevArgs(cusolverDnHandle_t h, cusolverDnParams_t params, cusolverEigMode_t jobz, cublasFillMode_t uplo, long long n,
                           cudaDataType ta, long long lda, cudaDataType tw, cudaDataType tc, long long batch) {
  if (!alive(h) || !alive(params)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!validMode(jobz) || !validFill(uplo) || n < 0 || lda < std::max(1LL, n) || batch < 0) return CUSOLVER_STATUS_INVALID_VALUE;
  // Real types: A, W and the compute type all float or all double.
  if (!((ta == CUDA_R_32F && tw == CUDA_R_32F && tc == CUDA_R_32F) || (ta == CUDA_R_64F && tw == CUDA_R_64F && tc == CUDA_R_64F)))
    return CUSOLVER_STATUS_NOT_SUPPORTED;
  // "The problem size is limited by n * lda * batchSize <= INT32_MAX" (cuSOLVER documentation).
  if (n * lda * batch > INT_MAX) {
    violation("cusolverDnXsyevBatched: n * lda * batchSize = %lld exceeds INT32_MAX", n * lda * batch);
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  return CUSOLVER_STATUS_SUCCESS;
}

template <class T>
void xsyevEnqueue(StreamState* s, cusolverEigMode_t jobz, cublasFillMode_t uplo, long long n, void* A, long long lda, void* W, void* dWork,
                  std::size_t dBytes, void* hWork, std::size_t hBytes, int* info, long long batch, unsigned long long serial) {
  const int faultItem = faultEigenItem();
  enqueue(s, "cusolverDnXsyevBatched", [=] {
    poison(dWork, dBytes);
    poison(hWork, hBytes);
    solveBatch<T>("cusolverDnXsyevBatched", jobz, uplo, n, static_cast<T*>(A), lda, static_cast<T*>(W), info, batch, 1, serial, faultItem);
  });
}

}  // namespace

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* h) {
  if (stickyError() != cudaSuccess) return CUSOLVER_STATUS_NOT_INITIALIZED;
  return create(h);
}
cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h) { return destroy(h); }
cusolverStatus_t cusolverDnCreateParams(cusolverDnParams_t* p) { return create(p); }
cusolverStatus_t cusolverDnDestroyParams(cusolverDnParams_t p) { return destroy(p); }
cusolverStatus_t cusolverDnCreateSyevjInfo(syevjInfo_t* p) { return create(p); }
cusolverStatus_t cusolverDnDestroySyevjInfo(syevjInfo_t p) { return destroy(p); }

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t s) {
  if (!alive(h)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!resolveStream(s, "cusolverDnSetStream")) {
    violation("cusolverDnSetStream: %p is not a live stream", static_cast<void*>(s));
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  h->stream = s;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSsyevjBatched_bufferSize(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, const float*,
                                                    int lda, const float*, int* lwork, syevjInfo_t params, int batch) {
  return syevjBatchedBufferSize<float>(h, jobz, uplo, n, lda, lwork, params, batch);
}
cusolverStatus_t cusolverDnDsyevjBatched_bufferSize(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, const double*,
                                                    int lda, const double*, int* lwork, syevjInfo_t params, int batch) {
  return syevjBatchedBufferSize<double>(h, jobz, uplo, n, lda, lwork, params, batch);
}
cusolverStatus_t cusolverDnSsyevjBatched(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, float* A, int lda, float* W,
                                         float* work, int lwork, int* info, syevjInfo_t params, int batch) {
  return syevjBatched("cusolverDnSsyevjBatched", h, jobz, uplo, n, A, lda, W, work, lwork, info, params, batch);
}
cusolverStatus_t cusolverDnDsyevjBatched(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n, double* A, int lda,
                                         double* W, double* work, int lwork, int* info, syevjInfo_t params, int batch) {
  return syevjBatched("cusolverDnDsyevjBatched", h, jobz, uplo, n, A, lda, W, work, lwork, info, params, batch);
}

cusolverStatus_t cusolverDnXsyevBatched_bufferSize(cusolverDnHandle_t h, cusolverDnParams_t params, cusolverEigMode_t jobz, cublasFillMode_t uplo,
                                                   int64_t n, cudaDataType ta, const void*, int64_t lda, cudaDataType tw, const void*,
                                                   cudaDataType tc, size_t* dBytes, size_t* hBytes, int64_t batch) {
  if (cusolverStatus_t st = xsyevArgs(h, params, jobz, uplo, n, ta, lda, tw, tc, batch); st != CUSOLVER_STATUS_SUCCESS) return st;
  if (!dBytes || !hBytes) return CUSOLVER_STATUS_INVALID_VALUE;
  *dBytes = xsyevDeviceBytes(n, batch, ta);
  *hBytes = xsyevHostBytes(n, batch);
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnXsyevBatched(cusolverDnHandle_t h, cusolverDnParams_t params, cusolverEigMode_t jobz, cublasFillMode_t uplo, int64_t n,
                                        cudaDataType ta, void* A, int64_t lda, cudaDataType tw, void* W, cudaDataType tc, void* dWork,
                                        size_t dBytes, void* hWork, size_t hBytes, int* info, int64_t batch) {
  const char* call = "cusolverDnXsyevBatched";
  if (cusolverStatus_t st = xsyevArgs(h, params, jobz, uplo, n, ta, lda, tw, tc, batch); st != CUSOLVER_STATUS_SUCCESS) return st;
  if (dBytes < xsyevDeviceBytes(n, batch, ta) || hBytes < xsyevHostBytes(n, batch)) {
    violation("%s: workspaces of %zu (device) / %zu (host) bytes are smaller than the %zu / %zu the _bufferSize query returns for n = %lld, "
              "batch %lld",
              call, dBytes, hBytes, xsyevDeviceBytes(n, batch, ta), xsyevHostBytes(n, batch), static_cast<long long>(n),
              static_cast<long long>(batch));
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  if (batch == 0) return CUSOLVER_STATUS_SUCCESS;
  Block b;
  if (!hWork || (findBlock(hWork, &b) && b.kind == MemKind::Device)) {
    violation("%s: bufferOnHost %p is not host memory", call, hWork);
    return CUSOLVER_STATUS_INVALID_VALUE;
  }
  const std::size_t es = elementSize(ta);
  const bool ok = (ta == CUDA_R_32F ? requireMatrices(call, "A", static_cast<const float*>(A), n, n, lda, lda * n, batch)
                                    : requireMatrices(call, "A", static_cast<const double*>(A), n, n, lda, lda * n, batch)) &&
                  requireRange(W, es * n * batch, MemKind::Device, "XsyevBatched: W") &&
                  requireRange(dWork, dBytes, MemKind::Device, "XsyevBatched: bufferOnDevice") &&
                  requireRange(info, sizeof(int) * batch, MemKind::Device, "XsyevBatched: info");
  if (!ok) return CUSOLVER_STATUS_INVALID_VALUE;
  unsigned long long serial;
  StreamState* s = beginCall(h, call, serial);
  if (!s) return CUSOLVER_STATUS_EXECUTION_FAILED;
  if (ta == CUDA_R_32F) xsyevEnqueue<float>(s, jobz, uplo, n, A, lda, W, dWork, dBytes, hWork, hBytes, info, batch, serial);
  else xsyevEnqueue<double>(s, jobz, uplo, n, A, lda, W, dWork, dBytes, hWork, hBytes, info, batch, serial);
  return CUSOLVER_STATUS_SUCCESS;
}
