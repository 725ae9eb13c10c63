/* The two libgfortran routines that Debian's static OpenBLAS (its LAPACK part is Fortran) refers
 * to. Only the prebuilt binary links OpenBLAS statically, and libgfortran.a cannot go into a shared
 * object (it is not position-independent), so these small equivalents stand in for it:
 *   _gfortran_concat_string  Fortran string concatenation (used to build XERBLA's routine names)
 *   _gfortran_etime          CPU time (used by LAPACK's SECOND/DSECND timers)
 * Semantics follow the Fortran rules: results are blank-padded or truncated to the destination. */
#include <stddef.h>
#include <string.h>
#include <time.h>

void _gfortran_concat_string(size_t destlen, char *dest, size_t len1, const char *s1, size_t len2, const char *s2) {
  if (len1 >= destlen) {
    memcpy(dest, s1, destlen);
    return;
  }
  memcpy(dest, s1, len1);
  dest += len1;
  destlen -= len1;
  if (len2 >= destlen) {
    memcpy(dest, s2, destlen);
    return;
  }
  memcpy(dest, s2, len2);
  memset(dest + len2, ' ', destlen - len2);
}

float _gfortran_etime(float *tarray) {
  const float user = (float)clock() / (float)CLOCKS_PER_SEC;
  if (tarray) {
    tarray[0] = user;
    tarray[1] = 0.0f;
  }
  return user;
}
