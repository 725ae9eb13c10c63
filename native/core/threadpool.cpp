#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace covpool {

namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> lk(m_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [this] { return stop_ || !q_.empty(); });
        if (stop_ && q_.empty()) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      f();
    }
  }
  std::vector<std::thread> threads_;
  std::deque<std::function<void()>> q_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
};

Pool& pool() {
  // Helpers are poolThreads()-1: the thread that calls parallelFor works too. Leaked on purpose:
  // joining threads from a static destructor at process exit can deadlock inside the runtime.
  static Pool* p = new Pool(poolThreads() - 1 > 0 ? poolThreads() - 1 : 0);
  return *p;
}

thread_local CallControl* currentControl = nullptr;

// Shared by the caller and the helpers it enqueued; helpers that start late find no work left.
struct Job {
  std::size_t n = 0;       // groups
  std::size_t items = 0;   // items over all groups (progress counts these)
  std::size_t group = 1;   // items per group (the last may have fewer)
  const std::function<void(std::size_t, std::size_t)>* body = nullptr;
  CallControl* control = nullptr;  // the calling thread's, valid until parallelFor returns
  std::atomic<std::size_t> next{0};
  std::size_t done = 0;  // guarded by m
  std::size_t succeeded = 0;  // guarded by m: what progress reports (cancelled items are not done work)
  std::exception_ptr error;  // of the lowest failing item, so the error reported is deterministic
  std::size_t errorIndex = 0;
  std::mutex m;
  std::condition_variable cv;

  void work() {
    for (;;) {
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      std::exception_ptr err;
      const std::size_t first = i * group, count = std::min(group, items - first);
      try {
        if (control && control->cancelled.load()) throw CallCancelled();
        (*body)(first, count);
      } catch (...) {
        err = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(m);
      if (err && (!error || i < errorIndex)) {
        error = err;
        errorIndex = i;
      }
      // Under the lock, so the reports are in order and all made before the caller returns.
      if (!err)
        for (std::size_t k = 0; k < count; ++k)
          if (++succeeded && control && control->progress) control->progress(succeeded, items);
      if (++done == n) cv.notify_all();
    }
  }
};

}  // namespace

int poolThreads() {
  static const int n = [] {
    if (const char* env = std::getenv("COVPOOL_NUM_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return v;
    }
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
  }();
  return n;
}

CallScope::CallScope(CallControl* control) : previous_(currentControl) { currentControl = control; }
CallScope::~CallScope() { currentControl = previous_; }

void parallelForGroups(std::size_t items, std::size_t group, const std::function<void(std::size_t, std::size_t)>& body) {
  if (items == 0) return;
  if (group == 0) group = 1;
  const std::size_t n = (items + group - 1) / group;
  CallControl* control = currentControl;
  if (n == 1 || poolThreads() == 1) {
    for (std::size_t g = 0; g < n; ++g) {
      if (control && control->cancelled.load()) throw CallCancelled();
      const std::size_t first = g * group, count = std::min(group, items - first);
      body(first, count);
      if (control && control->progress)
        for (std::size_t k = 1; k <= count; ++k) control->progress(first + k, items);
    }
    return;
  }
  auto job = std::make_shared<Job>();
  job->n = n;
  job->items = items;
  job->group = group;
  job->control = control;
  job->body = &body;  // valid until we return, and we return only when all n groups are done
  const std::size_t helpers = std::min<std::size_t>(n - 1, static_cast<std::size_t>(poolThreads() - 1));
  for (std::size_t h = 0; h < helpers; ++h) pool().submit([job] { job->work(); });
  job->work();
  std::unique_lock<std::mutex> lk(job->m);
  job->cv.wait(lk, [&] { return job->done == job->n; });
  if (job->error) std::rethrow_exception(job->error);
}

void parallelFor(std::size_t n, const std::function<void(std::size_t)>& body) {
  parallelForGroups(n, 1, [&](std::size_t first, std::size_t) { body(first); });
}

}  // namespace covpool
