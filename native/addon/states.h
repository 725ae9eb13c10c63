// Backward states (and device-resident tensors) as JS values, and the rules that keep their native
// memory bounded:
//  - a state is an External holding a shared_ptr<State>, type-tagged so no other external passes;
//  - dispose (explicit, or by a backward that does not retain it) frees the memory at once;
//  - a state the program dropped is freed by the next forward after the garbage collector found it
//    dead (or by sweepStates, which lib/ calls from a FinalizationRegistry), not by a Node
//    finalizer: those wait for the event loop to turn, so a synchronous loop grew without bound;
//  - at environment teardown (process end, worker exit) every remaining state is freed.
#pragma once
#include <napi.h>

#include <cstddef>
#include <memory>

#include "../core/backend.h"

namespace covpool::addon {

// Registers the teardown hook for this environment (call once per module instance).
void initStates(Napi::Env env);

// A new state value for the JS side (sweeps states found dead since the last sweep first).
Napi::Value wrapState(Napi::Env env, std::shared_ptr<State> st);

// Frees now the states of this environment that the garbage collector has collected.
void sweepStates(Napi::Env env);

// The state behind a JS value; throws a TypeError for anything that is not a live state.
std::shared_ptr<State> stateArg(const Napi::CallbackInfo& info, std::size_t index);

// Frees a state's native memory now (a backward still running holds its own reference).
void disposeStateArg(const Napi::CallbackInfo& info, std::size_t index);

// Device-resident tensors are handles of the same kind (another type tag): freed by dispose, or by a
// sweep once the garbage collector has collected the handle, or at teardown.
Napi::Value wrapDeviceTensor(Napi::Env env, Buffer&& deviceBuffer);
bool isDeviceTensor(const Napi::Value& v);
// The tensor's device buffer (it shares the memory); throws when it was disposed.
Buffer deviceTensorArg(const Napi::CallbackInfo& info, std::size_t index, const char* what);
void disposeDeviceTensorArg(const Napi::CallbackInfo& info, std::size_t index);

// {disposed, state (or null)} for the state at `index`.
struct StateLookup {
  bool disposed;
  std::shared_ptr<State> state;
};
StateLookup lookupState(const Napi::CallbackInfo& info, std::size_t index);

// States not yet freed, over all environments, and the bytes they hold.
struct LiveStates {
  std::size_t count, bytes;
};
LiveStates liveStates();

}  // namespace covpool::addon
