#include "blas.h"

// OpenBLAS's own thread control; declared weak so that linking against another CBLAS still works
// (those run single-threaded by default or honour OMP_NUM_THREADS).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace covpool::cpu {

void configureBlasThreads() {
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}

}  // namespace covpool::cpu
