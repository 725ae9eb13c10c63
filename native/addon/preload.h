// preloadLibrary(path) -> null, or the dynamic loader's error text (see preload.cpp).
#pragma once
#include <napi.h>

namespace covpool::addon {
Napi::Value PreloadLibrary(const Napi::CallbackInfo& info);
}
