#include "marshal.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <unordered_set>

#include "states.h"

namespace covpool::addon {

namespace {
[[noreturn]] void typeError(const std::string& msg) { throw CovpoolError("TypeError: " + msg); }
}  // namespace

Buffer bufferArg(const Napi::CallbackInfo& info, std::size_t index, const char* what, std::size_t count) {
  if (index < info.Length() && isDeviceTensor(info[index])) {
    Buffer b = deviceTensorArg(info, index, what);
    if (b.size() != count) {
      std::ostringstream os;
      os << what << " holds " << b.size() << " elements but its shape needs " << count;
      throw CovpoolError("RangeError: " + os.str());
    }
    return b;
  }
  if (index >= info.Length() || !info[index].IsTypedArray()) typeError(std::string(what) + " must be a Float32Array or Float64Array");
  // Raw N-API rather than Napi::TypedArray::ArrayBuffer(), which fails on SharedArrayBuffer views.
  napi_env env = info.Env();
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value backing;
  if (napi_get_typedarray_info(env, info[index], &type, &length, &data, &backing, &offset) != napi_ok)
    typeError(std::string(what) + ": cannot read the typed array");
  DType dtype;
  if (type == napi_float32_array) dtype = DType::F32;
  else if (type == napi_float64_array) dtype = DType::F64;
  else typeError(std::string(what) + " must be a Float32Array or Float64Array (other element types are not supported)");
  bool detached = false;
  napi_is_detached_arraybuffer(env, backing, &detached);  // false for SharedArrayBuffer
  if (detached) typeError(std::string(what) + ": its ArrayBuffer is detached (transferred or freed); pass a live array");
  if (length != count) {
    std::ostringstream os;
    os << what << " holds " << length << " elements but its shape needs " << count;
    throw CovpoolError("RangeError: " + os.str());
  }
  // `data` already points at the view's first element.
  return Buffer::copyOf(dtype, data, count);
}

DType dtypeArg(const Napi::CallbackInfo& info, std::size_t index) {
  if (index < info.Length() && isDeviceTensor(info[index])) {
    try {
      return deviceTensorArg(info, index, "tensor").dtype();
    } catch (const CovpoolError&) {
      return DType::F64;  // disposed: bufferArg reports it
    }
  }
  if (index >= info.Length() || !info[index].IsTypedArray()) return DType::F64;
  return info[index].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array ? DType::F32 : DType::F64;
}

Buffer bufferArg(const Napi::CallbackInfo& info, std::size_t index, const char* what, std::size_t count, DType dtype) {
  Buffer b = bufferArg(info, index, what, count);
  if (b.dtype() != dtype)
    typeError(std::string(what) + " must be " + dtypeName(dtype) + " (like the forward input), got " + dtypeName(b.dtype()));
  return b;
}

int dimArg(const Napi::CallbackInfo& info, std::size_t index, const char* what) {
  if (index >= info.Length() || !info[index].IsNumber()) typeError(std::string(what) + " must be a number");
  const double v = info[index].As<Napi::Number>().DoubleValue();
  if (!(v >= 1) || v != std::floor(v) || v > 1 << 30) {
    std::ostringstream os;
    os << what << " must be a positive integer, got " << v;
    throw CovpoolError("RangeError: " + os.str());
  }
  return static_cast<int>(v);
}

bool boolArg(const Napi::CallbackInfo& info, std::size_t index, const char* what) {
  if (index >= info.Length() || !info[index].IsBoolean()) typeError(std::string(what) + " must be a boolean");
  return info[index].As<Napi::Boolean>().Value();
}

namespace {
std::string optString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) typeError(std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}
double optNumber(const Napi::Object& o, const char* key, double absent) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return absent;
  if (!v.IsNumber()) typeError(std::string("option '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
int optInt(const Napi::Object& o, const char* key) {
  const double v = optNumber(o, key, -1);
  if (v == -1) return -1;
  if (!std::isfinite(v) || v != std::floor(v) || v < 0 || v > 1e9) {
    std::ostringstream os;
    os << "RangeError: option '" << key << "' must be a non-negative integer, got " << v;
    throw CovpoolError(os.str());
  }
  return static_cast<int>(v);
}
std::vector<double> optArray(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  std::vector<double> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) typeError(std::string("option '") + key + "' must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) typeError(std::string("option '") + key + "' must be an array of numbers");
    out.push_back(e.As<Napi::Number>().DoubleValue());
  }
  return out;
}
}  // namespace

RawOptions optionsArg(const Napi::CallbackInfo& info, std::size_t index) {
  if (index >= info.Length() || !info[index].IsObject()) typeError("options must be an object");
  Napi::Object o = info[index].As<Napi::Object>();
  RawOptions r;
  r.method = optString(o, "method");
  if (r.method.empty()) typeError("options.method is required");
  r.precision = optString(o, "precision");
  r.normalization = optString(o, "normalization");
  r.iterations = optInt(o, "iterations");
  r.degree = optInt(o, "degree");
  r.topN = optInt(o, "n");
  r.kappa = optNumber(o, "kappa", -1);
  r.eps = optNumber(o, "eps", -1);
  if (r.kappa != -1 && !(r.kappa > 0)) throw CovpoolError("RangeError: option 'kappa' must be > 0");
  if (r.eps != -1 && !(r.eps > 0)) throw CovpoolError("RangeError: option 'eps' must be > 0");
  {
    Napi::Value v = o.Get("checkPsd");
    if (!v.IsUndefined() && !v.IsNull() && !v.IsBoolean()) typeError("option 'checkPsd' must be a boolean");
    r.checkPsd = v.IsBoolean() && v.As<Napi::Boolean>().Value();
  }
  r.padeP = optArray(o, "p");
  r.padeQ = optArray(o, "q");
  return r;
}

Napi::Object optionsToJs(Napi::Env env, const SqrtmOptions& o) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("method", methodName(o.method));
  r.Set("precision", dtypeName(o.precision));
  r.Set("normalization", normalizationName(o.normalization));
  r.Set("eps", o.eps);
  switch (o.method) {
    case Method::NS: r.Set("iterations", o.iterations); break;
    case Method::SVD_NEWTON: case Method::SVD_PI: r.Set("iterations", o.iterations); break;
    case Method::MPA_LYA: r.Set("iterations", o.iterations); r.Set("degree", o.degree); break;
    case Method::SVD_TAYLOR: case Method::SVD_PADE: r.Set("degree", o.degree); break;
    case Method::SVD_TRUNC: r.Set("kappa", o.kappa); break;
    case Method::SVD_TOPN: r.Set("n", o.topN); break;
    default: break;
  }
  if (o.checkPsd) r.Set("checkPsd", true);  // shown only when asked for: the default leaves it off
  return r;
}

namespace {

// Result arrays whose memory JS took over from covpool's host cache (see toTypedArray). The set
// also keeps each block reachable from a global while V8 holds it, so a leak checker at exit does
// not take arrays JS still holds for leaks.
struct ResultArrays {
  std::mutex m;
  std::unordered_set<void*> blocks;
  std::size_t bytes = 0;
  std::size_t limit = [] {
    const char* env = std::getenv("COVPOOL_RESULT_ARRAYS_MB");
    const long mb = env && *env ? std::atol(env) : 64;
    return static_cast<std::size_t>(mb < 0 ? 0 : mb) << 20;
  }();
};
ResultArrays& resultArrays() {
  static ResultArrays* r = new ResultArrays;  // never destroyed: finalizers may run during exit
  return *r;
}

// Smaller results are copied: a copy of a few pages costs less than an external array's
// bookkeeping (and its finalizer's trip through the event loop).
constexpr std::size_t kHandOverMinBytes = 64 << 10;

bool reserveResult(void* p, std::size_t bytes) {
  ResultArrays& r = resultArrays();
  std::lock_guard<std::mutex> lk(r.m);
  if (r.bytes + bytes > r.limit) return false;
  r.bytes += bytes;
  r.blocks.insert(p);
  return true;
}
void unreserveResult(void* p, std::size_t bytes) {
  ResultArrays& r = resultArrays();
  std::lock_guard<std::mutex> lk(r.m);
  r.bytes -= bytes;
  r.blocks.erase(p);
}
// Runs on the JS thread once the array is collected (Node defers it to the event loop's next turn).
void freeResult(napi_env, void* data, void* hint) {
  const std::size_t bytes = reinterpret_cast<std::size_t>(hint);
  unreserveResult(data, bytes);
  cachedFree(data, bytes);
}

Napi::Value viewOf(Napi::Env env, DType dtype, std::size_t count, Napi::ArrayBuffer ab) {
  if (dtype == DType::F32) return Napi::Float32Array::New(env, count, ab, 0);
  return Napi::Float64Array::New(env, count, ab, 0);
}

}  // namespace

std::size_t resultArrayBytes() {
  ResultArrays& r = resultArrays();
  std::lock_guard<std::mutex> lk(r.m);
  return r.bytes;
}

Napi::Value toTypedArray(Napi::Env env, Buffer& b) {
  if (b.onDevice()) return wrapDeviceTensor(env, std::move(b));
  const DType dtype = b.dtype();
  const std::size_t count = b.size(), bytes = b.byteSize();
  // A large result's memory is handed to JS as it is, not copied into a fresh ArrayBuffer. The copy
  // itself is cheap; the fresh ArrayBuffers were not: once glibc's chunks freed by V8's last
  // collection ran out, every step faulted new pages in, and a cpu-s Newton-Schulz step alternated
  // between about 7.4 and 11.3 ms in blocks of tens of steps (docs/speed-cpu.md, 2026-12-08). The
  // block goes back to covpool's cache when the array is collected, so a training loop's results
  // reuse memory that is already mapped. Blocks held by JS are bounded (COVPOOL_RESULT_ARRAYS_MB,
  // default 64; 0: always copy): Node runs the finalizers on the event loop, so a loop that never
  // yields would otherwise hold every result it made; beyond the bound results are copied.
  // Runtimes without external array buffers (napi_no_external_buffers_allowed) get a copy too.
  if (bytes >= kHandOverMinBytes) {
    void* p = b.raw();
    if (reserveResult(p, bytes)) {
      napi_value ab = nullptr;
      if (napi_create_external_arraybuffer(env, p, bytes, freeResult, reinterpret_cast<void*>(bytes), &ab) == napi_ok) {
        b.releaseHostMemory();  // JS owns it now; freeResult gives it back
        return viewOf(env, dtype, count, Napi::ArrayBuffer(env, ab));
      }
      unreserveResult(p, bytes);  // not taken: copied below like a small result
    }
  }
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes);
  if (bytes) std::memcpy(ab.Data(), b.raw(), bytes);
  return viewOf(env, dtype, count, ab);
}

}  // namespace covpool::addon
