// The precision each step of the CUDA layer runs in, for features of type Ti and a spectral part
// (eigensolver / iteration) in Ts. It must be the CPU backend's plan (native/cpu/cpu_backend.cpp,
// forwardImpl / backwardImpl): the covariance is formed from the centered features converted to
// Ts, and back-propagated in Ts, then rounded once to Ti. With float32 features, N < C and a
// float64 spectral part, a float32 covariance hands the eigensolver rounding noise in place of the
// C - N + 1 zero eigenvalues, and the feature gradient is then O(1) wrong.
//
// Header-only and CUDA-free on purpose: native/cuda/test/cuda_vs_cpu.cpp replays the CUDA layer's
// steps with CPU ops in exactly these types (its self-check mode runs without a GPU), so a plan
// that departs from the CPU's fails there.
#pragma once

namespace covpool::cuda {

template <class Ti, class Ts> struct LayerPrecision {
  using Covariance = Ts;  // centering, Xc Xc^T / N and its backward (G + G^T) Xc / N
};

}  // namespace covpool::cuda
