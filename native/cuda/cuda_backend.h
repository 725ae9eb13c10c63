// Entry points of the CUDA backend, for the addon's device selection. Includes no CUDA header, so
// code that picks a backend compiles without the toolkit's include paths; it exists only in builds
// with COVPOOL_WITH_CUDA (CMakeLists.txt defines it when the toolkit with cuSOLVER and cuBLAS is
// found).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "../core/backend.h"

namespace covpool {

// Number of CUDA devices usable now (0 when there is no driver or no GPU; never throws).
int cudaDeviceCount();
// Why no CUDA device can be used (no driver, a driver too old for this binary's CUDA runtime, no
// device visible), or "" when one can. Never throws.
std::string cudaUnavailableReason();
// The backend for device `device` (0-based), created on first use and kept for the process'
// lifetime. Throws a CovpoolError with cudaUnavailableReason() when no device is usable, and a
// RangeError one for an index that names no device.
Backend& cudaBackend(int device);

// Device memory of the CUDA backends created so far (for memoryStats()), and emptyCache(): every
// parked block of their caching allocators goes back to the driver; returns the bytes released.
struct DeviceMemoryStats {
  int device = 0;
  std::size_t allocatedBytes = 0;  // in use by states and running calls
  std::size_t cachedBytes = 0;     // parked for reuse
};
std::vector<DeviceMemoryStats> cudaMemoryStats();
std::size_t cudaEmptyCache();

}  // namespace covpool
