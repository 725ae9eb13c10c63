/* Binds the libm functions whose default symbol version glibc 2.29 changed (new implementations
 * without the SVID error-handling wrapper) to their original version, so that the prebuilt binary,
 * linked against Debian 11's glibc 2.31, still loads on glibc 2.28. Only the prebuilt binary is
 * linked with this file, together with -Wl,--wrap=<name> for each function below (binding.gyp):
 * the linker sends every call to <name> from our code and from the static OpenBLAS/LAPACKE to
 * __wrap_<name>, which calls the old version. The old versions compute the same values; they differ
 * only in how errors (domain, overflow) are reported through errno, which nothing here reads.
 * test/package.test.ts audits the result (no symbol version above GLIBC_2.28). */
#if defined(__x86_64__)
#define COVPOOL_GLIBC_BASE "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define COVPOOL_GLIBC_BASE "GLIBC_2.17"
#else
#error "glibc_compat.c: no base symbol version known for this architecture"
#endif

#define COVPOOL_OLD_VERSION(name, ret, params, args)                                 \
  ret covpool_old_##name params;                                                     \
  __asm__(".symver covpool_old_" #name "," #name "@" COVPOOL_GLIBC_BASE);            \
  ret __wrap_##name params;                                                          \
  ret __wrap_##name params { return covpool_old_##name args; }

COVPOOL_OLD_VERSION(exp, double, (double x), (x))
COVPOOL_OLD_VERSION(log, double, (double x), (x))
COVPOOL_OLD_VERSION(pow, double, (double x, double y), (x, y))
COVPOOL_OLD_VERSION(exp2, double, (double x), (x))
COVPOOL_OLD_VERSION(log2, double, (double x), (x))
