// Conversions between JS values and native Buffers/options, with validation that produces clear
// TypeErrors/RangeErrors instead of undefined behaviour.
#pragma once
#include <napi.h>

#include <string>

#include "../core/backend.h"
#include "../core/buffer.h"
#include "../core/methods.h"

namespace covpool::addon {

// Copies a Float32Array/Float64Array argument holding exactly `count` elements into a Buffer; a
// device tensor handle gives a device Buffer sharing its memory (no copy).
Buffer bufferArg(const Napi::CallbackInfo& info, std::size_t index, const char* what, std::size_t count);
// Same, but the dtype must be `dtype`.
Buffer bufferArg(const Napi::CallbackInfo& info, std::size_t index, const char* what, std::size_t count, DType dtype);

// The dtype of a Float32Array/Float64Array argument without copying it (float64 for anything else:
// bufferArg reports those), so a call can be priced before its inputs are copied.
DType dtypeArg(const Napi::CallbackInfo& info, std::size_t index);

// A positive integer dimension argument.
int dimArg(const Napi::CallbackInfo& info, std::size_t index, const char* what);
bool boolArg(const Napi::CallbackInfo& info, std::size_t index, const char* what);

// Reads {method, precision, normalization, iterations, degree, kappa, n, eps, p, q}.
RawOptions optionsArg(const Napi::CallbackInfo& info, std::size_t index);
Napi::Object optionsToJs(Napi::Env env, const SqrtmOptions& o);

// A Float32Array/Float64Array of the buffer's data: for a large one, over the buffer's own memory,
// which JS takes over (covpool's cache gets it back when the array is collected); for a small one
// or beyond COVPOOL_RESULT_ARRAYS_MB held by JS, a copy. For a device buffer, a device tensor handle
// that takes its memory over.
Napi::Value toTypedArray(Napi::Env env, Buffer& b);
// Bytes of result arrays JS holds over covpool's memory (counted in the host cache's allocatedBytes).
std::size_t resultArrayBytes();

}  // namespace covpool::addon
