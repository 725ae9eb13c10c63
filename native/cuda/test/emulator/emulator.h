// The emulated CUDA device: shared internals of the runtime (runtime.cpp), cuBLAS (cublas.cpp),
// cuSOLVER (cusolver.cpp) and kernel (kernels_host.cpp) emulations. A test double for the CUDA
// backend (native/cuda), built only by `npm run test:cuda-emu` (scripts/cuda-emu.sh): it runs the
// unmodified backend sources with every kernel executed block by block on host fibers and every
// library call done with OpenBLAS/LAPACKE. It is stricter than a GPU wherever it can be:
//   - device memory is a registry of mappings that host code cannot touch (PROT_NONE outside the
//     emulator's own execution), with guard pages around each block and, under ASan, the slack
//     of the last page poisoned; fresh allocations and library workspaces are filled with NaN;
//   - stream work is deferred until a synchronization point, so a host read of results before a
//     sync sees NaN (device-to-host copies fill their destination with NaN when they are issued);
//   - every library call's arguments are checked as the NVIDIA documentation says the library does,
//     and every operand range must lie inside one live allocation (a wrong leading dimension or
//     stride is an illegal address here, and the device's error turns sticky as on a GPU);
//   - a kernel's barriers, warp shuffles and shared memory keep their meaning (fibers), and a
//     barrier or shuffle that not every thread reaches is an error, not a hang;
//   - faults are injectable (env, see faults()).
// What it cannot show: cuBLAS/cuSOLVER rounding and tie-breaking, races between blocks or streams
// (blocks run one at a time), and anything about speed.
#pragma once
#include <cuda_runtime.h>

#include "report.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cuemu {

using Report = covpool::CudaEmulatorReport;
Report report();

// ---- violations ---------------------------------------------------------------------------------
// A misuse the real device would punish (crash, garbage, undefined behaviour) or that its
// documentation forbids. Printed to stderr at once, counted, and kept for report(); with
// COVPOOL_EMU_ABORT=1 the process aborts at the first one (for a debugger or a core dump).
void violation(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

struct Counters {
  std::atomic<std::size_t> kernelLaunches{0}, libraryCalls{0}, blocksRun{0};
};
Counters& stats();

// ---- memory registry ------------------------------------------------------------------------------
enum class MemKind { Device, Pinned };
struct Block {
  std::uintptr_t begin = 0;
  std::size_t bytes = 0;
  MemKind kind = MemKind::Device;
  int device = 0;
  std::uint64_t serial = 0;  // allocation number, for messages
};
// The live block containing address p, if any (copied out: the registry may change afterwards).
bool findBlock(const void* p, Block* out);
// Whether [p, p + bytes) lies inside one live block of `kind`; on failure reports a violation
// naming `what` and returns false. bytes == 0 passes for any p (nothing is touched).
bool requireRange(const void* p, std::size_t bytes, MemKind kind, const char* what);
// Fills with NaN bytes (0xff: NaN as float and double, -1 as int).
void poison(void* p, std::size_t bytes);

// ---- devices, streams and deferred execution -----------------------------------------------------
int deviceCount();
int currentDevice();
// The stream work goes to: s itself, or device `currentDevice()`'s legacy stream for s == 0.
// Returns nullptr (and reports) for a stream that was never created or is destroyed.
struct StreamState;
StreamState* resolveStream(cudaStream_t s, const char* what);
// Appends work to a stream; it runs, in order, at the next synchronization point of that stream
// (cudaStreamSynchronize, cudaDeviceSynchronize, cudaFree, a blocking cudaMemcpy).
void enqueue(StreamState* s, std::string what, std::function<void()> work);
// Runs everything queued on every stream (device memory is accessible while it runs).
void drainAll();
// A failure while executing stream work: reported, and the device's error becomes sticky
// (cudaErrorIllegalAddress / cudaErrorLaunchFailure), as a fault on a GPU corrupts the context.
void failExecution(cudaError_t e, const std::string& what);
// The device's sticky error (cudaSuccess while none).
cudaError_t stickyError();
// Sets the calling thread's last error (cudaGetLastError) and returns e.
cudaError_t setLastError(cudaError_t e);

// ---- fault injection (environment variables, read at each event) ----------------------------------
//   COVPOOL_EMU_FAIL_MALLOC=k      the k-th cudaMalloc after the value was set fails (out of memory);
//                  =k+             that one and every later one
//   COVPOOL_EMU_FAIL_LAUNCH=k | name   the k-th kernel launch, or every launch of a kernel whose
//                                  name contains `name`, fails (cudaErrorLaunchOutOfResources)
//   COVPOOL_EMU_EIG_NO_CONVERGE=i  syevjBatched / XsyevBatched report item i of each call as not
//                                  converged (info = n + 1 / info = 1)
//   COVPOOL_EMU_GETRF_SINGULAR=i   getrfBatched reports item i of each call as exactly singular
//                                  (info = 1: U(1,1) is zero)
bool faultMalloc();
bool faultLaunch(const char* kernelName);
int faultEigenItem();    // -1: none
int faultSingularItem(); // -1: none

// ---- device memory access window -------------------------------------------------------------------
// While an Access is alive, device blocks are readable and writable (stream work runs inside one);
// otherwise they are PROT_NONE, so host code that dereferences a device pointer faults with a
// message naming the block. Nested Accesses are cheap.
class Access {
 public:
  Access();
  ~Access();
  Access(const Access&) = delete;
  Access& operator=(const Access&) = delete;
};

}  // namespace cuemu
