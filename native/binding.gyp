{
  # The addon's node-gyp build. Paths are relative to this folder (native/). Built from the
  # repository's top level through ../binding.gyp, and in an installed package from this folder by
  # `npx covpool-build` (scripts/build-from-source.js): the package has no binding.gyp at its root.
  # COVPOOL_STATIC_BLAS=1 (set by `npm run build:prebuilt:here`, which scripts/build-prebuilt.sh runs
  # in a Debian 11 chroot) links OpenBLAS, LAPACKE and the C++ runtime statically, so the prebuilt
  # binaries need nothing but the C library (glibc >= 2.28); the default source build links them
  # dynamically. scripts/blas-paths.js finds OpenBLAS/LAPACKE for the compiler's architecture.
  "variables": {
    "static_blas%": "<!(node -p \"process.env.COVPOOL_STATIC_BLAS === '1' ? 'true' : 'false'\")",
    "blas_lib_dir%": "<!(node ../scripts/blas-paths.js libdir)"
  },
  "targets": [
    {
      "target_name": "covpool",
      "sources": [
        "core/methods.cpp",
        "core/pade.cpp",
        "core/threadpool.cpp",
        "core/host_cache.cpp",
        "cpu/blas.cpp",
        "cpu/cpu_backend.cpp",
        "addon/marshal.cpp",
        "addon/states.cpp",
        "addon/addon.cpp",
        "addon/preload.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node ../scripts/blas-paths.js include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["static_blas=='true'", {
          "sources": ["cpu/static/gfortran_runtime.c", "cpu/static/glibc_compat.c"],
          "ldflags": ["-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL", "-L<(blas_lib_dir)",
                      "-Wl,--wrap=exp", "-Wl,--wrap=log", "-Wl,--wrap=pow", "-Wl,--wrap=exp2", "-Wl,--wrap=log2"],
          "libraries": ["-Wl,-Bstatic", "-llapacke", "-lopenblas", "-Wl,-Bdynamic", "-lpthread", "-lm", "-ldl"]
        }, {
          "libraries": ["-lopenblas", "-llapacke", "-ldl"]
        }]
      ]
    }
  ]
}
