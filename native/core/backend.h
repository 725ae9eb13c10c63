// The backend-neutral op table. A backend (cpu/, later cuda/) implements these ops over Buffers;
// the addon layer only marshals JS values and picks a backend, so a new backend is one class.
//
// Shapes (row-major, batch first):
//   features x [B, C, N] (or [B, N, C] with Dims::channelsLast)   covariance A [B, C, C]
//   triangle y [B, C(C+1)/2]
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "buffer.h"
#include "methods.h"

namespace covpool {

struct Dims {
  int B = 0, C = 0, N = 0;
  // Features laid out [B, N, C] (NHWC flattened) instead of [B, C, N]. Only backends whose
  // channelsLastFeatures() is true are given such dims; for the others the addon transposes.
  bool channelsLast = false;
};

// What a state was made by; backward checks it was given a state of the right kind and shape.
enum class StateKind { Sqrtm, Layer };

// Everything a backward pass needs from its forward pass. Immutable after the forward, so one
// state may be used by several backward calls, concurrently.
class State {
 public:
  virtual ~State() = default;
  StateKind kind = StateKind::Layer;
  Dims dims;
  DType dtype = DType::F32;  // input/output dtype of the forward
  SqrtmOptions options;
  bool vectorize = true;     // layer states: output is the upper triangle
  // Channels-last features the backend took transposed to [B, C, N] (the addon did it, for a
  // backend without channelsLastFeatures()): its gradient is transposed back to [B, N, C].
  bool hostTransposedFeatures = false;
  class Backend* backend = nullptr;  // the backend that made it, and so must run its backward
  std::uint64_t id = nextId();
  // Records what the forward was (every backend's forward starts with this).
  void describe(StateKind k, Dims d, DType t, const SqrtmOptions& o, bool vec) {
    kind = k;
    dims = d;
    dtype = t;
    options = o;
    vectorize = vec;
  }
  // Host bytes this state holds, reported to the JS garbage collector.
  virtual std::size_t bytes() const { return 0; }

 private:
  static std::uint64_t nextId() {
    static std::atomic<std::uint64_t> counter{1};
    return counter++;
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Whether covpool / covpoolBackward / layer accept Dims::channelsLast features natively.
  virtual bool channelsLastFeatures() const { return false; }

  virtual Buffer covpool(const Buffer& x, Dims d) = 0;
  virtual Buffer covpoolBackward(const Buffer& x, const Buffer& dA, Dims d) = 0;
  virtual Buffer triuvec(const Buffer& s, int B, int C) = 0;
  virtual Buffer triuvecBackward(const Buffer& dy, int B, int C) = 0;
  // Input matrices of eigh and sqrtm must be symmetric within the per-item check (100 eps max|A|).
  // Where an eigensolver decomposes them (eigh, sqrtm's eigen methods), every backend decomposes the
  // row-major lower triangle, mirrored over the upper one (cpu: mirrorLowerToUpper; cuda: mirrorLower),
  // so both see the same matrix; the iterative methods (ns, mpa-lya) use the matrix as given.
  // Ascending eigenvalues [B, C] and eigenvectors as columns [B, C, C], in the input dtype.
  virtual void eigh(const Buffer& a, int B, int C, Buffer& values, Buffer& vectors) = 0;

  // Matrix square root of a batch of symmetric PSD matrices [B, C, C].
  virtual std::shared_ptr<State> sqrtm(const Buffer& a, int B, int C, const SqrtmOptions& o, Buffer& s) = 0;
  // Whole meta-layer: covpool -> sqrtm -> (triuvec if vectorize).
  virtual std::shared_ptr<State> layer(const Buffer& x, Dims d, const SqrtmOptions& o, bool vectorize, Buffer& y) = 0;
  // Backward of either: returns dA for sqrtm states, dX for layer states.
  virtual Buffer backward(const State& st, const Buffer& dOut) = 0;

  // Device-resident tensors, for backends with a device (the CPU backend has none). Every op above
  // takes device buffers (Buffer::onDevice) of this backend's device as well as host ones, and
  // returns its results where its first input was: on the device, or on the host.
  // A copy of host data on this backend's device, and of a device buffer's data on the host.
  virtual Buffer toDevice(const Buffer& host);
  virtual Buffer toHost(const Buffer& device);
  // The lowest of `items` equal parts of a device buffer holding a NaN or an infinity, or -1
  // (the addon's finiteness check of results, where the results are).
  virtual long firstNonFiniteItem(const Buffer& device, std::size_t items);

  // Analysis: the backward coefficient matrix F [B, C, C] (F_ij = coefficient of u_i in du_j, or
  // C_ij = 1/(sqrt l_i + sqrt l_j) for svd-lyap) that an eigen-based method builds from the given
  // ascending eigenvalues [B, C] (float64), before or after the non-finite replacement.
  virtual Buffer coefficients(const Buffer& values, int B, int C, const SqrtmOptions& o, bool replace) = 0;
};

Backend& cpuBackend();

// Defaults for backends without a device (the CPU backend): the addon never hands them device
// buffers (it picks the backend by where the inputs live), so reaching these is a bug.
inline Buffer Backend::toDevice(const Buffer&) { fail(std::string("the ") + name() + " backend keeps no tensors on a device"); }
inline Buffer Backend::toHost(const Buffer&) { fail(std::string("the ") + name() + " backend keeps no tensors on a device"); }
inline long Backend::firstNonFiniteItem(const Buffer&, std::size_t) {
  fail(std::string("the ") + name() + " backend keeps no tensors on a device");
}

}  // namespace covpool
