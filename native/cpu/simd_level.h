// Which of covpool's own SIMD kernels this process runs: the baseline x86-64 code (SSE2), the
// AVX2 + FMA kernels, or the AVX-512 ones, picked once per process from the CPU's features (the
// binaries target baseline x86-64; the other kernels are compiled next to it with GCC's target
// attributes). OpenBLAS picks its own kernels separately (OPENBLAS_CORETYPE overrides it).
//
// COVPOOL_CPU_SIMD=baseline|avx2|avx512 caps the level (a cap only: a CPU without AVX-512 never
// runs the AVX-512 kernels); COVPOOL_CPU_BASELINE=1, the older switch, is COVPOOL_CPU_SIMD=baseline.
// With OPENBLAS_CORETYPE=Haswell and COVPOOL_CPU_SIMD=avx2, an AVX-512 machine runs the code an
// AVX2-only x86-64 CPU runs: how the tests and benchmarks cover both kinds on one machine.
#pragma once
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/errors.h"

// x86-64 builds with GCC compile the AVX2 + FMA and AVX-512 kernels next to the baseline ones and
// pick at run time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define COVPOOL_X86_DISPATCH 1
#endif

namespace covpool::cpu {

enum class SimdLevel { Baseline = 0, Avx2 = 1, Avx512 = 2 };

inline const char* simdLevelName(SimdLevel l) {
  return l == SimdLevel::Avx512 ? "avx512" : l == SimdLevel::Avx2 ? "avx2" : "baseline";
}

// The cap the environment sets (Avx512 when none); an unknown value is an error rather than a
// silent default, since it decides which code a benchmark or a test measures.
inline SimdLevel simdLevelCapFromEnv() {
  const char* baseline = std::getenv("COVPOOL_CPU_BASELINE");
  if (baseline && *baseline && std::strcmp(baseline, "0") != 0) return SimdLevel::Baseline;
  const char* cap = std::getenv("COVPOOL_CPU_SIMD");
  if (!cap || !*cap) return SimdLevel::Avx512;
  const std::string v(cap);
  if (v == "baseline" || v == "sse2") return SimdLevel::Baseline;
  if (v == "avx2") return SimdLevel::Avx2;
  if (v == "avx512" || v == "auto") return SimdLevel::Avx512;
  fail("COVPOOL_CPU_SIMD must be baseline, avx2, avx512 or auto, got '" + v + "'");
}

inline SimdLevel detectSimdLevel() {
#ifdef COVPOOL_X86_DISPATCH
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return SimdLevel::Baseline;
  if (!__builtin_cpu_supports("avx512f")) return SimdLevel::Avx2;
  return SimdLevel::Avx512;
#else
  return SimdLevel::Baseline;
#endif
}

// The level in use: what the CPU has, capped by the environment. Decided at the first call.
inline SimdLevel simdLevel() {
  static const SimdLevel level = [] {
    const SimdLevel has = detectSimdLevel(), cap = simdLevelCapFromEnv();
    return static_cast<int>(has) < static_cast<int>(cap) ? has : cap;
  }();
  return level;
}

inline bool cpuHasAvx2Fma() { return simdLevel() >= SimdLevel::Avx2; }

}  // namespace covpool::cpu
