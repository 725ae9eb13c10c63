// N-API entry points. Each op is split in three steps: parse and copy the arguments on the JS
// thread, compute (inline for sync calls, on the libuv thread pool for async ones), and convert
// the result back on the JS thread. Native failures become JS exceptions or rejected promises.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <new>
#include <functional>
#include <memory>

#include "../core/backend.h"
#include "../core/host_cache.h"
#include "../core/pade.h"
#include "../core/threadpool.h"
#include "../cpu/blas.h"
#include "../cpu/definite.h"
#ifdef COVPOOL_WITH_CUDA
#include "../cuda/cuda_backend.h"
#endif
#ifdef COVPOOL_CUDA_EMULATED
#include "../cuda/test/emulator/report.h"
#endif
#include "../core/limits.h"
#include "marshal.h"
#include "preload.h"
#include "states.h"

namespace covpool::addon {
namespace {

// Turns a native message into the right JS error class ("TypeError: ..." -> TypeError, etc.).
Napi::Error jsError(Napi::Env env, const std::string& raw) {
  auto has = [&](const char* prefix) { return raw.rfind(prefix, 0) == 0; };
  const bool type = has("TypeError: "), range = has("RangeError: ");
  const std::string msg = "covpool: " + raw.substr(type ? 11 : range ? 12 : 0);
  Napi::Error e = type ? Napi::TypeError::New(env, msg) : range ? Napi::RangeError::New(env, msg) : Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_COVPOOL"));
  return e;
}

// Message for an exception caught from native work.
std::string describe(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "out of memory: the batch needs more host memory than is available (reduce B or C)";
  return e.what();
}

// A unit of work: `run` computes off the JS thread, `result` builds the JS value afterwards.
struct Task {
  std::function<void()> run;
  std::function<Napi::Value(Napi::Env)> result;
};

// ---- call controls: an AbortSignal and a progress callback reach native code as a control token
// (an External, passed just before the async flag). Cancellation is checked between batch items
// (core/threadpool); progress goes back to JS through a thread-safe function.
const napi_type_tag kControlTag = {0x636f76706f6f6c31ULL, 0x636f6e74726f6c01ULL};

struct ControlHolder {
  std::shared_ptr<CallControl> control = std::make_shared<CallControl>();
  Napi::ThreadSafeFunction progress;
  bool hasProgress = false;
  void releaseProgress() {
    if (hasProgress) progress.Release();
    hasProgress = false;
  }
};

ControlHolder* controlArg(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  auto ext = v.As<Napi::External<ControlHolder>>();
  return ext.CheckTypeTag(&kControlTag) ? ext.Data() : nullptr;
}

// The control token of a call: the argument before the trailing async flag, when it is one.
std::shared_ptr<CallControl> callControl(const Napi::CallbackInfo& info) {
  if (info.Length() < 2) return nullptr;
  ControlHolder* h = controlArg(info[info.Length() - 2]);
  return h ? h->control : nullptr;
}

class TaskWorker : public Napi::AsyncWorker {
 public:
  TaskWorker(Napi::Env env, Task task) : Napi::AsyncWorker(env, "covpool"), task_(std::move(task)), deferred_(env) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      task_.run();
    } catch (const std::exception& e) {
      SetError(describe(e));
    } catch (...) {
      SetError("unknown native error");
    }
  }
  // Both completion callbacks may run while the environment is being torn down (a worker thread
  // terminated mid-call); every N-API call can then throw, and nothing may escape to the runtime.
  void OnOK() override {
    try {
      Napi::HandleScope scope(Env());
      try {
        deferred_.Resolve(task_.result(Env()));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      } catch (const std::exception& e) {
        deferred_.Reject(jsError(Env(), describe(e)).Value());
      }
    } catch (...) {
    }
  }
  void OnError(const Napi::Error& e) override {
    try {
      Napi::HandleScope scope(Env());
      deferred_.Reject(jsError(Env(), e.Message()).Value());
    } catch (...) {
    }
  }

 private:
  Task task_;
  Napi::Promise::Deferred deferred_;
};

// Runs a task synchronously or returns a promise for it. `build` parses arguments; any error it
// throws is a synchronous exception in both modes (argument errors are programming errors).
Napi::Value submit(const Napi::CallbackInfo& info, bool async, const std::function<Task()>& build) {
  Napi::Env env = info.Env();
  try {
    Task t = build();
    // Marks the computation as running, so emptyCache() leaves the threads' scratch alone.
    t.run = [run = std::move(t.run)] {
      CallInProgress running;
      run();
    };
    if (!async) {
      t.run();
      return t.result(env);
    }
    if (std::shared_ptr<CallControl> control = callControl(info)) {
      t.run = [control, run = std::move(t.run)] {
        CallScope scope(control.get());
        run();
      };
    }
    auto* w = new TaskWorker(env, std::move(t));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw jsError(env, describe(e));
  }
}

bool asyncFlag(const Napi::CallbackInfo& info) {
  const std::size_t last = info.Length() ? info.Length() - 1 : 0;
  return info.Length() && info[last].IsBoolean() && info[last].As<Napi::Boolean>().Value();
}

// ---- device selection: 'cpu' (default), 'cuda', 'cuda:N' or 'auto' (a GPU when there is one).
#ifdef COVPOOL_WITH_CUDA
constexpr bool kCudaBuilt = true;
#else
constexpr bool kCudaBuilt = false;
int cudaDeviceCount() { return 0; }
std::string cudaUnavailableReason() { return "this binary was built without the CUDA backend"; }
#endif

Backend& backendFor(const std::string& device) {
  if (device.empty() || device == "cpu") return cpuBackend();
  if (device == "auto") {
#ifdef COVPOOL_WITH_CUDA
    if (cudaDeviceCount() > 0) return cudaBackend(0);
#endif
    return cpuBackend();
  }
  int index = -1;
  if (device == "cuda") index = 0;
  else if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.find_first_not_of("0123456789", 5) == std::string::npos && device.size() < 9)
    index = std::stoi(device.substr(5));
  if (index < 0) failRange("device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got '" + device + "'");
  if (!kCudaBuilt)
    fail("device '" + device + "' was asked for, but this covpool binary was built without the CUDA backend");
#ifdef COVPOOL_WITH_CUDA
  const int count = cudaDeviceCount();
  if (count == 0) fail("device '" + device + "' was asked for, but " + cudaUnavailableReason());
  if (index >= count) failRange("device '" + device + "': there are only " + std::to_string(count) + " CUDA device(s)");
  return cudaBackend(index);
#else
  return cpuBackend();
#endif
}

// Reads options.device (absent: 'cpu').
std::string deviceOption(const Napi::CallbackInfo& info, std::size_t index) {
  if (index >= info.Length() || !info[index].IsObject()) return "cpu";
  Napi::Value v = info[index].As<Napi::Object>().Get("device");
  if (v.IsUndefined() || v.IsNull()) return "cpu";
  if (!v.IsString()) failType("option 'device' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// The backend of an op whose inputs are `buffers`: the CPU for host arrays, else the device they are
// all on (device-resident tensors; a mix of devices, or of a device and the host, is an error).
Backend& backendOf(std::initializer_list<const Buffer*> buffers) {
  int device = -1;
  bool host = false;
  for (const Buffer* b : buffers) {
    if (!b->onDevice()) {
      host = true;
      continue;
    }
    const int d = b->storage()->device();
    if (device >= 0 && d != device)
      fail("the inputs are on different devices (cuda:" + std::to_string(device) + " and cuda:" + std::to_string(d) + "): move them to one");
    device = d;
  }
  if (device < 0) return cpuBackend();
  if (host) fail("some inputs are on cuda:" + std::to_string(device) + " and some on the host: move them to one device");
#ifdef COVPOOL_WITH_CUDA
  return cudaBackend(device);
#else
  fail("internal: a device tensor reached a binary without the CUDA backend");
#endif
}

// The backend of an op without a state: where its inputs are (backendOf), or, for host arrays, the
// device named by the string argument at `index` ('cpu' or absent: the CPU; 'cuda', 'cuda:N',
// 'auto'): host arrays go there and their results come back.
Backend& opBackend(const Napi::CallbackInfo& info, std::size_t index, std::initializer_list<const Buffer*> inputs) {
  Backend& placed = backendOf(inputs);
  if (index >= info.Length() || info[index].IsUndefined() || info[index].IsNull()) return placed;
  if (!info[index].IsString()) failType("option 'device' must be a string");
  const std::string device = info[index].As<Napi::String>().Utf8Value();
  if (&placed != &cpuBackend()) {
    if (device != "auto" && device != placed.name() && !(device == "cuda" && std::string(placed.name()) == "cuda:0"))
      fail(std::string("the inputs are on ") + placed.name() + " but the call asks for device '" + device + "'");
    return placed;
  }
  return backendFor(device);
}

// A forward's input must live where the forward runs: a device tensor on that very device (host
// arrays go to any device: they are copied there).
void requireOn(const Backend& be, const Buffer& input, const char* what) {
  if (!input.onDevice()) return;
  const std::string there = "cuda:" + std::to_string(input.storage()->device());
  if (there != be.name())
    fail(std::string(what) + " are on " + there + " but the call runs on " + be.name() + ": move them with .to('" + be.name() +
         "'), or run the call on " + there);
}

Napi::Object forwardResult(Napi::Env env, Buffer& out, std::shared_ptr<State> st) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("output", toTypedArray(env, out));
  r.Set("state", wrapState(env, std::move(st)));
  return r;
}

// The batch size: a non-negative integer (B = 0 gives empty results, as in PyTorch).
int batchArg(const Napi::CallbackInfo& info, std::size_t index) {
  if (index < info.Length() && info[index].IsNumber() && info[index].As<Napi::Number>().DoubleValue() == 0) return 0;
  return dimArg(info, index, "B");
}

// Channels-last features for a backend that only takes [B, C, N]: transposed on the host, per item.
Buffer transposeFeatures(const Buffer& in, int B, int rows, int cols) {
  Buffer out(in.dtype(), in.size());
  dispatchDType(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* a = in.as<T>();
    T* o = out.as<T>();
    const std::size_t per = static_cast<std::size_t>(rows) * cols;
    for (int b = 0; b < B; ++b)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) o[b * per + static_cast<std::size_t>(c) * rows + r] = a[b * per + static_cast<std::size_t>(r) * cols + c];
    return 0;
  });
  return out;
}

// ---- sizes and budgets: every count is computed without wrapping and every call is priced
// before it allocates (the native layer re-checks what lib/ checks; callers are not trusted).

std::string shapeText(std::initializer_list<std::size_t> dims) {
  std::string s = "[";
  for (std::size_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

// C of a batch of C x C matrices: the kernels index one matrix with int (C * C < 2^31). Checked
// after the budget, whose message (how much memory was asked for) says more.
void requireIndexable(std::size_t C) {
  if (C > 46340) failRange("C must be at most 46340 (a C x C matrix is indexed with 32-bit integers), got " + std::to_string(C));
}

// Bytes of an op: `elements` counts every array it allocates (its input copies, outputs, state)
// in units of the element size; `perThread` the scratch each pool thread may take on top.
double opBytes(double elements, double elemSize, double perThreadElements) {
  return elements * elemSize + static_cast<double>(poolThreads() + 1) * perThreadElements * elemSize;
}

// Approximate bytes a forward state holds (cpu_backend's CpuState), in spectral-precision elements.
double stateElements(const SqrtmOptions& o, double B, double C, double N, bool layer) {
  const double m = C * C;
  double e = B + (layer ? B * C * N : 0);
  if (o.normalization != Normalization::None || o.method == Method::MPA_LYA) e += 2 * B * m;
  if (o.method == Method::SVD_NEWTON) e += B * m;
  if (usesEigenForward(o.method)) e += B * m + B * C;
  if (o.method == Method::NS) e += B * m * std::max(1.0, 3.0 * o.iterations - 3);  // NsTape (its Y_0 is the normalized input above)
  return e;
}
// Scratch of one pool thread in a forward or backward (pipeline buffers and method work space).
double itemScratchElements(const SqrtmOptions& o, double C, double N) {
  const double m = C * C;
  double e = 12 * m + C * N;
  if (o.method == Method::SVD_NEWTON) e += 3.0 * o.iterations * m;  // its backward's Newton-Schulz tape and three matrices
  if (usesEigenForward(o.method)) e += 7 * m + 20 * C;  // items four at a time (eighBatch), its divide and conquer
  return e;
}

// Fails, naming the batch item, when an op's result holds NaN or Infinity in its output dtype:
// checked after the rounding to the output dtype, since a finite float64 value can overflow float32.
void requireFinite(const Buffer& out, std::size_t items, const std::string& what) {
  if (!items || !out.size()) return;
  if (out.onDevice()) {  // checked where it is (one status word per item comes back)
    const long b = backendOf({&out}).firstNonFiniteItem(out, items);
    if (b >= 0)
      fail("batch item " + std::to_string(b) + ": " + what + " is not finite in " + dtypeName(out.dtype()) +
           " (it overflowed or the computation broke down; the input is out of the range this op can represent)");
    return;
  }
  const std::size_t per = out.size() / items;
  dispatchDType(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = out.as<T>();
    for (std::size_t b = 0; b < items; ++b)
      if (!cpu::allFinite(p + b * per, per))
        fail("batch item " + std::to_string(b) + ": " + what + " is not finite in " + dtypeName(out.dtype()) +
             " (it overflowed or the computation broke down; the input is out of the range this op can represent)");
    return 0;
  });
}

// ---- ops ---------------------------------------------------------------------------------------
// Each op: dimensions, element counts without wrapping, the budget, then the input copies.

// covpool(x, B, C, N, channelsLast, device, [control], async)
Napi::Value Covpool(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    Dims d{batchArg(info, 1), dimArg(info, 2, "C"), dimArg(info, 3, "N"), boolArg(info, 4, "channelsLast")};
    const std::size_t B = d.B, C = d.C, N = d.N;
    const std::string what = "covpool of features " + shapeText({B, C, N});
    const std::size_t nx = checkedProduct({B, C, N}, what), nOut = checkedProduct({B, C, C}, what);
    requireBytes(opBytes(double(nx) + double(nOut), dtypeSize(dtypeArg(info, 0)), double(C) * N), what);
    requireIndexable(C);
    auto x = std::make_shared<Buffer>(bufferArg(info, 0, "features", nx));
    Backend* be = &opBackend(info, 5, {x.get()});
    auto out = std::make_shared<Buffer>();
    return Task{[=] {
                  *out = be->covpool(*x, d);
                  requireFinite(*out, B, "the covariance");
                },
                [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// covpoolBackward(x, dA, B, C, N, channelsLast, device, [control], async)
Napi::Value CovpoolBackward(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    Dims d{batchArg(info, 2), dimArg(info, 3, "C"), dimArg(info, 4, "N"), boolArg(info, 5, "channelsLast")};
    const std::size_t B = d.B, C = d.C, N = d.N;
    const std::string what = "covpoolBackward of features " + shapeText({B, C, N});
    const std::size_t nx = checkedProduct({B, C, N}, what), nA = checkedProduct({B, C, C}, what);
    requireBytes(opBytes(2.0 * nx + double(nA), dtypeSize(dtypeArg(info, 0)), double(C) * N + double(C) * C), what);
    requireIndexable(C);
    auto x = std::make_shared<Buffer>(bufferArg(info, 0, "features", nx));
    auto g = std::make_shared<Buffer>(bufferArg(info, 1, "covariance gradient", nA, x->dtype()));
    Backend* be = &opBackend(info, 6, {x.get(), g.get()});
    auto out = std::make_shared<Buffer>();
    return Task{[=] {
                  *out = be->covpoolBackward(*x, *g, d);
                  requireFinite(*out, B, "the gradient w.r.t. the features");
                },
                [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// triuvec(s, B, C, device, [control], async) / triuvecBackward(dy, B, C, device, [control], async)
Napi::Value Triuvec(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    const int B = batchArg(info, 1), C = dimArg(info, 2, "C");
    const std::string what = "triuvec of matrices " + shapeText({(size_t)B, (size_t)C, (size_t)C});
    const std::size_t n = checkedProduct({(size_t)B, (size_t)C, (size_t)C}, what);
    requireBytes(opBytes(1.5 * n, dtypeSize(dtypeArg(info, 0)), 0), what);
    requireIndexable(C);
    auto s = std::make_shared<Buffer>(bufferArg(info, 0, "matrices", n));
    Backend* be = &opBackend(info, 3, {s.get()});
    auto out = std::make_shared<Buffer>();
    return Task{[=] {
                  *out = be->triuvec(*s, B, C);
                  requireFinite(*out, B, "the upper triangle");
                },
                [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}
Napi::Value TriuvecBackward(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    const int B = batchArg(info, 1), C = dimArg(info, 2, "C");
    const std::string what = "triuvecBackward to matrices " + shapeText({(size_t)B, (size_t)C, (size_t)C});
    const std::size_t n = checkedProduct({(size_t)B, (size_t)C * (C + 1) / 2}, what);
    requireBytes(opBytes(3.0 * n, dtypeSize(dtypeArg(info, 0)), 0), what);
    requireIndexable(C);
    auto dy = std::make_shared<Buffer>(bufferArg(info, 0, "gradient", n));
    Backend* be = &opBackend(info, 3, {dy.get()});
    auto out = std::make_shared<Buffer>();
    return Task{[=] { *out = be->triuvecBackward(*dy, B, C); }, [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// eigh(a, B, C, device, [control], async) -> {values, vectors}
Napi::Value Eigh(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    const int B = batchArg(info, 1), C = dimArg(info, 2, "C");
    const std::string what = "eigh of matrices " + shapeText({(size_t)B, (size_t)C, (size_t)C});
    const std::size_t n = checkedProduct({(size_t)B, (size_t)C, (size_t)C}, what);
    // per thread: four items' matrices and eigenvectors, the solver's workspace and lanes
    requireBytes(opBytes(2.0 * n + double(B) * C, dtypeSize(dtypeArg(info, 0)), 17.0 * C * C + 36.0 * C), what);
    requireIndexable(C);
    auto a = std::make_shared<Buffer>(bufferArg(info, 0, "matrices", n));
    Backend* be = &opBackend(info, 3, {a.get()});
    auto vals = std::make_shared<Buffer>(), vecs = std::make_shared<Buffer>();
    return Task{[=] {
                  be->eigh(*a, B, C, *vals, *vecs);
                  requireFinite(*vals, B, "the eigenvalues");
                  requireFinite(*vecs, B, "the eigenvectors");
                },
                [=](Napi::Env e) -> Napi::Value {
                  Napi::Object r = Napi::Object::New(e);
                  r.Set("values", toTypedArray(e, *vals));
                  r.Set("vectors", toTypedArray(e, *vecs));
                  return r;
                }};
  });
}

// Bytes of a forward (sqrtm: N = 0) and of its backward, from its options.
double forwardBytes(const SqrtmOptions& o, DType in, double B, double C, double N, bool layer, double outElems) {
  const double inElems = layer ? B * C * N : B * C * C;
  return double(dtypeSize(in)) * (inElems + outElems) + opBytes(stateElements(o, B, C, N, layer), dtypeSize(o.precision), itemScratchElements(o, C, N));
}

// sqrtm(a, B, C, options, async) -> {output, state}
Napi::Value Sqrtm(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    const int B = batchArg(info, 1), C = dimArg(info, 2, "C");
    const std::string what = "sqrtm of matrices " + shapeText({(size_t)B, (size_t)C, (size_t)C});
    const std::size_t n = checkedProduct({(size_t)B, (size_t)C, (size_t)C}, what);
    const DType in = dtypeArg(info, 0);
    const SqrtmOptions o = resolveOptions(optionsArg(info, 3), in, C);
    requireBytes(forwardBytes(o, in, B, C, 0, false, double(n)), what + " by " + methodName(o.method));
    requireIndexable(C);
    auto a = std::make_shared<Buffer>(bufferArg(info, 0, "matrices", n));
    Backend* be = &backendFor(deviceOption(info, 3));
    if (B == 0 && !a->onDevice()) be = &cpuBackend();  // an empty batch of host arrays needs no device
    requireOn(*be, *a, "the matrices");
    auto out = std::make_shared<Buffer>();
    auto st = std::make_shared<std::shared_ptr<State>>();
    return Task{[=] {
                  if (o.checkPsd) {  // on the host: a device tensor is checked through a copy
                    if (a->onDevice()) cpu::requirePositiveSemidefinite(be->toHost(*a), B, C, methodName(o.method));
                    else cpu::requirePositiveSemidefinite(*a, B, C, methodName(o.method));
                  }
                  *st = be->sqrtm(*a, B, C, o, *out);
                  (*st)->backend = be;
                  requireFinite(*out, B, std::string(methodName(o.method)) + "'s square root");
                },
                [=](Napi::Env e) -> Napi::Value { return forwardResult(e, *out, *st); }};
  });
}

// layer(x, B, C, N, options, vectorize, channelsLast, [control], async) -> {output, state}
Napi::Value Layer(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    Dims d{batchArg(info, 1), dimArg(info, 2, "C"), dimArg(info, 3, "N"), boolArg(info, 6, "channelsLast")};
    const std::size_t B = d.B, C = d.C, N = d.N;
    const std::string what = "the layer on features " + shapeText({B, C, N});
    const std::size_t nx = checkedProduct({B, C, N}, what);
    const DType in = dtypeArg(info, 0);
    const SqrtmOptions o = resolveOptions(optionsArg(info, 4), in, d.C);
    const bool vectorize = boolArg(info, 5, "vectorize");
    const std::size_t nOut = vectorize ? checkedProduct({B, C * (C + 1) / 2}, what) : checkedProduct({B, C, C}, what);
    requireBytes(forwardBytes(o, in, B, C, N, true, double(nOut)), what + " by " + methodName(o.method));
    requireIndexable(C);
    auto x = std::make_shared<Buffer>(bufferArg(info, 0, "features", nx));
    Backend* be = &backendFor(deviceOption(info, 4));
    if (d.B == 0 && !x->onDevice()) be = &cpuBackend();  // an empty batch of host arrays needs no device
    requireOn(*be, *x, "the features");
    const bool transpose = d.channelsLast && !be->channelsLastFeatures();
    if (transpose) {
      *x = transposeFeatures(*x, d.B, d.N, d.C);
      d.channelsLast = false;
    }
    auto out = std::make_shared<Buffer>();
    auto st = std::make_shared<std::shared_ptr<State>>();
    return Task{[=] {
                  *st = be->layer(*x, d, o, vectorize, *out);
                  (*st)->backend = be;
                  (*st)->hostTransposedFeatures = transpose;
                  requireFinite(*out, B, std::string("the layer output (") + methodName(o.method) + ")");
                },
                [=](Napi::Env e) -> Napi::Value { return forwardResult(e, *out, *st); }};
  });
}

// backward(state, dOut, release, async) -> gradient w.r.t. the forward input. With `release`, the
// state's memory is freed once the backward has it (a running async backward keeps its own hold).
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    std::shared_ptr<State> st = stateArg(info, 0);
    const std::size_t B = st->dims.B, C = st->dims.C, N = st->dims.N;
    const bool layer = st->kind == StateKind::Layer;
    const std::string what = "the backward of a state of " + std::to_string(B) + " items";
    const std::size_t count = st->vectorize ? checkedProduct({B, C * (C + 1) / 2}, what) : checkedProduct({B, C, C}, what);
    const std::size_t nGrad = layer ? checkedProduct({B, C, N}, what) : checkedProduct({B, C, C}, what);
    requireBytes(double(dtypeSize(st->dtype)) * (double(count) + double(nGrad)) +
                     opBytes(0, dtypeSize(st->options.precision), itemScratchElements(st->options, C, N)),
                 what);
    requireIndexable(C);
    auto dy = std::make_shared<Buffer>(bufferArg(info, 1, "output gradient", count, st->dtype));
    requireOn(*st->backend, *dy, "the output gradients");
    if (boolArg(info, 2, "release")) disposeStateArg(info, 0);
    auto out = std::make_shared<Buffer>();
    return Task{[=] {
                  *out = st->backend->backward(*st, *dy);
                  if (st->hostTransposedFeatures) *out = transposeFeatures(*out, st->dims.B, st->dims.C, st->dims.N);
                  requireFinite(*out, B, std::string("the gradient (") + methodName(st->options.method) + ")");
                },
                [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// coefficients(values [B, C] float64, B, C, options, replace, async) -> F [B, C, C] float64
Napi::Value Coefficients(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    const int B = batchArg(info, 1), C = dimArg(info, 2, "C");
    const std::string what = "the coefficient matrices " + shapeText({(size_t)B, (size_t)C, (size_t)C});
    const std::size_t nl = checkedProduct({(size_t)B, (size_t)C}, what), n = checkedProduct({(size_t)B, (size_t)C, (size_t)C}, what);
    requireBytes(opBytes(double(nl) + double(n), 8, 0), what);
    requireIndexable(C);
    auto l = std::make_shared<Buffer>(bufferArg(info, 0, "eigenvalues", nl, DType::F64));
    const SqrtmOptions o = resolveOptions(optionsArg(info, 3), DType::F64, C);
    const bool replace = boolArg(info, 4, "replace");
    auto out = std::make_shared<Buffer>();
    return Task{[=] {
                  *out = backendOf({l.get()}).coefficients(*l, B, C, o, replace);
                  // Before replacement, non-finite entries are the point of the call; after it, an
                  // error (e.g. svd-lyap's 1/(sqrt l_i + sqrt l_j) of a negative eigenvalue).
                  if (replace) requireFinite(*out, B, "the coefficient matrix");
                },
                [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// stateInfo(state) -> {disposed, kind, id, B, C, N, dtype, vectorize, options, bytes, liveStates, liveBytes}
Napi::Value StateInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    const StateLookup l = lookupState(info, 0);
    Napi::Object r = Napi::Object::New(env);
    r.Set("disposed", l.disposed);
    if (l.state) {
      const State& s = *l.state;
      r.Set("kind", s.kind == StateKind::Layer ? "layer" : "sqrtm");
      r.Set("id", static_cast<double>(s.id));
      r.Set("B", s.dims.B);
      r.Set("C", s.dims.C);
      r.Set("N", s.dims.N);
      r.Set("dtype", dtypeName(s.dtype));
      r.Set("device", s.backend ? s.backend->name() : "cpu");
      r.Set("vectorize", s.vectorize);
      r.Set("channelsLast", s.dims.channelsLast || s.hostTransposedFeatures);
      r.Set("bytes", static_cast<double>(s.bytes()));
      r.Set("options", optionsToJs(env, s.options));
    }
    const LiveStates live = liveStates();
    r.Set("liveStates", static_cast<double>(live.count));
    r.Set("liveBytes", static_cast<double>(live.bytes));
    return r;
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

// disposeState(state): frees the native memory now; later use throws.
Napi::Value DisposeState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    disposeStateArg(info, 0);
    return env.Undefined();
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

// sweepStates(): frees the states whose JS values the garbage collector has collected.
Napi::Value SweepStates(const Napi::CallbackInfo& info) {
  sweepStates(info.Env());
  return info.Env().Undefined();
}

// maxBytes(newLimit?) -> the memory budget of one call in bytes (after setting it, when given).
Napi::Value MaxBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const double v = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 1 && v <= 9e15) || v != std::floor(v))
      throw jsError(env, "RangeError: the memory budget must be a positive integer number of bytes");
    setMaxBytes(static_cast<std::size_t>(v));
  }
  return Napi::Number::New(env, static_cast<double>(maxBytes()));
}

// resolveOptions(options, dtype, C) -> the options with every default filled in
Napi::Value ResolveOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 2 || !info[1].IsString()) throw CovpoolError("TypeError: dtype must be a string");
    const std::string dt = info[1].As<Napi::String>().Utf8Value();
    if (dt != "float32" && dt != "float64") throw CovpoolError("TypeError: dtype must be 'float32' or 'float64'");
    const int C = dimArg(info, 2, "C");
    return optionsToJs(env, resolveOptions(optionsArg(info, 0), dt == "float32" ? DType::F32 : DType::F64, C));
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

// padeCoefficients(kind: 'geometric' | 'sqrt', degree) -> {p, q}
Napi::Value PadeCoefficientsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsString()) throw CovpoolError("TypeError: kind must be 'geometric' or 'sqrt'");
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    const int deg = dimArg(info, 1, "degree");
    PadeCoefficients c;
    if (kind == "geometric") c = geometricSeriesPade(deg);
    else if (kind == "sqrt") c = sqrtPade(deg);
    else throw CovpoolError("TypeError: kind must be 'geometric' or 'sqrt'");
    Napi::Object r = Napi::Object::New(env);
    auto arr = [&](const std::vector<double>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (uint32_t i = 0; i < v.size(); ++i) a.Set(i, v[i]);
      return a;
    };
    r.Set("p", arr(c.p));
    r.Set("q", arr(c.q));
    return r;
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

// createControl(onProgress?) -> token; cancelControl(token); releaseControl(token)
Napi::Value CreateControl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* h = new ControlHolder();
  if (info.Length() > 0 && info[0].IsFunction()) {
    h->progress = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "covpool progress", 0, 1);
    h->progress.Unref(env);  // a pending report never keeps the process alive; the call itself does
    h->hasProgress = true;
    Napi::ThreadSafeFunction tsfn = h->progress;
    h->control->progress = [tsfn](std::size_t done, std::size_t total) mutable {
      auto* report = new std::pair<double, double>(static_cast<double>(done), static_cast<double>(total));
      if (tsfn.NonBlockingCall(report, [](Napi::Env e, Napi::Function cb, std::pair<double, double>* r) {
            std::unique_ptr<std::pair<double, double>> owned(r);
            if (e == nullptr || cb.IsEmpty()) return;
            try {
              cb.Call({Napi::Number::New(e, r->first), Napi::Number::New(e, r->second)});
            } catch (...) {
              // the JS wrapper catches the user's errors; nothing may escape into the runtime here
            }
          }) != napi_ok)
        delete report;
    };
  }
  auto ext = Napi::External<ControlHolder>::New(env, h, [](Napi::Env, ControlHolder* p) {
    p->releaseProgress();
    delete p;
  });
  ext.TypeTag(&kControlTag);
  return ext;
}

Napi::Value CancelControl(const Napi::CallbackInfo& info) {
  if (ControlHolder* h = info.Length() ? controlArg(info[0]) : nullptr) h->control->cancelled = true;
  return info.Env().Undefined();
}

// Called when the call has settled: progress reports can no longer come, so the JS callback is let go.
Napi::Value ReleaseControl(const Napi::CallbackInfo& info) {
  if (ControlHolder* h = info.Length() ? controlArg(info[0]) : nullptr) h->releaseProgress();
  return info.Env().Undefined();
}

// memoryStats() -> {host: {...}, devices: [...]}; emptyCache() -> bytes released
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const HostCacheStats s = hostCacheStats();
  Napi::Object host = Napi::Object::New(env);
  host.Set("allocatedBytes", static_cast<double>(s.allocatedBytes));
  host.Set("peakAllocatedBytes", static_cast<double>(s.peakAllocatedBytes));
  host.Set("cachedBytes", static_cast<double>(s.cachedBytes));
  host.Set("cacheLimitBytes", static_cast<double>(s.limitBytes));
  host.Set("scratchBytes", static_cast<double>(s.scratchBytes));
  host.Set("resultArrayBytes", static_cast<double>(resultArrayBytes()));
  Napi::Object r = Napi::Object::New(env);
  r.Set("host", host);
  Napi::Array devices = Napi::Array::New(env);
#ifdef COVPOOL_WITH_CUDA
  for (const DeviceMemoryStats& d : cudaMemoryStats()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", "cuda:" + std::to_string(d.device));
    o.Set("allocatedBytes", static_cast<double>(d.allocatedBytes));
    o.Set("cachedBytes", static_cast<double>(d.cachedBytes));
    devices.Set(devices.Length(), o);
  }
#endif
  r.Set("devices", devices);
  return r;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    double released = static_cast<double>(hostCacheRelease());
#ifdef COVPOOL_WITH_CUDA
    released += static_cast<double>(cudaEmptyCache());
#endif
    return Napi::Number::New(env, released);
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("backend", cpuBackend().name());
  r.Set("cuda", kCudaBuilt);
  r.Set("cudaDevices", cudaDeviceCount());
  if (kCudaBuilt) r.Set("cudaReason", cudaUnavailableReason());
#ifdef COVPOOL_CUDA_EMULATED
  // A test build: the CUDA backend runs on the emulated device (native/cuda/test/emulator), never
  // on a GPU. What the emulator saw so far comes with it, for the tests.
  r.Set("cudaEmulated", true);
  const CudaEmulatorReport e = cudaEmulatorReport();
  Napi::Object em = Napi::Object::New(env);
  em.Set("violations", e.violations);
  Napi::Array messages = Napi::Array::New(env);
  for (std::size_t k = 0; k < e.messages.size(); ++k) messages.Set(static_cast<uint32_t>(k), e.messages[k]);
  em.Set("messages", messages);
  em.Set("liveDeviceBlocks", static_cast<double>(e.liveDeviceBlocks));
  em.Set("liveDeviceBytes", static_cast<double>(e.liveDeviceBytes));
  em.Set("livePinnedBlocks", static_cast<double>(e.livePinnedBlocks));
  em.Set("livePinnedBytes", static_cast<double>(e.livePinnedBytes));
  em.Set("kernelLaunches", static_cast<double>(e.kernelLaunches));
  em.Set("blocksRun", static_cast<double>(e.blocksRun));
  em.Set("libraryCalls", static_cast<double>(e.libraryCalls));
  r.Set("cudaEmulator", em);
#endif
  r.Set("threads", poolThreads());
  Napi::Array methods = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& m : methodTable()) methods.Set(i++, m.name);
  r.Set("methods", methods);
  return r;
}

// ---- device-resident tensors ------------------------------------------------------------------------

// toDevice(array, device, [control], async) -> a device tensor handle holding a copy of the array.
Napi::Value ToDevice(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    if (info.Length() < 2 || !info[1].IsString()) failType("toDevice: the device must be a string");
    const std::string device = info[1].As<Napi::String>().Utf8Value();
    Backend* be = &backendFor(device);
    if (be == &cpuBackend()) failRange("toDevice: '" + device + "' is not a device; tensors on the CPU are plain arrays");
    if (!info[0].IsTypedArray()) failType("toDevice: the data must be a Float32Array or Float64Array");
    const std::size_t n = info[0].As<Napi::TypedArray>().ElementLength();
    requireBytes(double(n) * dtypeSize(dtypeArg(info, 0)), "a copy of " + std::to_string(n) + " elements to " + device);
    auto host = std::make_shared<Buffer>(bufferArg(info, 0, "the data", n));
    auto out = std::make_shared<Buffer>();
    return Task{[=] { *out = be->toDevice(*host); }, [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// toHost(handle, [control], async) -> a Float32Array/Float64Array copy of a device tensor.
Napi::Value ToHost(const Napi::CallbackInfo& info) {
  return submit(info, asyncFlag(info), [&] {
    auto d = std::make_shared<Buffer>(deviceTensorArg(info, 0, "toHost"));
    requireBytes(double(d->byteSize()), "a copy of " + std::to_string(d->size()) + " elements to the host");
    Backend* be = &backendOf({d.get()});
    auto out = std::make_shared<Buffer>();
    return Task{[=] { *out = be->toHost(*d); }, [=](Napi::Env e) { return toTypedArray(e, *out); }};
  });
}

// disposeDevice(handle): frees a device tensor's memory now (a call still using it keeps its own hold).
Napi::Value DisposeDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    disposeDeviceTensorArg(info, 0);
    return env.Undefined();
  } catch (const std::exception& e) {
    throw jsError(env, e.what());
  }
}

#ifdef COVPOOL_CUDA_EMULATED
// emulatorSetEnv(name, value | undefined): sets or clears an environment variable of this process,
// for the fault-injection tests (test/cuda-emulator.test.ts): the emulator reads its COVPOOL_EMU_*
// variables with getenv at each event, and jest's process.env is a copy that never reaches it.
// Only in the emulated test build.
Napi::Value EmulatorSetEnv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "emulatorSetEnv(name, value): name must be a string");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.rfind("COVPOOL_", 0) != 0) throw Napi::RangeError::New(env, "emulatorSetEnv: only COVPOOL_* variables");
  if (info.Length() < 2 || info[1].IsUndefined() || info[1].IsNull()) unsetenv(name.c_str());
  else setenv(name.c_str(), info[1].ToString().Utf8Value().c_str(), 1);
  return env.Undefined();
}
#endif

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  cpu::configureBlasThreads();
  initStates(env);
  exports.Set("covpool", Napi::Function::New(env, Covpool));
  exports.Set("covpoolBackward", Napi::Function::New(env, CovpoolBackward));
  exports.Set("triuvec", Napi::Function::New(env, Triuvec));
  exports.Set("triuvecBackward", Napi::Function::New(env, TriuvecBackward));
  exports.Set("eigh", Napi::Function::New(env, Eigh));
  exports.Set("sqrtm", Napi::Function::New(env, Sqrtm));
  exports.Set("layer", Napi::Function::New(env, Layer));
  exports.Set("backward", Napi::Function::New(env, Backward));
  exports.Set("coefficients", Napi::Function::New(env, Coefficients));
  exports.Set("stateInfo", Napi::Function::New(env, StateInfo));
  exports.Set("disposeState", Napi::Function::New(env, DisposeState));
  exports.Set("resolveOptions", Napi::Function::New(env, ResolveOptions));
  exports.Set("padeCoefficients", Napi::Function::New(env, PadeCoefficientsJs));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("createControl", Napi::Function::New(env, CreateControl));
  exports.Set("cancelControl", Napi::Function::New(env, CancelControl));
  exports.Set("releaseControl", Napi::Function::New(env, ReleaseControl));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCache));
  exports.Set("maxBytes", Napi::Function::New(env, MaxBytes));
  exports.Set("sweepStates", Napi::Function::New(env, SweepStates));
  exports.Set("preloadLibrary", Napi::Function::New(env, PreloadLibrary));
  exports.Set("toDevice", Napi::Function::New(env, ToDevice));
  exports.Set("toHost", Napi::Function::New(env, ToHost));
  exports.Set("disposeDevice", Napi::Function::New(env, DisposeDevice));
#ifdef COVPOOL_CUDA_EMULATED
  exports.Set("emulatorSetEnv", Napi::Function::New(env, EmulatorSetEnv));
#endif
  return exports;
}

}  // namespace covpool::addon

static Napi::Object InitCovpool(Napi::Env env, Napi::Object exports) { return covpool::addon::Init(env, exports); }
NODE_API_MODULE(covpool, InitCovpool)
