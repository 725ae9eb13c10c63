// Host-side decisions of the CUDA backend that need no GPU to get right, kept free of CUDA headers
// so that native/cuda/test/cuda_vs_cpu.cpp checks them in its self-check mode (CI, no GPU):
// how a batch is split into library calls and chunks, and how an unusable CUDA setup is described.
#pragma once
#include <algorithm>
#include <climits>
#include <cstddef>
#include <string>

namespace covpool::cuda {

// cusolverDnXsyevBatched requires n * lda * batchSize <= INT32_MAX (cuSOLVER documentation,
// "cusolverDnXsyevBatched"): the most n x n matrices one call may take (at least 1).
inline int xsyevBatchedItemsPerCall(int n) {
  const long long perItem = static_cast<long long>(n) * n;
  return static_cast<int>(std::max<long long>(1, std::min<long long>(INT_MAX, INT_MAX / std::max<long long>(perItem, 1))));
}

// Items per chunk when each item needs `bytesPerItem` of scratch and a chunk may use `budgetBytes`
// (at least 1 item, at most B).
inline int itemsPerChunk(std::size_t bytesPerItem, std::size_t budgetBytes, int B) {
  if (B <= 0) return 0;
  const std::size_t k = bytesPerItem ? budgetBytes / bytesPerItem : static_cast<std::size_t>(B);
  return static_cast<int>(std::max<std::size_t>(1, std::min<std::size_t>(k, static_cast<std::size_t>(B))));
}

// svd-newton's backward re-runs Newton-Schulz with a tape of 3 * iterations matrices per item
// (plus 3 work matrices): it runs in chunks of at most this many bytes of tape and work
// (COVPOOL_CUDA_CHUNK_MB overrides; the chunks give the same result as one call).
constexpr std::size_t kDefaultChunkBytes = std::size_t(512) << 20;

// "CUDA 13.0" from a version number as the runtime API reports it (1000 * major + 10 * minor).
inline std::string cudaVersionString(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Why no CUDA device can be used, or "" when `count` devices can. driverVersion: what
// cudaDriverGetVersion reported (0: no driver library found); runtimeVersion: the CUDA runtime
// this binary was built with; countError: the error text of cudaGetDeviceCount ("" on success).
inline std::string cudaUnavailableReason(int driverVersion, int runtimeVersion, const std::string& countError, int count) {
  if (driverVersion <= 0)
    return "no NVIDIA driver was found (libcuda.so.1 is not installed or not on the library path)";
  if (driverVersion < runtimeVersion)
    return "the NVIDIA driver supports CUDA " + cudaVersionString(driverVersion) + ", but this covpool binary needs a driver for CUDA " +
           cudaVersionString(runtimeVersion) + " or newer (update the NVIDIA driver)";
  if (!countError.empty()) return "the CUDA runtime found no usable device (" + countError + ")";
  if (count <= 0) return "no CUDA device is visible (check CUDA_VISIBLE_DEVICES)";
  return "";
}

}  // namespace covpool::cuda
