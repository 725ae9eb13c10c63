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

// A new Float32Array/Float64Array holding a copy of the buffer; for a device buffer, a device tensor
// handle that takes its memory over.
Napi::Value toTypedArray(Napi::Env env, Buffer& b);

}  // namespace covpool::addon
