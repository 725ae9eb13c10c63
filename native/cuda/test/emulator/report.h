// What the emulated CUDA device saw (native/cuda/test/emulator): violations and live memory. Free
// of CUDA headers so that the addon (native/addon) can report it in info() when it is built
// against the emulator (COVPOOL_CUDA_EMULATED), and tests can check it.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace covpool {

struct CudaEmulatorReport {
  int violations = 0;
  std::vector<std::string> messages;  // the first 20 violations
  std::size_t liveDeviceBlocks = 0, liveDeviceBytes = 0;
  std::size_t peakDeviceBytes = 0;  // the most device bytes live at once since the last resetPeak
  std::size_t livePinnedBlocks = 0, livePinnedBytes = 0;
  std::size_t kernelLaunches = 0, libraryCalls = 0, blocksRun = 0;
};
CudaEmulatorReport cudaEmulatorReport();
// Restarts peakDeviceBytes from the bytes live now.
void cudaEmulatorResetPeak();

}  // namespace covpool
