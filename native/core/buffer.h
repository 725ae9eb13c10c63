// A flat, owned, typed block of host memory: what the backends compute on. Inputs from JS are
// copied into Buffers before any work starts, so a caller that detaches or mutates its
// ArrayBuffer while an async call runs cannot corrupt the computation or crash the process.
#pragma once
#include <cstring>
#include <memory>
#include <vector>

#include "dtype.h"
#include "host_cache.h"
#include "errors.h"

namespace covpool {

class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::size_t count) : dtype_(dtype), count_(count), bytes_(count * dtypeSize(dtype)) {}  // not zeroed
  static Buffer copyOf(DType dtype, const void* src, std::size_t count) {
    Buffer b(dtype, count);
    if (count) std::memcpy(b.raw(), src, count * dtypeSize(dtype));
    return b;
  }

  DType dtype() const { return dtype_; }
  std::size_t size() const { return count_; }
  std::size_t byteSize() const { return bytes_.size(); }
  void* raw() { return bytes_.data(); }
  const void* raw() const { return bytes_.data(); }

  template <class T> T* as() {
    if (DTypeOf<T>::value != dtype_) fail("internal: buffer dtype mismatch");
    return reinterpret_cast<T*>(bytes_.data());
  }
  template <class T> const T* as() const {
    if (DTypeOf<T>::value != dtype_) fail("internal: buffer dtype mismatch");
    return reinterpret_cast<const T*>(bytes_.data());
  }

 private:
  DType dtype_ = DType::F32;
  std::size_t count_ = 0;
  CachedArray<unsigned char> bytes_;  // 64-byte aligned, recycled across calls
};

}  // namespace covpool
