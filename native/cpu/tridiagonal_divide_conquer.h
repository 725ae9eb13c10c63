// Eigenvalues and eigenvectors of one symmetric tridiagonal matrix (float64) by Cuppen's divide and
// conquer, as LAPACK's ?stedc('I') runs it, with the secular equations solved for all roots of a
// merge at once.
//
// Why: at n = 256 ?stedc took 1.5 ms of the eigensolver's 3.7 (bench/native/kernels.cpp), and
// perf put 60 % of that in its secular-equation code: ?laed4 finds one root at a time (a scalar
// loop of divisions over all k poles per iteration, with branches), and ?laed3 forms the Loewner
// weights and the eigenvectors with scalar divisions; another 11 % went to its ?steqr leaves.
// Here one pass over the poles advances every unconverged root of the merge by one iteration: for
// a pole i the loop runs over the roots, contiguous in memory, so the divisions vectorize (4 roots
// per AVX2 instruction), and the Loewner products and vectors are column loops the compiler
// vectorizes as well. Per matrix, one core (kernels.cpp): 570 us against ?stedc's 1520 at n = 256,
// 39 against 117 at n = 64.
//
// The rest is LAPACK's: the tree of rank-one tears (as ?laed0 builds it; its leaves of at most 25
// rows solved four at a time by the SIMD-lane QL iteration of tridiagonal_batched.h, or by ?steqr),
// the deflation of each merge (?laed2, called as is), the merged order (?lamrg, then sorted where
// ?laed2's rotations left neighbours a few ulps out of order, as ?stedc's final sort does), the
// root nearest the top of each spectrum and any root the vector iteration leaves unconverged
// (?laed4). Merges with fewer than kVectorRootsMin roots go to ?laed3 itself. The iteration follows
// ?laed4 for the interior roots: the pole nearest the root is the origin (so distances to it keep
// full relative accuracy); each step solves the rational model that keeps that pole's term exact
// and gathers all other terms into one pole at the interval's other end; a step leaving the bracket
// that the signs of f have narrowed is replaced by bisection; a root has converged when |f| is
// within eps of a bound on f's rounding error (?laed4's form of test) or when its step no longer
// changes it. The eigenvectors follow Gu and Eisenstat (the updating vector recomputed from the
// roots, so the vectors are orthogonal to working precision whatever the clustering).
//
// A matrix that splits (a negligible off-diagonal entry, as ?stedc tests it) or that any LAPACK
// step reports a failure on makes the call return false, and the caller runs ?stedc instead.
#pragma once
#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "tridiagonal_batched.h"  // COVPOOL_X86_DISPATCH, cpuHasAvx2Fma

extern "C" {
// LAPACK's auxiliary divide-and-conquer routines (reference Fortran in OpenBLAS; no C interface).
void dlaed2_(lapack_int* k, const lapack_int* n, const lapack_int* n1, double* d, double* q, const lapack_int* ldq,
             lapack_int* indxq, double* rho, double* z, double* dlamda, double* w, double* q2, lapack_int* indx,
             lapack_int* indxc, lapack_int* indxp, lapack_int* coltyp, lapack_int* info);
void dlaed3_(const lapack_int* k, const lapack_int* n, const lapack_int* n1, double* d, double* q, const lapack_int* ldq,
             const double* rho, double* dlamda, double* q2, lapack_int* indx, lapack_int* ctot, double* w, double* s,
             lapack_int* info);
void dlaed4_(const lapack_int* n, const lapack_int* i, const double* d, const double* z, double* delta, const double* rho,
             double* dlam, lapack_int* info);
void dlamrg_(const lapack_int* n1, const lapack_int* n2, const double* a, const lapack_int* dtrd1, const lapack_int* dtrd2,
             lapack_int* index);
}

namespace covpool::cpu {

// Leaves of the tree: ?laed0's size (ILAENV's SMLSIZ).
constexpr int kDivideConquerLeaf = 25;
// Merges with fewer roots than this are left to ?laed3 (nothing to vectorize).
constexpr int kVectorRootsMin = 16;
// Iterations of the vector root finder before a root is handed to ?laed4.
constexpr int kSecularIterationsMax = 40;

// Per-thread scratch, grown to the largest n seen: the scaled problem (d, e), the eigenvectors
// being merged (q) and the buffers of one merge (LAPACK's ?laed2 / ?laed3 arguments, then the
// root finder's state per root and its packed copies per pass).
struct DivideConquerWorkspace {
  std::vector<double> d, e, q, q2, s, z, dlamda, w, dlPerm, wPerm, diag, column;
  std::vector<double> base, tau, lo, hi, packBase, packTau, packF, packDf, packAbs;
  std::vector<lapack_int> indxq, indx, indxc, indxp, coltyp, origin, active, live, inverse, pieces;
  void reserve(int n) {
    const std::size_t nn = static_cast<std::size_t>(n), m = nn * nn;
    if (q.size() >= m) return;
    for (auto* v : {&d, &e, &z, &dlamda, &w, &dlPerm, &wPerm, &diag, &column, &base, &tau, &lo, &hi, &packBase, &packTau,
                    &packF, &packDf, &packAbs})
      v->assign(nn + 1, 0.0);
    q.assign(m, 0.0);
    q2.assign(m + nn, 0.0);
    s.assign(m + nn, 0.0);
    for (auto* v : {&indxq, &indx, &indxc, &indxp, &coltyp, &origin, &active, &live, &inverse, &pieces}) v->assign(nn + 4, 0);
  }
};

namespace divide_conquer {

// Roots 0 .. k-2 of f(x) = 1/rho + sum_i w_i^2 / (dl_i - x) (dl ascending, rho > 0; root j lies in
// (dl_j, dl_{j+1})), each as origin index + offset tau (ws.origin, ws.base = dl[origin], ws.tau).
// Each pass evaluates f, f' and the rounding bound at the current iterate of every unconverged
// root (kept packed, so converged roots cost nothing), then steps each. Roots still active after
// kSecularIterationsMax passes (ws.active) are the caller's to finish. The body is compiled twice
// (baseline and AVX2 + FMA).
[[gnu::always_inline]] inline void secularRootsBody(int k, const double* dl, const double* w, double rho,
                                                    DivideConquerWorkspace& ws) {
  const int roots = k - 1;
  double* base = ws.base.data();
  double* tau = ws.tau.data();
  double* lo = ws.lo.data();
  double* hi = ws.hi.data();
  lapack_int* org = ws.origin.data();
  lapack_int* active = ws.active.data();
  lapack_int* live = ws.live.data();  // packed per pass: slot c is root live[c]
  double* xb = ws.packBase.data();
  double* xt = ws.packTau.data();
  double* f = ws.packF.data();
  double* dw = ws.packDf.data();
  double* ab = ws.packAbs.data();
  const double eps = std::numeric_limits<double>::epsilon() / 2;  // LAPACK's dlamch('E')
  const double rhoInv = 1.0 / rho;
  // Pass 0 evaluates f at each interval's midpoint, from the lower pole.
  for (int j = 0; j < roots; ++j) {
    org[j] = j;
    base[j] = dl[j];
    tau[j] = 0.5 * (dl[j + 1] - dl[j]);
    active[j] = 1;
    live[j] = j;
  }
  int count = roots;
  for (int iter = 0; iter <= kSecularIterationsMax && count > 0; ++iter) {
    // Packed copies of the iterates, so the pole loop runs over contiguous roots.
    for (int c = 0; c < count; ++c) {
      xb[c] = base[live[c]];
      xt[c] = tau[live[c]];
    }
    std::fill(f, f + count, rhoInv);
    std::fill(dw, dw + count, 0.0);
    std::fill(ab, ab + count, 0.0);
    for (int i = 0; i < k; ++i) {
      const double zi = w[i], di = dl[i];
      for (int c = 0; c < count; ++c) {
        const double delta = (di - xb[c]) - xt[c];
        const double t = zi / delta;
        const double term = zi * t;
        f[c] += term;
        dw[c] += t * t;
        ab[c] += std::fabs(term);
      }
    }
    int kept = 0;
    for (int c = 0; c < count; ++c) {
      const int j = live[c];
      const double fj = f[c];
      if (iter == 0) {
        // f increases on the interval: f(mid) >= 0 puts the root in the lower half, whose pole
        // stays the origin; otherwise the upper pole becomes it.
        if (fj >= 0) {
          lo[j] = 0;
          hi[j] = tau[j];
        } else {
          org[j] = j + 1;
          base[j] = dl[j + 1];
          tau[j] = (dl[j] - dl[j + 1]) + tau[j];
          lo[j] = tau[j];
          hi[j] = 0;
        }
      }
      // Distances from the iterate to the interval's ends: the origin o (the nearer pole) and p.
      const int o = org[j], p = o == j ? j + 1 : j;
      const double deltaO = (dl[o] - base[j]) - tau[j];
      const double to = w[o] / deltaO;
      if (iter > 0) {
        const double erretm = 8 * ab[c] + 2 * rhoInv + 3 * std::fabs(w[o] * to) + std::fabs(tau[j]) * dw[c];
        if (std::fabs(fj) <= eps * erretm) {
          active[j] = 0;
          continue;
        }
        if (fj > 0) hi[j] = tau[j];
        else lo[j] = tau[j];
      }
      // The model: the origin pole's term exact, every other term as one pole at the other end p.
      const double deltaP = (dl[p] - base[j]) - tau[j];
      const double c2 = fj - deltaP * dw[c] - (deltaO - deltaP) * to * to;
      const double a = (deltaO + deltaP) * fj - deltaO * deltaP * dw[c];
      const double b = deltaO * deltaP * fj;
      double eta;
      if (c2 == 0) eta = b / a;
      else if (a <= 0) eta = (a - std::sqrt(std::fabs(a * a - 4 * b * c2))) / (2 * c2);
      else eta = 2 * b / (a + std::sqrt(std::fabs(a * a - 4 * b * c2)));
      double next = tau[j] + eta;
      if (!(next > lo[j] && next < hi[j])) next = 0.5 * (lo[j] + hi[j]);
      if (iter > 0 && (next == tau[j] || hi[j] - lo[j] <= 4 * eps * std::max(std::fabs(lo[j]), std::fabs(hi[j])))) {
        active[j] = 0;  // the bracket is as narrow as tau can resolve: converged to working precision
        continue;
      }
      tau[j] = next;
      live[kept++] = j;
    }
    count = kept;
  }
}

// The Loewner weights and the normalized eigenvectors of the rank-one problem (?laed3's
// arithmetic). On entry q's first k columns hold q(r, j) = dl[perm r] - root_j, rows already in the
// order the GEMMs want (perm r = indx[r] - 1) and diag[i] = dl_i - root_i; on exit they hold the
// eigenvectors in that row order. w (the updating vector, by pole) gives the weights' signs.
[[gnu::always_inline]] inline void rankOneVectorsBody(int k, const double* dl, const double* dlPerm, const double* w,
                                                      const double* diag, double* q, int ldq, const lapack_int* indx,
                                                      lapack_int* inverse, double* wPerm) {
  for (int r = 0; r < k; ++r) inverse[indx[r] - 1] = r;
  // Loewner: w_i^2 = -prod_j (dl_i - root_j) / prod_{j != i} (dl_i - dl_j), in the permuted rows.
  // The factor j = i (a division by zero) is computed with the rest and undone after.
  for (int r = 0; r < k; ++r) wPerm[r] = diag[indx[r] - 1];
  for (int j = 0; j < k; ++j) {
    const double* qj = q + static_cast<std::size_t>(j) * ldq;
    const double dj = dl[j];
    const int self = inverse[j];
    const double keep = wPerm[self];
    for (int r = 0; r < k; ++r) wPerm[r] *= qj[r] / (dlPerm[r] - dj);
    wPerm[self] = keep;
  }
  for (int r = 0; r < k; ++r) wPerm[r] = std::copysign(std::sqrt(-wPerm[r]), w[indx[r] - 1]);
  for (int j = 0; j < k; ++j) {
    double* qj = q + static_cast<std::size_t>(j) * ldq;
    // s = w / (dl - root_j), normalized. Its entries lie far inside the exponent range (|w_i| is
    // at least ?laed2's deflation tolerance, and the distances are at most 2 after the scaling to
    // norm 1), so the squares are summed unscaled, over eight partial sums so the loop vectorizes.
    double part[8] = {};
    int r = 0;
    for (; r + 8 <= k; r += 8)
      for (int u = 0; u < 8; ++u) {
        const double v = wPerm[r + u] / qj[r + u];
        qj[r + u] = v;
        part[u] += v * v;
      }
    for (; r < k; ++r) {
      const double v = wPerm[r] / qj[r];
      qj[r] = v;
      part[0] += v * v;
    }
    const double sum = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
    const double scale = 1.0 / std::sqrt(sum);
    for (r = 0; r < k; ++r) qj[r] *= scale;
  }
}

#ifdef COVPOOL_X86_DISPATCH
__attribute__((target("avx2,fma"))) inline void secularRootsAvx2(int k, const double* dl, const double* w, double rho,
                                                                  DivideConquerWorkspace& ws) {
  secularRootsBody(k, dl, w, rho, ws);
}
__attribute__((target("avx2,fma"))) inline void rankOneVectorsAvx2(int k, const double* dl, const double* dlPerm, const double* w,
                                                                    const double* diag, double* q, int ldq,
                                                                    const lapack_int* indx, lapack_int* inverse, double* wPerm) {
  rankOneVectorsBody(k, dl, dlPerm, w, diag, q, ldq, indx, inverse, wPerm);
}
#endif

inline void secularRoots(int k, const double* dl, const double* w, double rho, DivideConquerWorkspace& ws) {
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) return secularRootsAvx2(k, dl, w, rho, ws);
#endif
  secularRootsBody(k, dl, w, rho, ws);
}
inline void rankOneVectors(int k, const double* dl, const double* dlPerm, const double* w, const double* diag, double* q, int ldq,
                           const lapack_int* indx, lapack_int* inverse, double* wPerm) {
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) return rankOneVectorsAvx2(k, dl, dlPerm, w, diag, q, ldq, indx, inverse, wPerm);
#endif
  rankOneVectorsBody(k, dl, dlPerm, w, diag, q, ldq, indx, inverse, wPerm);
}

// ?laed3's job for k >= kVectorRootsMin: the roots into d(0..k-1), the merged eigenvectors into q's
// first k columns (n rows). Returns LAPACK's info (nonzero: a root did not converge).
inline lapack_int solveMerge(int k, int n, int n1, double* d, double* q, int ldq, double rho, double* dlamda, double* q2,
                             lapack_int* indx, const lapack_int* ctot, double* w, DivideConquerWorkspace& ws) {
  const lapack_int kk = k;
  secularRoots(k, dlamda, w, rho, ws);
  // The distances q(r, j) = dl[perm r] - root_j straight into the row order the GEMMs want
  // (perm r = indx[r] - 1), and diag[j] = dl_j - root_j for the Loewner weights.
  double* dlPerm = ws.dlPerm.data();
  double* diag = ws.diag.data();
  for (int r = 0; r < k; ++r) dlPerm[r] = dlamda[indx[r] - 1];
  lapack_int info = 0;
  for (int j = 0; j < k; ++j) {
    double* qj = q + static_cast<std::size_t>(j) * ldq;
    if (j == k - 1 || ws.active[j]) {
      // The top root, and any the vector iteration left unconverged: ?laed4, then permuted.
      double* column = ws.column.data();
      const lapack_int jj = j + 1;
      dlaed4_(&kk, &jj, dlamda, w, column, &rho, d + j, &info);
      if (info != 0) return info;
      for (int r = 0; r < k; ++r) qj[r] = column[indx[r] - 1];
      diag[j] = column[j];
      continue;
    }
    const double b = ws.base[j], t = ws.tau[j];
    d[j] = b + t;
    for (int r = 0; r < k; ++r) qj[r] = (dlPerm[r] - b) - t;
    diag[j] = (dlamda[j] - b) - t;
  }
  rankOneVectors(k, dlamda, dlPerm, w, diag, q, ldq, indx, ws.inverse.data(), ws.wPerm.data());
  // Back to the split problem's basis, as ?laed3: the columns of q2 that are nonzero only in the
  // top n1 rows, dense, or nonzero only in the bottom n - n1 rows (ctot counts each kind).
  // Rows [outRow, outRow + outRows) of the merged vectors = block (outRows x rows, from q2) times
  // rows [firstRow, firstRow + rows) of the rank-one vectors (copied out first: q is overwritten).
  double* s = ws.s.data();
  auto fromSplitBasis = [&](int firstRow, int rows, const double* block, int outRow, int outRows) {
    for (int j = 0; j < k; ++j) {
      const double* col = q + static_cast<std::size_t>(j) * ldq + firstRow;
      std::copy(col, col + rows, s + static_cast<std::size_t>(j) * rows);
    }
    if (rows > 0)
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, outRows, k, rows, 1.0, block, outRows, s, rows, 0.0, q + outRow, ldq);
    else
      for (int j = 0; j < k; ++j) {
        double* col = q + static_cast<std::size_t>(j) * ldq + outRow;
        std::fill(col, col + outRows, 0.0);
      }
  };
  const int n2 = n - n1, n12 = ctot[0] + ctot[1], n23 = ctot[1] + ctot[2];
  fromSplitBasis(ctot[0], n23, q2 + static_cast<std::size_t>(n1) * n12, n1, n2);  // bottom rows: types 2 and 3
  fromSplitBasis(0, n12, q2, 0, n1);                                              // top rows: types 1 and 2
  return 0;
}

// Makes the permutation indxq (1-based) sort d ascending, moving only indices (the eigenvectors
// follow through it). ?lamrg's merge assumes both of its lists sorted, but ?laed2's deflation
// rotations (close pairs) change the deflated values by a few ulps after they were ordered, so on
// tightly clustered spectra neighbours come out swapped; ?stedc fixes the same thing with a sort at
// its very end. Insertion sort: one pass when the order is already right (the usual case).
inline void sortPermutation(int n, const double* d, lapack_int* indxq) {
  for (int i = 1; i < n; ++i) {
    const lapack_int v = indxq[i];
    const double key = d[v - 1];
    int j = i;
    for (; j > 0 && d[indxq[j - 1] - 1] > key; --j) indxq[j] = indxq[j - 1];
    indxq[j] = v;
  }
}

// ?laed1's job: merges the eigensystems of the two halves (sizes cut and n - cut, torn apart by
// rho) held in d and the diagonal blocks of q; indxq (1-based) sorts each half on entry and the
// whole on exit. Returns LAPACK's info.
inline lapack_int merge(int n, double* d, double* q, int ldq, lapack_int* indxq, double rho, int cut, DivideConquerWorkspace& ws) {
  double* z = ws.z.data();
  for (int c = 0; c < cut; ++c) z[c] = q[static_cast<std::size_t>(c) * ldq + cut - 1];  // last row of Q1
  for (int c = cut; c < n; ++c) z[c] = q[static_cast<std::size_t>(c) * ldq + cut];      // first row of Q2
  lapack_int k = 0, info = 0;
  const lapack_int nn = n, n1 = cut, ldqq = ldq;
  dlaed2_(&k, &nn, &n1, d, q, &ldqq, indxq, &rho, z, ws.dlamda.data(), ws.w.data(), ws.q2.data(), ws.indx.data(),
          ws.indxc.data(), ws.indxp.data(), ws.coltyp.data(), &info);
  if (info != 0) return info;
  if (k == 0) {
    for (int i = 0; i < n; ++i) indxq[i] = i + 1;
    sortPermutation(n, d, indxq);
    return 0;
  }
  if (k < kVectorRootsMin) {
    dlaed3_(&k, &nn, &n1, d, q, &ldqq, &rho, ws.dlamda.data(), ws.q2.data(), ws.indxc.data(), ws.coltyp.data(), ws.w.data(),
            ws.s.data(), &info);
  } else {
    info = solveMerge(k, n, cut, d, q, ldq, rho, ws.dlamda.data(), ws.q2.data(), ws.indxc.data(), ws.coltyp.data(),
                      ws.w.data(), ws);
  }
  if (info != 0) return info;
  const lapack_int rest = n - k, up = 1, down = -1;
  dlamrg_(&k, &rest, d, &up, &down, indxq);
  sortPermutation(n, d, indxq);
  return 0;
}

}  // namespace divide_conquer

// The tridiagonal matrix with diagonal d (n) and off-diagonal e (n - 1): eigenvalues ascending into
// d, eigenvectors into z (n x n, column-major, column i for d[i]). e is left as it was. Returns
// false (d unchanged, z undefined) where ?stedc should be run instead: n <= kDivideConquerLeaf, a
// zero matrix, a negligible off-diagonal entry, or a LAPACK step's failure.
inline bool tridiagonalEigenDivideConquer(int n, double* dOut, const double* eIn, double* zOut, DivideConquerWorkspace& ws) {
  if (n <= kDivideConquerLeaf) return false;
  ws.reserve(n);
  const double eps = std::numeric_limits<double>::epsilon() / 2;
  double norm = 0;
  for (int i = 0; i < n; ++i) norm = std::max(norm, std::fabs(dOut[i]));
  for (int i = 0; i + 1 < n; ++i) {
    norm = std::max(norm, std::fabs(eIn[i]));
    if (std::fabs(eIn[i]) <= eps * std::sqrt(std::fabs(dOut[i])) * std::sqrt(std::fabs(dOut[i + 1]))) return false;
  }
  if (norm == 0) return false;
  // Scaled to max-norm 1, as ?stedc does before ?laed0.
  double* d = ws.d.data();
  double* e = ws.e.data();
  const double inv = 1.0 / norm;
  for (int i = 0; i < n; ++i) d[i] = dOut[i] * inv;
  for (int i = 0; i + 1 < n; ++i) e[i] = eIn[i] * inv;
  // The tree: halve (floor, ceil) until every piece has at most kDivideConquerLeaf rows.
  std::vector<lapack_int>& sizes = ws.pieces;
  int count = 1;
  sizes[0] = n;
  while (sizes[count - 1] > kDivideConquerLeaf) {
    for (int j = count - 1; j >= 0; --j) {
      const lapack_int s = sizes[j];
      sizes[2 * j + 1] = (s + 1) / 2;
      sizes[2 * j] = s / 2;
    }
    count *= 2;
  }
  // Tears: each cut subtracts |e| from the two diagonal entries it separates.
  for (int j = 0, start = 0; j + 1 < count; ++j) {
    start += sizes[j];
    const double ab = std::fabs(e[start - 1]);
    d[start - 1] -= ab;
    d[start] -= ab;
  }
  double* q = ws.q.data();
  std::fill(q, q + static_cast<std::size_t>(n) * n, 0.0);
  lapack_int* indxq = ws.indxq.data();
  lapack_int* leafStart = ws.live.data();  // free until the merges
  for (int j = 0, start = 0; j < count; start += sizes[j], ++j) {
    leafStart[j] = start;
    for (int i = 0; i < sizes[j]; ++i) indxq[start + i] = i + 1;  // each leaf's eigenvalues come out sorted
  }
  // Leaves: four at a time in SIMD lanes where the CPU has AVX2 (their sizes differ by at most one:
  // grouped by size), ?steqr for the rest and where the lanes give up.
  std::vector<lapack_int>& solved = ws.active;
  std::fill(solved.begin(), solved.begin() + count, 0);
#ifdef COVPOOL_X86_DISPATCH
  if (cpuHasAvx2Fma()) {
    for (const int size : {sizes[0], sizes[count - 1]}) {
      double *dp[kTridiagonalLanes], *ep[kTridiagonalLanes], *zp[kTridiagonalLanes];
      int members[kTridiagonalLanes], lanes = 0;
      for (int j = 0; j <= count; ++j) {
        if (j < count && sizes[j] == size && !solved[j]) {
          const int start = leafStart[j];
          dp[lanes] = d + start;
          ep[lanes] = e + start;
          zp[lanes] = q + static_cast<std::size_t>(start) * n + start;
          members[lanes++] = j;
        }
        if (lanes == kTridiagonalLanes || (j == count && lanes > 0)) {
          if (tridiagonalEigenBatched(size, lanes, dp, ep, dp, zp, n))
            for (int t = 0; t < lanes; ++t) solved[members[t]] = 1;
          lanes = 0;
        }
      }
    }
  }
#endif
  for (int j = 0; j < count; ++j) {
    if (solved[j]) continue;
    const int start = leafStart[j];
    if (LAPACKE_dsteqr_work(LAPACK_COL_MAJOR, 'I', sizes[j], d + start, e + start, q + static_cast<std::size_t>(start) * n + start, n,
                            ws.s.data()) != 0)
      return false;
  }
  // Merge neighbours level by level.
  while (count > 1) {
    int start = 0;
    for (int j = 0; j < count; j += 2) {
      const int left = sizes[j], size = left + sizes[j + 1];
      if (divide_conquer::merge(size, d + start, q + static_cast<std::size_t>(start) * n + start, n, indxq + start,
                                e[start + left - 1], left, ws) != 0)
        return false;
      sizes[j / 2] = size;
      start += size;
    }
    count /= 2;
  }
  for (int i = 0; i < n; ++i) {
    const int j = indxq[i] - 1;
    dOut[i] = d[j] * norm;
    std::copy(q + static_cast<std::size_t>(j) * n, q + static_cast<std::size_t>(j + 1) * n, zOut + static_cast<std::size_t>(i) * n);
  }
  return true;
}

}  // namespace covpool::cpu
