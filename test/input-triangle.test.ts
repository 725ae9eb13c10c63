// Which triangle of an input matrix the eigensolvers decompose. sqrtm and eigh accept matrices that
// are symmetric within the per-item check (100 eps max|A|); for those that are not exactly
// symmetric, every backend decomposes the row-major lower triangle mirrored over the upper one
// (native/core/backend.h), so the CPU's solvers (the fused reduction up to n = 64, ?sytrd above)
// and cuSOLVER see the same matrix. Checked here on the CPU, bit for bit, at sizes on both sides of
// the solver switch; test/device.test.ts checks the CUDA backend against the CPU on such inputs.
import { Tensor, eighSync, sqrtmSync } from '../lib';
import { gaussian, rng, sameBits, withSpectrum } from './helpers';

/** A, with a perturbation of its upper triangle inside the symmetry tolerance. */
function nearlySymmetric(n: number, seed: number): { a: Float64Array; lower: Float64Array } {
  const l = Array.from({ length: n }, (_, i) => 0.1 + i / n);
  const a = withSpectrum(l, seed);
  const g = gaussian(rng(seed + 1));
  const amax = Math.max(...a.map(Math.abs));
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[i * n + j] += 20 * 2.220446049250313e-16 * amax * g();
  const lower = Float64Array.from(a);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) lower[i * n + j] = lower[j * n + i];
  return { a, lower };
}

describe('eigensolvers decompose the row-major lower triangle of a nearly symmetric input', () => {
  test.each([12, 64, 65, 100])('n = %i: eigh and sqrtm equal those of the mirrored lower triangle, bit for bit', (n) => {
    const { a, lower } = nearlySymmetric(n, n);
    expect(sameBits(a, lower)).toBe(false);
    const A = new Tensor(a, [1, n, n]), L = new Tensor(lower, [1, n, n]);
    const e = eighSync(A), f = eighSync(L);
    expect(sameBits(e.values.data, f.values.data)).toBe(true);
    expect(sameBits(e.vectors.data, f.vectors.data)).toBe(true);
    for (const method of ['svd', 'svd-pade'] as const) expect(sameBits(sqrtmSync(A, method).output.data, sqrtmSync(L, method).output.data)).toBe(true);
  });
});
