#include "states.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../core/errors.h"

namespace covpool::addon {
namespace {

const napi_type_tag kStateTag = {0x636f76706f6f6c31ULL, 0x7374617465000001ULL};
const napi_type_tag kTensorTag = {0x636f76706f6f6c31ULL, 0x74656e736f720001ULL};

// One handle: a backward state, or the device memory of a device-resident tensor. Both live and
// die by the same rules (below); only states count in liveStates().
struct StateHolder {
  std::uint64_t id = 0;          // the handle's read-only `id`
  std::shared_ptr<State> state;  // null once freed
  std::shared_ptr<DeviceStorage> storage;  // a device tensor's memory instead (null once freed)
  DType dtype = DType::F32;      // the device tensor's element type and count
  std::size_t count = 0;
  std::size_t bytes = 0;         // what was reported to V8 and counted as live
  napi_env env = nullptr;
  napi_ref weak = nullptr;       // refcount 0: the GC clears it the moment the handle dies
  bool alive() const { return state || storage; }
};

struct EnvBook {
  std::size_t sinceSweep = 0, sinceSweepBytes = 0;          // states (and their bytes) made since the last sweep
  std::size_t liveAfterSweep = 0, liveBytesAfterSweep = 0;  // states (and bytes) alive right after it
};

// Every holder not yet swept, by id, over all environments (the main thread and workers).
// Reachable from a global, so leak checkers do not report states alive at a process.exit().
struct Registry {
  std::mutex mu;
  std::uint64_t nextId = 1;
  std::unordered_map<std::uint64_t, StateHolder*> holders;
  std::unordered_map<napi_env, EnvBook> envs;
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: a worker's teardown may come after static destructors
  return *r;
}
std::atomic<std::size_t> gLiveCount{0}, gLiveBytes{0};

// Frees the handle's memory; `adjust` tells V8 the external memory is gone (not during teardown).
void release(StateHolder* h, bool adjust) {
  if (!h->alive()) return;
  if (adjust && h->bytes) {
    int64_t ignored = 0;
    napi_adjust_external_memory(h->env, -static_cast<int64_t>(h->bytes), &ignored);
  }
  if (h->state) {
    gLiveCount--;
    gLiveBytes -= h->bytes;
  }
  h->bytes = 0;
  h->state.reset();
  h->storage.reset();
}

// Frees the states of `env` whose JS handles the garbage collector has collected, and their
// holders. A handle is a plain type-tagged object, not an External with a finalizer: Node runs
// finalizers only once the event loop turns (a synchronous training loop never lets it), and keeps
// a native record per External that leak checkers report as lost at exit. The weak reference is
// cleared by the GC itself.
void sweep(napi_env env) {
  std::vector<StateHolder*> dead;
  std::size_t alive = 0, aliveBytes = 0;
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (auto& [id, h] : r.holders) {
      if (h->env != env) continue;
      napi_value v = nullptr;
      if (napi_get_reference_value(env, h->weak, &v) == napi_ok && v == nullptr) {
        dead.push_back(h);
      } else {
        ++alive;
        aliveBytes += h->bytes;
      }
    }
    for (StateHolder* h : dead) r.holders.erase(h->id);
    EnvBook& book = r.envs[env];
    book.sinceSweep = book.sinceSweepBytes = 0;
    book.liveAfterSweep = alive;
    book.liveBytesAfterSweep = aliveBytes;
  }
  for (StateHolder* h : dead) {
    release(h, true);
    napi_delete_reference(env, h->weak);
    delete h;
  }
}

// Sweeps when the states made since the last sweep reach half of those alive after it, in number
// (at least 32) or in bytes (at least 64 MB; one cpu-l ns state is 70 MB): the cost stays
// proportional to the states made, and dead ones cannot pile up past that.
void maybeSweep(napi_env env, std::size_t bytes) {
  bool due;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    EnvBook& book = r.envs[env];
    book.sinceSweepBytes += bytes;
    due = ++book.sinceSweep >= std::max<std::size_t>(32, book.liveAfterSweep / 2) ||
          book.sinceSweepBytes >= std::max<std::size_t>(std::size_t(64) << 20, book.liveBytesAfterSweep / 2);
  }
  if (due) sweep(env);
}

// Environment teardown (the end of the process or of a worker): every state of it is freed.
void onTeardown(void* arg) {
  const napi_env env = static_cast<napi_env>(arg);
  std::vector<StateHolder*> mine;
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (auto& [id, h] : r.holders)
      if (h->env == env) mine.push_back(h);
    for (StateHolder* h : mine) r.holders.erase(h->id);
    r.envs.erase(env);
  }
  for (StateHolder* h : mine) {
    release(h, false);
    napi_delete_reference(env, h->weak);
    delete h;
  }
}

StateHolder* holderAt(const Napi::CallbackInfo& info, std::size_t index, const napi_type_tag* tag = &kStateTag) {
  const bool tensor = tag == &kTensorTag;
  if (index >= info.Length() || !info[index].IsObject())
    throw CovpoolError(tensor ? "TypeError: expected a device tensor handle" : "TypeError: state must be the state object returned by a forward call");
  Napi::Object o = info[index].As<Napi::Object>();
  if (!o.CheckTypeTag(tag)) throw CovpoolError(tensor ? "TypeError: not a covpool device tensor" : "TypeError: state is not a covpool state");
  const Napi::Value id = o.Get("id");  // read-only, set natively with the tag
  if (!id.IsNumber()) throw CovpoolError("TypeError: state is not a covpool state");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.holders.find(static_cast<std::uint64_t>(id.As<Napi::Number>().DoubleValue()));
  if (it == r.holders.end() || it->second->env != static_cast<napi_env>(info.Env()))
    throw CovpoolError("TypeError: state is not a state of this thread (or its environment has ended)");
  return it->second;
}

}  // namespace

void initStates(Napi::Env env) { napi_add_env_cleanup_hook(env, onTeardown, static_cast<napi_env>(env)); }

namespace {
// A new handle for the holder (its state or storage and bytes set), registered and reported to V8.
Napi::Value wrap(Napi::Env env, std::unique_ptr<StateHolder> holder, const napi_type_tag* tag) {
  holder->env = env;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    holder->id = r.nextId++;
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.DefineProperty(Napi::PropertyDescriptor::Value("id", Napi::Number::New(env, static_cast<double>(holder->id)), napi_enumerable));
  handle.TypeTag(tag);
  handle.Freeze();
  if (napi_create_reference(env, handle, 0, &holder->weak) != napi_ok) throw CovpoolError("internal: cannot track the handle");
  StateHolder* h = holder.release();
  if (h->state) {
    gLiveCount++;
    gLiveBytes += h->bytes;
  }
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.holders.emplace(h->id, h);
  }
  if (h->bytes) Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(h->bytes));
  return handle;
}
}  // namespace

Napi::Value wrapState(Napi::Env env, std::shared_ptr<State> st) {
  maybeSweep(env, st->bytes());
  auto holder = std::make_unique<StateHolder>();
  holder->state = std::move(st);
  holder->bytes = holder->state->bytes();
  return wrap(env, std::move(holder), &kStateTag);
}

Napi::Value wrapDeviceTensor(Napi::Env env, Buffer&& b) {
  maybeSweep(env, b.byteSize());
  auto holder = std::make_unique<StateHolder>();
  holder->storage = b.storage();
  holder->dtype = b.dtype();
  holder->count = b.size();
  holder->bytes = b.byteSize();
  return wrap(env, std::move(holder), &kTensorTag);
}

bool isDeviceTensor(const Napi::Value& v) { return v.IsObject() && v.As<Napi::Object>().CheckTypeTag(&kTensorTag); }

Buffer deviceTensorArg(const Napi::CallbackInfo& info, std::size_t index, const char* what) {
  StateHolder* h = holderAt(info, index, &kTensorTag);
  if (!h->storage) throw CovpoolError(std::string(what) + ": the device tensor was disposed");
  return Buffer::onDevice(h->dtype, h->count, h->storage);
}

void disposeDeviceTensorArg(const Napi::CallbackInfo& info, std::size_t index) { release(holderAt(info, index, &kTensorTag), true); }

void sweepStates(Napi::Env env) { sweep(env); }

std::shared_ptr<State> stateArg(const Napi::CallbackInfo& info, std::size_t index) {
  StateHolder* h = holderAt(info, index);
  if (!h->state) throw CovpoolError("the state was disposed; run the forward pass again");
  return h->state;
}

void disposeStateArg(const Napi::CallbackInfo& info, std::size_t index) { release(holderAt(info, index), true); }

StateLookup lookupState(const Napi::CallbackInfo& info, std::size_t index) {
  StateHolder* h = holderAt(info, index);
  return {!h->state, h->state};
}

LiveStates liveStates() { return {gLiveCount.load(), gLiveBytes.load()}; }

}  // namespace covpool::addon
