// preloadLibrary(path): dlopen a shared library with RTLD_NOW | RTLD_GLOBAL and keep it loaded.
// The CUDA-enabled binary depends on cuBLAS and cuSOLVER (libcublas.so.13, libcusolver.so.12, and
// what they need). Those live in places the dynamic loader does not search unless LD_LIBRARY_PATH
// says so (CUDA_HOME, pip-installed nvidia wheels), and LD_LIBRARY_PATH cannot be changed once the
// process runs. lib/cuda.ts therefore finds each library itself and loads it through this function,
// in dependency order; once a library with a given soname is loaded, the loader satisfies later
// dependencies on that soname with it, so the CUDA binary then loads from anywhere.
#include <dlfcn.h>

// glibc 2.34 moved dlopen into libc under a new symbol version; bind the x86-64 baseline version
// instead, which every glibc provides, so the prebuilt binaries keep loading on older systems.
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
#endif

#include "preload.h"

namespace covpool::addon {

Napi::Value PreloadLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "covpool: preloadLibrary(path) takes a path string");
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  dlerror();
  // Never closed: the CUDA binary that needs it stays loaded for the life of the process.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) return env.Null();
  const char* why = dlerror();
  return Napi::String::New(env, why ? why : ("dlopen failed for " + path).c_str());
}

}  // namespace covpool::addon
