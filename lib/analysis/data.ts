// Inputs of the analyses: synthetic GCP features (what a CNN's last ReLU hands the pooling layer),
// feature files from a real or trained model, and controlled spectra whose smallest eigen-gap is set
// exactly.
import * as fs from 'fs';
import * as path from 'path';

import { Tensor } from '../tensor';
import { Mat, mul, randomOrthogonal, transpose } from './linalg';
import { normal } from './util';

export interface Size {
  C: number;
  N: number;
}

/**
 * How the synthetic features are drawn:
 *  - 'iid':   ReLU of i.i.d. standard normals (the demo's input). The nonzero covariance spectrum is
 *             Marchenko-Pastur-like: it spans only ~2-3 decades, so it is a mild case.
 *  - 'decay': ReLU of correlated normals, x = ReLU(Q diag(s) z) with s_k = (k+1)^-1: a power-law
 *             channel spectrum like those of trained CNN features (a handful of dominant
 *             directions and a long tail), spanning many more decades. The harder, more realistic case.
 */
export type FeatureModel = 'iid' | 'decay';
export const FEATURE_MODELS: readonly FeatureModel[] = ['iid', 'decay'];

/** A named batch of features [B, C, N] (float32: what a network produces). */
export interface FeatureSet {
  name: string;
  /** Where the features come from, for the report. */
  source: string;
  features: Tensor;
}

/** Synthetic ReLU features [B, C, N], float32, fully determined by (model, size, B, seed). */
export function syntheticFeatures(model: FeatureModel, size: Size, B: number, seed: number): FeatureSet {
  const { C, N } = size;
  const data = new Float32Array(B * C * N);
  for (let b = 0; b < B; b++) {
    const g = normal(seed * 7919 + b * 104729 + C * 31 + N);
    const z = new Float64Array(C * N);
    for (let i = 0; i < z.length; i++) z[i] = g();
    let x: Float64Array;
    if (model === 'iid') x = z;
    else {
      // x = Q diag(s) z: rows of z scaled by a power law, then rotated by a seeded orthogonal Q.
      const q = randomOrthogonal(C, seed * 31 + b + 1);
      for (let k = 0; k < C; k++) {
        const s = 1 / (k + 1);
        for (let n = 0; n < N; n++) z[k * N + n] *= s;
      }
      x = new Float64Array(C * N);
      for (let i = 0; i < C; i++)
        for (let k = 0; k < C; k++) {
          const qik = q[i * C + k];
          for (let n = 0; n < N; n++) x[i * N + n] += qik * z[k * N + n];
        }
    }
    const off = b * C * N;
    for (let i = 0; i < C * N; i++) data[off + i] = Math.max(0, x[i]);
  }
  return {
    name: `${model} C=${C} N=${N}`,
    source: model === 'iid' ? 'synthetic: ReLU of i.i.d. N(0,1)' : 'synthetic: ReLU of correlated N(0,1), power-law channel spectrum s_k = 1/(k+1)',
    features: new Tensor(data, [B, C, N]),
  };
}

/**
 * Loads features written by a model: a JSON file {"shape": [B, C, N] or [B, C, H, W], "data": [...]}
 * (data flat, row-major, any numbers; a "dtype" key is ignored), or a raw little-endian float32
 * file (.f32 / .bin) whose shape is given separately. Returned as float32, as a network hands them.
 */
export function loadFeatures(file: string, shape?: number[]): FeatureSet {
  let data: Float32Array;
  let shp: number[];
  if (/\.json$/i.test(file)) {
    const obj = JSON.parse(fs.readFileSync(file, 'utf8')) as { shape?: number[]; dims?: number[]; data?: ArrayLike<number> };
    shp = (shape ?? obj.shape ?? obj.dims ?? []).slice();
    if (!obj.data) throw new Error(`${file}: no "data" array`);
    data = Float32Array.from(obj.data);
  } else {
    if (!shape) throw new Error(`${file}: a raw float32 file needs --features-shape B,C,N (or B,C,H,W)`);
    const buf = fs.readFileSync(file);
    data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength - (buf.byteLength % 4)));
    shp = shape.slice();
  }
  if (shp.length === 4) shp = [shp[0], shp[1], shp[2] * shp[3]];
  if (shp.length !== 3) throw new Error(`${file}: features must have shape [B, C, N] or [B, C, H, W], got [${shp.join(', ')}]`);
  const size = shp[0] * shp[1] * shp[2];
  if (data.length !== size) throw new Error(`${file}: shape [${shp.join(', ')}] needs ${size} values, the file holds ${data.length}`);
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) throw new Error(`${file}: value ${i} is not finite`);
  return {
    name: `${path.basename(file)} C=${shp[1]} N=${shp[2]}`,
    source: `features file ${path.basename(file)}`,
    features: new Tensor(data, shp),
  };
}

/**
 * The controlled spectra of the gradient analysis. C - 1 "background" eigenvalues spread
 * log-uniformly over [lambdaMin, 1]; then the eigenvalue at `index` is doubled into the pair
 * (b, b (1 + g)): g is the relative gap of that pair (g = 0: an exact tie). With lambdaMin = 1e-6 and
 * C <= 64 the background's relative spacing (>= 25 %) keeps the pair's neighbours farther than g for
 * every g <= 0.1, so g is the smallest relative gap of the spectrum.
 *  - 'bottom': the pair is the two smallest eigenvalues (~ lambdaMin): where the near-ties of real
 *    covariances are, and where an absolute gap is smallest;
 *  - 'middle': the pair sits mid-spectrum (~ sqrt(lambdaMin)).
 */
export type PairPosition = 'bottom' | 'middle';
export const PAIR_POSITIONS: readonly PairPosition[] = ['bottom', 'middle'];

export interface ControlledSpectrum {
  /** Ascending eigenvalues, length C. */
  values: Float64Array;
  /** Indices of the controlled pair (a < b in ascending order). */
  a: number;
  b: number;
}

export function controlledSpectrum(C: number, position: PairPosition, gap: number, lambdaMin: number): ControlledSpectrum {
  if (C < 4) throw new RangeError('controlled spectra need C >= 4');
  const m = C - 1; // background values
  const bg = Array.from({ length: m }, (_, k) => lambdaMin ** (1 - k / (m - 1)));
  const a = position === 'bottom' ? 0 : Math.floor((m - 1) / 2);
  const values = new Float64Array(C);
  for (let k = 0, j = 0; k < m; k++) {
    values[j++] = bg[k];
    if (k === a) values[j++] = bg[k] * (1 + gap);
  }
  return { values, a, b: a + 1 };
}

/** The smallest relative gap (l_{i+1} - l_i) / l_i of an ascending positive spectrum. */
export function smallestRelativeGap(values: ArrayLike<number>): number {
  let g = Infinity;
  for (let i = 0; i + 1 < values.length; i++) g = Math.min(g, (values[i + 1] - values[i]) / values[i]);
  return g;
}

/** A = Q diag(l) Q^T for a seeded random orthogonal Q; returns both. */
export function spdWithSpectrum(values: ArrayLike<number>, seed: number): { a: Mat; q: Mat } {
  const n = values.length;
  const q = randomOrthogonal(n, seed);
  const ql = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) ql[i * n + k] = q[i * n + k] * values[k];
  const a = mul(ql, transpose(q, n), n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
  return { a, q };
}
