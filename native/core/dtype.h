// Element types the library computes in. Inputs/outputs are float32 or float64, and so is the
// "spectral precision" (the type the square root and its gradient are computed in).
#pragma once
#include <cstddef>
#include <limits>
#include <string>

namespace covpool {

enum class DType { F32 = 0, F64 = 1 };

inline std::size_t dtypeSize(DType t) { return t == DType::F32 ? 4 : 8; }
inline const char* dtypeName(DType t) { return t == DType::F32 ? "float32" : "float64"; }

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::F32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::F64; };

template <class T> constexpr T machineEpsilon() { return std::numeric_limits<T>::epsilon(); }

// Calls f with a value of the C++ type that `t` names, so one template serves both dtypes.
template <class F> auto dispatchDType(DType t, F&& f) {
  if (t == DType::F32) return f(float{});
  return f(double{});
}

}  // namespace covpool
