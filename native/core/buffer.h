// A flat, owned, typed block of memory: what the backends compute on. Host memory for arrays from
// JS, which are copied into Buffers before any work starts, so a caller that detaches or mutates
// its ArrayBuffer while an async call runs cannot corrupt the computation or crash the process; or
// memory on a device (a device-resident tensor), held through the backend's DeviceStorage, which
// only that backend can read.
#pragma once
#include <cstring>
#include <memory>
#include <vector>

#include "dtype.h"
#include "host_cache.h"
#include "errors.h"

namespace covpool {

// Memory a backend keeps on its device for one tensor (native/cuda: a block of its caching
// allocator). Freed when the last Buffer holding it goes (a dispose, a collected JS tensor, the end
// of a call that used it); freeing makes no device call, so any thread may do it.
class DeviceStorage {
 public:
  virtual ~DeviceStorage() = default;
  virtual void* data() const = 0;  // a device pointer
  virtual int device() const = 0;  // the CUDA ordinal
};

class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, std::size_t count) : dtype_(dtype), count_(count), bytes_(count * dtypeSize(dtype)) {}  // not zeroed
  static Buffer copyOf(DType dtype, const void* src, std::size_t count) {
    Buffer b(dtype, count);
    if (count) std::memcpy(b.raw(), src, count * dtypeSize(dtype));
    return b;
  }

  // count elements of dtype in `storage` on its device.
  static Buffer onDevice(DType dtype, std::size_t count, std::shared_ptr<DeviceStorage> storage) {
    Buffer b;
    b.dtype_ = dtype;
    b.count_ = count;
    b.device_ = std::move(storage);
    return b;
  }

  DType dtype() const { return dtype_; }
  std::size_t size() const { return count_; }
  std::size_t byteSize() const { return count_ * dtypeSize(dtype_); }
  // Whether the data lives on a device (then only the backend that owns the storage can read it).
  bool onDevice() const { return device_ != nullptr; }
  const std::shared_ptr<DeviceStorage>& storage() const { return device_; }
  void* raw() { return host(); }
  const void* raw() const { return const_cast<Buffer*>(this)->host(); }

  // Hands the host memory over (the Buffer is left empty): the caller frees it with
  // cachedFree(p, byteSize() as read before the call). For results whose memory JS takes over.
  void* releaseHostMemory() {
    host();  // not for device data
    count_ = 0;
    return bytes_.releaseOwnership();
  }

  template <class T> T* as() {
    if (DTypeOf<T>::value != dtype_) fail("internal: buffer dtype mismatch");
    return reinterpret_cast<T*>(host());
  }
  template <class T> const T* as() const {
    if (DTypeOf<T>::value != dtype_) fail("internal: buffer dtype mismatch");
    return reinterpret_cast<const T*>(const_cast<Buffer*>(this)->host());
  }

 private:
  unsigned char* host() {
    if (device_) fail("internal: device memory read as host memory");
    return bytes_.data();
  }
  DType dtype_ = DType::F32;
  std::size_t count_ = 0;
  CachedArray<unsigned char> bytes_;       // host data: 64-byte aligned, recycled across calls
  std::shared_ptr<DeviceStorage> device_;  // or device data
};

}  // namespace covpool
