#include "states.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../core/errors.h"

namespace covpool::addon {
namespace {

const napi_type_tag kStateTag = {0x636f76706f6f6c31ULL, 0x7374617465000001ULL};

struct StateHolder {
  std::shared_ptr<State> state;  // null once freed
  std::size_t bytes = 0;         // what was reported to V8 and counted as live
  napi_env env = nullptr;
  napi_ref weak = nullptr;       // refcount 0: the GC clears it the moment the external dies
};

struct EnvBook {
  std::size_t sinceSweep = 0;      // states made since the last sweep
  std::size_t liveAfterSweep = 0;  // states alive right after it
};

// Every holder not yet finalized, over all environments (the main thread and workers). Reachable
// from a global, so leak checkers do not report states alive at a process.exit() as lost.
struct Registry {
  std::mutex mu;
  std::unordered_set<StateHolder*> holders;
  std::unordered_map<napi_env, EnvBook> envs;
};
Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: finalizers may run during teardown
  return *r;
}
std::atomic<std::size_t> gLiveCount{0}, gLiveBytes{0};

// Frees the state's memory; `adjust` tells V8 the external memory is gone (not during teardown).
void release(StateHolder* h, bool adjust) {
  if (!h->state) return;
  if (adjust && h->bytes) {
    int64_t ignored = 0;
    napi_adjust_external_memory(h->env, -static_cast<int64_t>(h->bytes), &ignored);
  }
  gLiveCount--;
  gLiveBytes -= h->bytes;
  h->bytes = 0;
  h->state.reset();
}

// Frees the states of `env` whose JS values the garbage collector has already collected. Their
// finalizers only run once the event loop turns; a synchronous training loop never lets it.
void sweep(napi_env env) {
  std::vector<StateHolder*> candidates;
  Registry& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (StateHolder* h : r.holders)
      if (h->env == env && h->state) candidates.push_back(h);
  }
  std::size_t alive = 0;
  for (StateHolder* h : candidates) {
    napi_value v = nullptr;
    if (napi_get_reference_value(env, h->weak, &v) == napi_ok && v == nullptr) release(h, true);
    else ++alive;
  }
  std::lock_guard<std::mutex> lock(r.mu);
  EnvBook& book = r.envs[env];
  book.sinceSweep = 0;
  book.liveAfterSweep = alive;
}

// Sweeps when the states made since the last sweep reach half of those alive after it (at least
// 32): the cost stays proportional to the states made, and dead ones cannot pile up past that.
void maybeSweep(napi_env env) {
  bool due;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    EnvBook& book = r.envs[env];
    due = ++book.sinceSweep >= std::max<std::size_t>(32, book.liveAfterSweep / 2);
  }
  if (due) sweep(env);
}

void onTeardown(void* arg) {
  const napi_env env = static_cast<napi_env>(arg);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (StateHolder* h : r.holders)
    if (h->env == env) release(h, false);
  r.envs.erase(env);
}

void finalize(Napi::Env env, StateHolder* h) {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.holders.erase(h);
  }
  release(h, true);
  if (h->weak) napi_delete_reference(env, h->weak);
  delete h;
}

StateHolder* holderAt(const Napi::CallbackInfo& info, std::size_t index) {
  if (index >= info.Length() || !info[index].IsExternal())
    throw CovpoolError("TypeError: state must be the state object returned by a forward call");
  auto ext = info[index].As<Napi::External<StateHolder>>();
  if (!ext.CheckTypeTag(&kStateTag)) throw CovpoolError("TypeError: state is not a covpool state");
  return ext.Data();
}

}  // namespace

void initStates(Napi::Env env) { napi_add_env_cleanup_hook(env, onTeardown, static_cast<napi_env>(env)); }

Napi::Value wrapState(Napi::Env env, std::shared_ptr<State> st) {
  maybeSweep(env);
  auto* h = new StateHolder;
  h->state = std::move(st);
  h->bytes = h->state->bytes();
  h->env = env;
  auto ext = Napi::External<StateHolder>::New(env, h, finalize);
  ext.TypeTag(&kStateTag);
  if (napi_create_reference(env, ext, 0, &h->weak) != napi_ok) h->weak = nullptr;
  gLiveCount++;
  gLiveBytes += h->bytes;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    r.holders.insert(h);
  }
  if (h->bytes) Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(h->bytes));
  return ext;
}

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
