// The emulated cuBLAS: exactly what native/cuda calls (handles, strided batched GEMM, batched LU
// factorization and solve), with the signatures of NVIDIA's cublas_v2.h. Arguments are checked as
// the cuBLAS documentation says the library does (CUBLAS_STATUS_INVALID_VALUE for a negative size,
// a leading dimension below the rows of the stored matrix, a negative batch count), every operand
// must lie inside live device memory, and the work runs with OpenBLAS/LAPACKE at the stream's
// next synchronization. Alpha and beta are read from the host when the call is made
// (CUBLAS_POINTER_MODE_HOST, the default); with beta = 0, C is not read (it may hold NaN).
#include <cblas.h>
#include <cublas_v2.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "libraries.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  int device = 0;
};

namespace {

using namespace cuemu;

std::mutex mu;
std::set<cublasHandle_t> handles;

bool alive(cublasHandle_t h) {
  std::lock_guard<std::mutex> lock(mu);
  return h && handles.count(h);
}

// The stream a call on h goes to, or nullptr (reported) when h or its stream is not alive.
StreamState* streamOf(cublasHandle_t h, const char* call) {
  StreamState* s = resolveStream(h->stream, call);
  if (!s) violation("%s: the handle's stream %p is not a live stream", call, static_cast<void*>(h->stream));
  return s;
}

bool validOp(cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; }
CBLAS_TRANSPOSE cblasOp(cublasOperation_t t) { return t == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float* A, int lda, const float* B, int ldb,
          float beta, float* C, int ldc) {
  cblas_sgemm(CblasColMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* A, int lda, const double* B, int ldb,
          double beta, double* C, int ldc) {
  cblas_dgemm(CblasColMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

// CUBLAS_TF32_TENSOR_OP_MATH lets cuBLAS round float inputs to TF32 (10 mantissa bits): the
// emulator then does, so a result that only holds in full float32 does not pass here by luck.
float toTf32(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}

template <class T>
cublasStatus_t gemmStridedBatched(const char* call, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, long long m,
                                  long long n, long long k, const T* alphaP, const T* A, long long lda, long long sA, const T* B,
                                  long long ldb, long long sB, const T* betaP, T* C, long long ldc, long long sC, long long batch) {
  if (!alive(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const long long rowsA = ta == CUBLAS_OP_N ? m : k, colsA = ta == CUBLAS_OP_N ? k : m;
  const long long rowsB = tb == CUBLAS_OP_N ? k : n, colsB = tb == CUBLAS_OP_N ? n : k;
  if (!validOp(ta) || !validOp(tb) || m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1LL, rowsA) ||
      ldb < std::max(1LL, rowsB) || ldc < std::max(1LL, m) || !alphaP || !betaP)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const T alpha = *alphaP, beta = *betaP;  // host pointer mode: read now
  const bool readsA = k > 0 && alpha != T(0);
  if ((readsA && (!requireMatrices(call, "A", A, rowsA, colsA, lda, sA, batch) || !requireMatrices(call, "B", B, rowsB, colsB, ldb, sB, batch))) ||
      !requireMatrices(call, "C", C, m, n, ldc, sC, batch))
    return CUBLAS_STATUS_INVALID_VALUE;
  const std::size_t extA = static_cast<std::size_t>((colsA - 1) * lda + rowsA) * sizeof(T);
  const std::size_t extB = static_cast<std::size_t>((colsB - 1) * ldb + rowsB) * sizeof(T);
  const std::size_t extC = static_cast<std::size_t>((n - 1) * ldc + m) * sizeof(T);
  for (long long b = 0; readsA && b < batch; ++b)
    if (overlaps(C + b * sC, extC, A + b * sA, extA) || overlaps(C + b * sC, extC, B + b * sB, extB)) {
      violation("%s: batch item %lld: C overlaps A or B (the result of an in-place GEMM is undefined)", call, b);
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  StreamState* s = streamOf(h, call);
  if (!s) return CUBLAS_STATUS_EXECUTION_FAILED;
  const bool tf32 = std::is_same_v<T, float> && (h->math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH;
  ++stats().libraryCalls;
  enqueue(s, call, [=] {
    std::vector<T> a32, b32;
    for (long long b = 0; b < batch; ++b) {
      T* c = C + b * sC;
      if (beta == T(0))
        for (long long j = 0; j < n; ++j) std::fill(c + j * ldc, c + j * ldc + m, T(0));
      if (!readsA) {
        if (beta != T(0) && beta != T(1))
          for (long long j = 0; j < n; ++j)
            for (long long i = 0; i < m; ++i) c[j * ldc + i] *= beta;
        continue;
      }
      const T* a = A + b * sA;
      const T* bb = B + b * sB;
      if (tf32) {
        a32.assign(a, a + extA / sizeof(T));
        b32.assign(bb, bb + extB / sizeof(T));
        for (auto& v : a32) v = static_cast<T>(toTf32(static_cast<float>(v)));
        for (auto& v : b32) v = static_cast<T>(toTf32(static_cast<float>(v)));
        a = a32.data();
        bb = b32.data();
      }
      gemm(cblasOp(ta), cblasOp(tb), static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), bb,
           static_cast<int>(ldb), beta == T(0) ? T(0) : beta, c, static_cast<int>(ldc));
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

lapack_int getrf(lapack_int n, float* a, lapack_int lda, lapack_int* ipiv) { return LAPACKE_sgetrf_work(LAPACK_COL_MAJOR, n, n, a, lda, ipiv); }
lapack_int getrf(lapack_int n, double* a, lapack_int lda, lapack_int* ipiv) { return LAPACKE_dgetrf_work(LAPACK_COL_MAJOR, n, n, a, lda, ipiv); }
lapack_int getrs(char t, lapack_int n, lapack_int nrhs, const float* a, lapack_int lda, const lapack_int* ipiv, float* b, lapack_int ldb) {
  return LAPACKE_sgetrs_work(LAPACK_COL_MAJOR, t, n, nrhs, a, lda, ipiv, b, ldb);
}
lapack_int getrs(char t, lapack_int n, lapack_int nrhs, const double* a, lapack_int lda, const lapack_int* ipiv, double* b, lapack_int ldb) {
  return LAPACKE_dgetrs_work(LAPACK_COL_MAJOR, t, n, nrhs, a, lda, ipiv, b, ldb);
}

// Reads the device array of batch device pointers (when the work runs: a kernel may have written
// it) and checks each matrix; false after reporting.
template <class T> bool loadPointers(const char* call, const char* name, T* const* arr, int n, int lda, int batch, std::vector<T*>& out) {
  out.assign(arr, arr + batch);
  for (int b = 0; b < batch; ++b)
    if (!requireMatrices(call, name, out[b], n, n, lda, 0, 1)) {
      failExecution(cudaErrorIllegalAddress, std::string(call) + ": " + name + "[" + std::to_string(b) + "] is not a valid matrix");
      return false;
    }
  return true;
}

template <class T>
cublasStatus_t getrfBatched(const char* call, cublasHandle_t h, int n, T* const A[], int lda, int* P, int* info, int batch) {
  if (!alive(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (n < 0 || lda < std::max(1, n) || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (batch == 0) return CUBLAS_STATUS_SUCCESS;
  if (!P) {
    violation("%s: pivoting disabled (PivotArray = NULL) is not emulated", call);
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (!requireRange(A, sizeof(T*) * batch, MemKind::Device, "getrfBatched: Aarray (device array of device pointers)") ||
      !requireRange(P, sizeof(int) * n * batch, MemKind::Device, "getrfBatched: PivotArray") ||
      !requireRange(info, sizeof(int) * batch, MemKind::Device, "getrfBatched: infoArray"))
    return CUBLAS_STATUS_INVALID_VALUE;
  StreamState* s = streamOf(h, call);
  if (!s) return CUBLAS_STATUS_EXECUTION_FAILED;
  ++stats().libraryCalls;
  const int singular = faultSingularItem();
  enqueue(s, call, [=] {
    std::vector<T*> a;
    if (!loadPointers(call, "Aarray", A, n, lda, batch, a)) return;
    std::vector<lapack_int> piv(std::max(n, 1));
    for (int b = 0; b < batch; ++b) {
      const lapack_int r = getrf(n, a[b], lda, piv.data());
      for (int i = 0; i < n; ++i) P[static_cast<std::size_t>(b) * n + i] = static_cast<int>(piv[i]);
      info[b] = static_cast<int>(r);
      if (b == singular) {
        std::fprintf(stderr, "covpool CUDA emulator: injected singular matrix, %s item %d\n", call, b);
        info[b] = 1;  // U(1,1) is exactly zero
      }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

template <class T>
cublasStatus_t getrsBatched(const char* call, cublasHandle_t h, cublasOperation_t trans, int n, int nrhs, const T* const A[], int lda,
                            const int* piv, T* const Bm[], int ldb, int* info, int batch) {
  if (!alive(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!info) return CUBLAS_STATUS_INVALID_VALUE;
  Block blk;
  if (findBlock(info, &blk) && blk.kind == MemKind::Device) {
    violation("%s: info (%p) is device memory; getrsBatched writes its argument check to a host int", call, static_cast<void*>(info));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  // info = -i: the i-th argument (after the handle) is invalid.
  int bad = 0;
  if (!validOp(trans)) bad = 1;
  else if (n < 0) bad = 2;
  else if (nrhs < 0) bad = 3;
  else if (lda < std::max(1, n)) bad = 5;
  else if (ldb < std::max(1, n)) bad = 8;
  else if (batch < 0) bad = 10;
  *info = -bad;
  if (bad) return CUBLAS_STATUS_INVALID_VALUE;
  if (batch == 0 || n == 0 || nrhs == 0) return CUBLAS_STATUS_SUCCESS;
  if (!requireRange(A, sizeof(T*) * batch, MemKind::Device, "getrsBatched: Aarray") ||
      !requireRange(Bm, sizeof(T*) * batch, MemKind::Device, "getrsBatched: Barray") ||
      !requireRange(piv, sizeof(int) * n * batch, MemKind::Device, "getrsBatched: devIpiv"))
    return CUBLAS_STATUS_INVALID_VALUE;
  StreamState* s = streamOf(h, call);
  if (!s) return CUBLAS_STATUS_EXECUTION_FAILED;
  ++stats().libraryCalls;
  enqueue(s, call, [=] {
    std::vector<const T*> a(A, A + batch);
    std::vector<T*> b;
    for (int i = 0; i < batch; ++i)
      if (!requireMatrices(call, "Aarray[i]", a[i], n, n, lda, 0, 1)) {
        failExecution(cudaErrorIllegalAddress, std::string(call) + ": Aarray[" + std::to_string(i) + "] is not a valid matrix");
        return;
      }
    b.assign(Bm, Bm + batch);
    for (int i = 0; i < batch; ++i)
      if (!requireMatrices(call, "Barray[i]", b[i], n, nrhs, ldb, 0, 1)) {
        failExecution(cudaErrorIllegalAddress, std::string(call) + ": Barray[" + std::to_string(i) + "] is not a valid matrix");
        return;
      }
    std::vector<lapack_int> p(n);
    for (int i = 0; i < batch; ++i) {
      for (int r = 0; r < n; ++r) p[r] = piv[static_cast<std::size_t>(i) * n + r];
      getrs(trans == CUBLAS_OP_N ? 'N' : 'T', n, nrhs, a[i], lda, p.data(), b[i], ldb);
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
  if (!h) return CUBLAS_STATUS_INVALID_VALUE;
  if (stickyError() != cudaSuccess) return CUBLAS_STATUS_NOT_INITIALIZED;
  auto* c = new cublasContext;
  c->device = currentDevice();
  std::lock_guard<std::mutex> lock(mu);
  handles.insert(c);
  *h = c;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
  std::lock_guard<std::mutex> lock(mu);
  if (!h || !handles.erase(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  if (!alive(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!resolveStream(s, "cublasSetStream")) {
    violation("cublasSetStream: %p is not a live stream", static_cast<void*>(s));
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!alive(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = mode & 0xf, flags = mode & ~0xf;
  if ((base != CUBLAS_DEFAULT_MATH && base != CUBLAS_TENSOR_OP_MATH && base != CUBLAS_PEDANTIC_MATH && base != CUBLAS_TF32_TENSOR_OP_MATH) ||
      (flags & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))
    return CUBLAS_STATUS_INVALID_VALUE;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "unknown cuBLAS status";
  }
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* alpha,
                                         const float* A, int lda, long long sA, const float* B, int ldb, long long sB, const float* beta,
                                         float* C, int ldc, long long sC, int batch) {
  return gemmStridedBatched("cublasSgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                         const double* alpha, const double* A, int lda, long long sA, const double* B, int ldb, long long sB,
                                         const double* beta, double* C, int ldc, long long sC, int batch) {
  return gemmStridedBatched("cublasDgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}

cublasStatus_t cublasSgetrfBatched(cublasHandle_t h, int n, float* const A[], int lda, int* P, int* info, int batch) {
  return getrfBatched("cublasSgetrfBatched", h, n, A, lda, P, info, batch);
}

cublasStatus_t cublasDgetrfBatched(cublasHandle_t h, int n, double* const A[], int lda, int* P, int* info, int batch) {
  return getrfBatched("cublasDgetrfBatched", h, n, A, lda, P, info, batch);
}

cublasStatus_t cublasSgetrsBatched(cublasHandle_t h, cublasOperation_t trans, int n, int nrhs, const float* const A[], int lda, const int* piv,
                                   float* const B[], int ldb, int* info, int batch) {
  return getrsBatched("cublasSgetrsBatched", h, trans, n, nrhs, A, lda, piv, B, ldb, info, batch);
}

cublasStatus_t cublasDgetrsBatched(cublasHandle_t h, cublasOperation_t trans, int n, int nrhs, const double* const A[], int lda,
                                   const int* piv, double* const B[], int ldb, int* info, int batch) {
  return getrsBatched("cublasDgetrsBatched", h, trans, n, nrhs, A, lda, piv, B, ldb, info, batch);
}
