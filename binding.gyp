{
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
        "native/addon/addon.cpp"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/x86_64-linux-gnu/openblas-pthread"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lopenblas", "-llapacke"]
    }
  ]
}
