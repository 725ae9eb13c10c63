{
  # COVPOOL_STATIC_BLAS=1 (set by `npm run prebuild`) links OpenBLAS and LAPACKE statically, so the
  # prebuilt binary needs nothing but the C runtime; the default source build links them dynamically.
  "variables": {
    "static_blas%": "<!(node -p \"process.env.COVPOOL_STATIC_BLAS === '1' ? 'true' : 'false'\")",
    "blas_lib_dir%": "<!(node -p \"require('fs').existsSync('/usr/lib/x86_64-linux-gnu/openblas-pthread') ? '/usr/lib/x86_64-linux-gnu/openblas-pthread' : '/usr/lib'\")"
  },
  "targets": [
    {
      "target_name": "covpool",
      "sources": [
        "native/core/methods.cpp",
        "native/core/pade.cpp",
        "native/core/threadpool.cpp",
        "native/core/host_cache.cpp",
        "native/cpu/blas.cpp",
        "native/cpu/cpu_backend.cpp",
        "native/addon/marshal.cpp",
        "native/addon/states.cpp",
        "native/addon/addon.cpp",
        "native/addon/preload.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/x86_64-linux-gnu/openblas-pthread",
        "/usr/include/openblas"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["static_blas=='true'", {
          "sources": ["native/cpu/static/gfortran_runtime.c"],
          "ldflags": ["-static-libstdc++", "-static-libgcc", "-Wl,--exclude-libs,ALL", "-L<(blas_lib_dir)"],
          "libraries": ["-Wl,-Bstatic", "-llapacke", "-lopenblas", "-Wl,-Bdynamic", "-lpthread", "-lm", "-ldl"]
        }, {
          "libraries": ["-lopenblas", "-llapacke", "-ldl"]
        }]
      ]
    }
  ]
}
