// The timer the microbenchmarks in bench/native share: CPU time of the calling thread, so that other
// tenants of a shared machine inflate a measurement less than wall-clock time would.
#pragma once

#include <time.h>

#include <algorithm>
#include <vector>

inline double threadCpuUs() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

// Lower-quartile CPU time of `reps` calls of f, in microseconds.
template <class F> double cpuUs(F&& f, int reps) {
  std::vector<double> v;
  for (int r = 0; r < reps; ++r) {
    const double t = threadCpuUs();
    f();
    v.push_back(threadCpuUs() - t);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 4];
}
