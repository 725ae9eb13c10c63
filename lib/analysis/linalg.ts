// Dense float64 linear algebra on small row-major matrices, written out so that the analyses can
// form reference quantities (exact gradients from known eigenpairs, reconstructions, subspace
// angles) without going through the library they are checking. Everything is O(n^3) JavaScript:
// fine for the n <= 256 the reports use.
import { normal } from './util';

export type Mat = Float64Array;

/** C = A B for n x n matrices. */
export function mul(a: ArrayLike<number>, b: ArrayLike<number>, n: number): Mat {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k];
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
  return c;
}

export function transpose(a: ArrayLike<number>, n: number): Mat {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

/** Q^T X Q (X in the basis of Q's columns). */
export function toBasis(q: Mat, x: ArrayLike<number>, n: number): Mat {
  return mul(mul(transpose(q, n), x, n), q, n);
}

/** Q X Q^T (back from the basis of Q's columns). */
export function fromBasis(q: Mat, x: ArrayLike<number>, n: number): Mat {
  return mul(mul(q, x, n), transpose(q, n), n);
}

/** (A + A^T) / 2. */
export function sym(a: ArrayLike<number>, n: number): Mat {
  const s = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) s[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  return s;
}

/** Frobenius norm, scaled to avoid overflow for the huge gradients ties produce. */
export function frob(a: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]));
  if (scale === 0 || !Number.isFinite(scale)) return scale;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i] / scale;
    s += v * v;
  }
  return scale * Math.sqrt(s);
}

/** ||a - b||_F / ||b||_F (Infinity/NaN propagate so that broken results stay visible). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`relErr: lengths differ (${a.length} vs ${b.length})`);
  const d = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) d[i] = a[i] - b[i];
  const den = frob(b);
  return den === 0 ? frob(d) : frob(d) / den;
}

/** V diag(d) V^T with the eigenvectors as the columns of V. */
export function reconstruct(v: ArrayLike<number>, d: ArrayLike<number>, n: number): Mat {
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) w[i * n + k] = v[i * n + k] * d[k];
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += w[i * n + k] * v[j * n + k];
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  return out;
}

/**
 * Orthonormalizes the columns [from, to) of the n x n column-major-in-rows matrix V in place
 * (modified Gram-Schmidt, done twice: one pass leaves O(eps * cond) non-orthogonality, two passes
 * leave O(eps)). Used to make float32 eigenvectors exactly orthonormal in float64 before measuring
 * angles, so that their own non-orthogonality does not pose as subspace error.
 */
export function orthonormalizeColumns(v: Mat, n: number, from: number, to: number): void {
  for (let j = from; j < to; j++) {
    for (let pass = 0; pass < 2; pass++)
      for (let k = from; k < j; k++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += v[i * n + k] * v[i * n + j];
        for (let i = 0; i < n; i++) v[i * n + j] -= d * v[i * n + k];
      }
    let s = 0;
    for (let i = 0; i < n; i++) s += v[i * n + j] ** 2;
    s = Math.sqrt(s);
    for (let i = 0; i < n; i++) v[i * n + j] /= s;
  }
}

/**
 * Haar-random orthogonal matrix: Gram-Schmidt (QR with a positive R diagonal) of a Gaussian
 * matrix. The seed fixes it, so every report sees the same eigenvectors.
 */
export function randomOrthogonal(n: number, seed: number): Mat {
  const g = normal(seed);
  const q = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) q[i] = g();
  orthonormalizeColumns(q, n, 0, n);
  return q;
}

/** Random symmetric matrix of unit Frobenius norm: the loss direction dL/dS. */
export function randomSymmetric(n: number, seed: number): Mat {
  const g = normal(seed);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) a[i * n + j] = a[j * n + i] = g();
  const s = frob(a);
  return a.map((v) => v / s);
}

/**
 * Exact gradient of L = <G, sqrt(A)> for A = Q diag(l) Q^T with known eigenpairs: the solution of
 * the Lyapunov equation S X + X S = G, i.e. Q [ (Q^T G Q) o C ] Q^T with C_ij = 1/(sqrt l_i + sqrt l_j).
 * It never divides by an eigenvalue difference, so it is exact at ties too.
 */
export function lyapunovGradient(q: Mat, l: ArrayLike<number>, g: ArrayLike<number>, n: number): Mat {
  const m = toBasis(q, sym(g, n), n);
  const sq = Array.from(l, (x) => Math.sqrt(x));
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m[i * n + j] /= sq[i] + sq[j];
  return fromBasis(q, m, n);
}

/**
 * The backward of an eigen-based method for given eigenpairs (Q, l) and coefficient matrix F
 * (F_ij = the coefficient of u_i in du_j), as docs/methods.md states it:
 *   dA = Q [ sym(F o (Q^T dL/dQ)) + diag(M_ii / 2 sqrt l_i) ] Q^T,  (Q^T dL/dQ)_ij = 2 M_ij sqrt l_j,
 * M = Q^T G Q. Evaluated here with exact eigenpairs, it isolates what F does to the gradient from
 * what the eigendecomposition's rounding does.
 */
export function coefficientGradient(q: Mat, l: ArrayLike<number>, f: ArrayLike<number>, g: ArrayLike<number>, n: number): Mat {
  const m = toBasis(q, sym(g, n), n);
  const sq = Array.from(l, (x) => Math.sqrt(x));
  const inner = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    inner[i * n + i] = m[i * n + i] / (2 * sq[i]);
    for (let j = i + 1; j < n; j++) {
      const v = m[i * n + j] * (f[i * n + j] * sq[j] + f[j * n + i] * sq[i]);
      inner[i * n + j] = v;
      inner[j * n + i] = v;
    }
  }
  return fromBasis(q, inner, n);
}

/** Q diag(l) Q^T, made exactly symmetric (the library checks symmetry). */
export function withEigenpairs(q: Mat, l: ArrayLike<number>, n: number): Mat {
  return reconstruct(q, l, n);
}

/**
 * ||sin Theta||_F between the spans of the k columns [n-k, n) of two eigenvector matrices (the
 * top-k eigenvectors when eigenvalues ascend). Computed as ||(I - P_ref) V_k||_F after
 * re-orthonormalizing V_k, which stays accurate for tiny angles (1 - cos^2 would cancel).
 */
export function subspaceSin(vRef: ArrayLike<number>, v: ArrayLike<number>, n: number, k: number): number {
  const from = n - k;
  const w = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = from; j < n; j++) w[i * n + j] = v[i * n + j];
  orthonormalizeColumns(w, n, from, n);
  let s = 0;
  for (let j = from; j < n; j++) {
    // r = w_j - sum_{k in top} (u_k . w_j) u_k
    const r = new Float64Array(n);
    for (let i = 0; i < n; i++) r[i] = w[i * n + j];
    for (let c = from; c < n; c++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += vRef[i * n + c] * w[i * n + j];
      for (let i = 0; i < n; i++) r[i] -= d * vRef[i * n + c];
    }
    for (let i = 0; i < n; i++) s += r[i] * r[i];
  }
  return Math.sqrt(s);
}

/** sin of the angle between column c of two eigenvector matrices (sign-free). */
export function vectorSin(vRef: ArrayLike<number>, v: ArrayLike<number>, n: number, c: number): number {
  let nv = 0;
  for (let i = 0; i < n; i++) nv += v[i * n + c] ** 2;
  nv = Math.sqrt(nv);
  let d = 0;
  for (let i = 0; i < n; i++) d += vRef[i * n + c] * (v[i * n + c] / nv);
  let s = 0;
  for (let i = 0; i < n; i++) s += (v[i * n + c] / nv - d * vRef[i * n + c]) ** 2;
  return Math.sqrt(s);
}
