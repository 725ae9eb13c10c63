// The network of the singular-regime experiment, with its backward pass written out by hand:
//
//   digit 28x28 -> conv 5x5 stride 2 (1 -> 16) + ReLU          14x14x16
//               -> conv 2x2 stride 2 (16 -> 32) + ReLU         7x7x32
//               -> conv 1x1 (32 -> C) + batch norm + ReLU      7x7xC, N = 49 positions
//               -> GCP: covpool layer (covariance, matrix square root, upper triangle)
//               -> linear C(C+1)/2 -> 10, softmax cross-entropy
//
// Every weight is trained; the gradient reaches the convolutions only through the GCP layer's
// backward, so whatever a method's backward does to the gradient, the trunk feels it. The 1x1
// reduction + BN + ReLU in front of the covariance is iSQRT-COV's head. With C >= 50 > N = 49 every
// covariance is singular (rank <= 48): the regime of ResNet GCP heads (C = 256, N = 196).
//
// Why not TensorFlow.js: its pure-JS Conv2DBackpropFilter is a naive loop (seconds per batch on
// this project's machines) and the wasm backend has none, so a 27-run experiment would not fit.
// These layers are small enough that plain loops over Float64Arrays are fast, and the backward of
// every layer is checked against finite differences in test/singular-experiment.test.ts.
import { CovPoolLayer, MethodSpec } from '../../lib';
import { rng } from '../common';

export const IMAGE = 28;
const K1 = 5; // conv1 kernel
const C1 = 16;
const H1 = 14; // conv1 output side (stride 2, padding 2)
const C2 = 32;
const H2 = 7; // conv2 output side (2x2 stride 2)
export const POSITIONS = H2 * H2; // N, the positions the covariance is taken over
export const CLASSES = 10;

function gaussian(r: () => number): number {
  const u = Math.max(r(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
}

/** A trainable array with its gradient and Adam moments. */
export class Param {
  readonly grad: Float64Array;
  readonly m: Float64Array;
  readonly v: Float64Array;
  constructor(
    readonly name: string,
    readonly value: Float64Array,
  ) {
    this.grad = new Float64Array(value.length);
    this.m = new Float64Array(value.length);
    this.v = new Float64Array(value.length);
  }
}

function heNormal(name: string, n: number, fanIn: number, r: () => number): Param {
  const w = new Float64Array(n);
  const s = Math.sqrt(2 / fanIn);
  for (let i = 0; i < n; i++) w[i] = s * gaussian(r);
  return new Param(name, w);
}

function filled(name: string, n: number, value: number): Param {
  return new Param(name, new Float64Array(n).fill(value));
}

/** What one forward pass keeps for its backward. */
interface Cache {
  B: number;
  images: Float64Array; // [B, 28*28]
  a1: Float64Array; // [B, C1, 14*14] after ReLU
  a2: Float64Array; // [B, C2, 49] after ReLU
  xhat: Float64Array; // [B, C, 49] normalized (before scale/shift)
  invStd: Float64Array; // [C]
  features: Float64Array; // [B, C, 49] GCP input (after ReLU)
  pooled: Float64Array; // [B, C(C+1)/2] GCP output
  probs: Float64Array; // [B, 10]
  state: { dispose(): void } | null;
}

export interface StepStats {
  loss: number;
  correct: number;
  /** Frobenius norm of dL/d(GCP input features) over the batch (what the GCP backward returned). */
  gcpGradNorm: number;
  /** Norm of the gradient of all trainable parameters. */
  paramGradNorm: number;
  /** Entries of the GCP input gradient that were NaN or +-Infinity. */
  nonFinite: number;
}

export class Network {
  readonly params: Param[];
  readonly channels: number;
  readonly gcp: CovPoolLayer;
  private readonly w1: Param; // [C1, 25]
  private readonly b1: Param;
  private readonly w2: Param; // [C2, C1*4]
  private readonly b2: Param;
  private readonly w3: Param; // [C, C2]
  private readonly gamma: Param;
  private readonly beta: Param;
  private readonly wfc: Param; // [10, T]
  private readonly bfc: Param;
  readonly runningMean: Float64Array;
  readonly runningVar: Float64Array;
  /** float32 features into the GCP layer (the usual case; eigen methods still solve in float64). */
  gcpDtype: 'float32' | 'float64' = 'float32';
  bnMomentum = 0.9;
  private step = 0;

  constructor(channels: number, method: MethodSpec, seed: number) {
    this.channels = channels;
    const r = rng(seed * 1000 + 17);
    const T = (channels * (channels + 1)) / 2;
    this.w1 = heNormal('conv1', C1 * K1 * K1, K1 * K1, r);
    this.b1 = filled('conv1.bias', C1, 0);
    this.w2 = heNormal('conv2', C2 * C1 * 4, C1 * 4, r);
    this.b2 = filled('conv2.bias', C2, 0);
    this.w3 = heNormal('conv3', channels * C2, C2, r);
    this.gamma = filled('bn.gamma', channels, 1);
    this.beta = filled('bn.beta', channels, 0);
    // Glorot-uniform classifier: the GCP output has T = C(C+1)/2 inputs.
    const wfc = new Float64Array(CLASSES * T);
    const lim = Math.sqrt(6 / (T + CLASSES));
    for (let i = 0; i < wfc.length; i++) wfc[i] = (2 * r() - 1) * lim;
    this.wfc = new Param('fc', wfc);
    this.bfc = filled('fc.bias', CLASSES, 0);
    this.params = [this.w1, this.b1, this.w2, this.b2, this.w3, this.gamma, this.beta, this.wfc, this.bfc];
    this.runningMean = new Float64Array(channels);
    this.runningVar = new Float64Array(channels).fill(1);
    this.gcp = new CovPoolLayer(method);
  }

  /**
   * Forward pass of a batch. `train` uses batch statistics in BN (and updates the running ones);
   * evaluation uses the running statistics.
   */
  forward(images: Float64Array, labels: Int32Array, train: boolean): { cache: Cache; loss: number; correct: number } {
    const B = labels.length;
    const C = this.channels;
    const N = POSITIONS;
    const T = (C * (C + 1)) / 2;
    // conv1 5x5 stride 2, padding 2: 28 -> 14, then ReLU.
    const a1 = new Float64Array(B * C1 * H1 * H1);
    const w1 = this.w1.value;
    const b1 = this.b1.value;
    for (let b = 0; b < B; b++) {
      const img = b * IMAGE * IMAGE;
      for (let oy = 0; oy < H1; oy++)
        for (let ox = 0; ox < H1; ox++) {
          const p = oy * H1 + ox;
          for (let o = 0; o < C1; o++) {
            let s = b1[o];
            for (let ky = 0; ky < K1; ky++) {
              const iy = 2 * oy + ky - 2;
              if (iy < 0 || iy >= IMAGE) continue;
              for (let kx = 0; kx < K1; kx++) {
                const ix = 2 * ox + kx - 2;
                if (ix < 0 || ix >= IMAGE) continue;
                s += w1[o * 25 + ky * K1 + kx] * images[img + iy * IMAGE + ix];
              }
            }
            a1[(b * C1 + o) * H1 * H1 + p] = s > 0 ? s : 0;
          }
        }
    }
    // conv2 2x2 stride 2: 14 -> 7, then ReLU. Input index k = c*4 + dy*2 + dx.
    const a2 = new Float64Array(B * C2 * N);
    const patch = new Float64Array(C1 * 4);
    const w2 = this.w2.value;
    for (let b = 0; b < B; b++)
      for (let oy = 0; oy < H2; oy++)
        for (let ox = 0; ox < H2; ox++) {
          for (let c = 0; c < C1; c++)
            for (let d = 0; d < 4; d++) patch[c * 4 + d] = a1[(b * C1 + c) * H1 * H1 + (2 * oy + (d >> 1)) * H1 + 2 * ox + (d & 1)];
          for (let o = 0; o < C2; o++) {
            let s = this.b2.value[o];
            const row = o * C1 * 4;
            for (let k = 0; k < C1 * 4; k++) s += w2[row + k] * patch[k];
            a2[(b * C2 + o) * N + oy * H2 + ox] = s > 0 ? s : 0;
          }
        }
    // conv3 1x1 (no bias: BN follows).
    const z = new Float64Array(B * C * N);
    const w3 = this.w3.value;
    for (let b = 0; b < B; b++)
      for (let o = 0; o < C; o++) {
        const out = (b * C + o) * N;
        for (let c = 0; c < C2; c++) {
          const w = w3[o * C2 + c];
          const inp = (b * C2 + c) * N;
          for (let p = 0; p < N; p++) z[out + p] += w * a2[inp + p];
        }
      }
    // Batch norm over (batch, positions) per channel, then ReLU.
    const xhat = new Float64Array(B * C * N);
    const invStd = new Float64Array(C);
    const features = new Float64Array(B * C * N);
    const eps = 1e-5;
    for (let o = 0; o < C; o++) {
      let mean: number;
      let variance: number;
      if (train) {
        let s = 0;
        for (let b = 0; b < B; b++) for (let p = 0; p < N; p++) s += z[(b * C + o) * N + p];
        mean = s / (B * N);
        let q = 0;
        for (let b = 0; b < B; b++)
          for (let p = 0; p < N; p++) {
            const d = z[(b * C + o) * N + p] - mean;
            q += d * d;
          }
        variance = q / (B * N);
        this.runningMean[o] = this.bnMomentum * this.runningMean[o] + (1 - this.bnMomentum) * mean;
        this.runningVar[o] = this.bnMomentum * this.runningVar[o] + (1 - this.bnMomentum) * variance;
      } else {
        mean = this.runningMean[o];
        variance = this.runningVar[o];
      }
      const is = 1 / Math.sqrt(variance + eps);
      invStd[o] = is;
      const g = this.gamma.value[o];
      const be = this.beta.value[o];
      for (let b = 0; b < B; b++)
        for (let p = 0; p < N; p++) {
          const i = (b * C + o) * N + p;
          const xh = (z[i] - mean) * is;
          xhat[i] = xh;
          const y = g * xh + be;
          features[i] = y > 0 ? y : 0;
        }
    }
    // GCP.
    const gcpIn = this.gcpDtype === 'float32' ? Float32Array.from(features) : features;
    const { output, state } = this.gcp.forwardSync({ data: gcpIn, shape: [B, C, N] });
    const pooled = Float64Array.from(output.data);
    // Linear classifier and softmax cross-entropy.
    const probs = new Float64Array(B * CLASSES);
    const wfc = this.wfc.value;
    let loss = 0;
    let correct = 0;
    for (let b = 0; b < B; b++) {
      let best = 0;
      let max = -Infinity;
      for (let k = 0; k < CLASSES; k++) {
        let s = this.bfc.value[k];
        const row = k * T;
        const v = b * T;
        for (let t = 0; t < T; t++) s += wfc[row + t] * pooled[v + t];
        probs[b * CLASSES + k] = s;
        if (s > max) {
          max = s;
          best = k;
        }
      }
      let sum = 0;
      for (let k = 0; k < CLASSES; k++) sum += probs[b * CLASSES + k] = Math.exp(probs[b * CLASSES + k] - max);
      for (let k = 0; k < CLASSES; k++) probs[b * CLASSES + k] /= sum;
      loss -= Math.log(Math.max(probs[b * CLASSES + labels[b]], 1e-300));
      if (best === labels[b]) correct++;
    }
    if (!train) state.dispose();
    return { cache: { B, images, a1, a2, xhat, invStd, features, pooled, probs, state: train ? state : null }, loss: loss / B, correct };
  }

  /** Backward pass: fills every param's grad with d(mean loss)/d(param). */
  backward(cache: Cache, labels: Int32Array): Omit<StepStats, 'loss' | 'correct'> {
    const { B, images, a1, a2, xhat, invStd, features, pooled, probs } = cache;
    const C = this.channels;
    const N = POSITIONS;
    const T = (C * (C + 1)) / 2;
    for (const p of this.params) p.grad.fill(0);
    // softmax cross-entropy + linear.
    const dlogits = new Float64Array(B * CLASSES);
    for (let b = 0; b < B; b++)
      for (let k = 0; k < CLASSES; k++) dlogits[b * CLASSES + k] = (probs[b * CLASSES + k] - (k === labels[b] ? 1 : 0)) / B;
    const dpooled = new Float64Array(B * T);
    const wfc = this.wfc.value;
    const gfc = this.wfc.grad;
    for (let b = 0; b < B; b++)
      for (let k = 0; k < CLASSES; k++) {
        const g = dlogits[b * CLASSES + k];
        this.bfc.grad[k] += g;
        const row = k * T;
        const v = b * T;
        for (let t = 0; t < T; t++) {
          gfc[row + t] += g * pooled[v + t];
          dpooled[v + t] += g * wfc[row + t];
        }
      }
    // GCP backward (covpool's own), in the dtype of its forward.
    const dy = this.gcpDtype === 'float32' ? Float32Array.from(dpooled) : dpooled;
    const dxT = this.gcp.backwardSync(cache.state as never, { data: dy, shape: [B, T] });
    cache.state?.dispose();
    const dfeat = Float64Array.from(dxT.data);
    let nonFinite = 0;
    let gcpSq = 0;
    for (let i = 0; i < dfeat.length; i++) {
      const g = dfeat[i];
      if (!Number.isFinite(g)) nonFinite++;
      else gcpSq += g * g;
    }
    const gcpGradNorm = Math.sqrt(gcpSq);
    if (nonFinite > 0) return { gcpGradNorm, paramGradNorm: NaN, nonFinite };
    // ReLU + batch norm.
    const dz = new Float64Array(B * C * N);
    const M = B * N;
    for (let o = 0; o < C; o++) {
      const g = this.gamma.value[o];
      let sumDy = 0;
      let sumDyX = 0;
      for (let b = 0; b < B; b++)
        for (let p = 0; p < N; p++) {
          const i = (b * C + o) * N + p;
          const d = features[i] > 0 ? dfeat[i] : 0;
          dfeat[i] = d;
          sumDy += d;
          sumDyX += d * xhat[i];
        }
      this.gamma.grad[o] = sumDyX;
      this.beta.grad[o] = sumDy;
      const k = (g * invStd[o]) / M;
      for (let b = 0; b < B; b++)
        for (let p = 0; p < N; p++) {
          const i = (b * C + o) * N + p;
          dz[i] = k * (M * dfeat[i] - sumDy - xhat[i] * sumDyX);
        }
    }
    // conv3 1x1.
    const da2 = new Float64Array(B * C2 * N);
    const w3 = this.w3.value;
    const g3 = this.w3.grad;
    for (let b = 0; b < B; b++)
      for (let o = 0; o < C; o++) {
        const out = (b * C + o) * N;
        for (let c = 0; c < C2; c++) {
          const inp = (b * C2 + c) * N;
          const w = w3[o * C2 + c];
          let s = 0;
          for (let p = 0; p < N; p++) {
            const d = dz[out + p];
            s += d * a2[inp + p];
            da2[inp + p] += w * d;
          }
          g3[o * C2 + c] += s;
        }
      }
    // conv2 (through its ReLU).
    const da1 = new Float64Array(B * C1 * H1 * H1);
    const w2 = this.w2.value;
    const g2 = this.w2.grad;
    const patch = new Float64Array(C1 * 4);
    const dpatch = new Float64Array(C1 * 4);
    for (let b = 0; b < B; b++)
      for (let oy = 0; oy < H2; oy++)
        for (let ox = 0; ox < H2; ox++) {
          for (let c = 0; c < C1; c++)
            for (let d = 0; d < 4; d++) patch[c * 4 + d] = a1[(b * C1 + c) * H1 * H1 + (2 * oy + (d >> 1)) * H1 + 2 * ox + (d & 1)];
          dpatch.fill(0);
          for (let o = 0; o < C2; o++) {
            const i = (b * C2 + o) * N + oy * H2 + ox;
            if (a2[i] <= 0) continue;
            const d = da2[i];
            this.b2.grad[o] += d;
            const row = o * C1 * 4;
            for (let k = 0; k < C1 * 4; k++) {
              g2[row + k] += d * patch[k];
              dpatch[k] += d * w2[row + k];
            }
          }
          for (let c = 0; c < C1; c++)
            for (let d = 0; d < 4; d++) da1[(b * C1 + c) * H1 * H1 + (2 * oy + (d >> 1)) * H1 + 2 * ox + (d & 1)] = dpatch[c * 4 + d];
        }
    // conv1 (through its ReLU): weights only, the images need no gradient.
    const g1 = this.w1.grad;
    for (let b = 0; b < B; b++) {
      const img = b * IMAGE * IMAGE;
      for (let o = 0; o < C1; o++)
        for (let oy = 0; oy < H1; oy++)
          for (let ox = 0; ox < H1; ox++) {
            const i = (b * C1 + o) * H1 * H1 + oy * H1 + ox;
            if (a1[i] <= 0) continue;
            const d = da1[i];
            this.b1.grad[o] += d;
            for (let ky = 0; ky < K1; ky++) {
              const iy = 2 * oy + ky - 2;
              if (iy < 0 || iy >= IMAGE) continue;
              for (let kx = 0; kx < K1; kx++) {
                const ix = 2 * ox + kx - 2;
                if (ix < 0 || ix >= IMAGE) continue;
                g1[o * 25 + ky * K1 + kx] += d * images[img + iy * IMAGE + ix];
              }
            }
          }
    }
    let sq = 0;
    for (const p of this.params) for (let i = 0; i < p.grad.length; i++) sq += p.grad[i] * p.grad[i];
    return { gcpGradNorm, paramGradNorm: Math.sqrt(sq), nonFinite: 0 };
  }

  /** One Adam step (bias-corrected) on every parameter. */
  adam(lr: number, beta1 = 0.9, beta2 = 0.999, eps = 1e-8): void {
    this.step++;
    const c1 = 1 - beta1 ** this.step;
    const c2 = 1 - beta2 ** this.step;
    for (const p of this.params) {
      const { value, grad, m, v } = p;
      for (let i = 0; i < value.length; i++) {
        const g = grad[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        value[i] -= (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + eps);
      }
    }
  }

  /** One SGD-with-momentum step (the paper's optimizer). */
  sgd(lr: number, momentum = 0.9, weightDecay = 0): void {
    this.step++;
    for (const p of this.params) {
      const { value, grad, m } = p;
      for (let i = 0; i < value.length; i++) {
        m[i] = momentum * m[i] + grad[i] + weightDecay * value[i];
        value[i] -= lr * m[i];
      }
    }
  }
}
