// The ten matrix-square-root methods, their options and defaults, as TypeScript types, plus the
// checks that turn a misspelt option into an error naming what is allowed. Ranges are checked
// by the native registry (native/core/methods.cpp), which fills in the defaults.
import { DType, formatValue } from './tensor';

export const METHODS = [
  'ns',
  'svd',
  'svd-trunc',
  'svd-topn',
  'svd-taylor',
  'svd-pade',
  'svd-pi',
  'svd-newton',
  'svd-lyap',
  'mpa-lya',
] as const;
export type Method = (typeof METHODS)[number];

export type Normalization = 'none' | 'trace' | 'frobenius';

interface CommonOptions {
  /** Precision of the spectral part. Default: float64 for eigen-based methods, else the input dtype. */
  precision?: DType;
  /** Scale before the square root and compensate after. Default: 'trace' (ns), 'frobenius' (mpa-lya), 'none' (svd-*). */
  normalization?: Normalization;
  /** Floor for eigenvalues. Default: machine epsilon of `precision`. */
  eps?: number;
  /**
   * Where the layer / sqrtm runs: 'cpu' (default), 'cuda', 'cuda:N', or 'auto' (the first GPU when
   * the binary has the CUDA backend and a device exists, else the CPU). Asking for CUDA from a
   * binary built without it is an error, not a silent fallback.
   */
  device?: Device;
}

export type Device = 'cpu' | 'cuda' | 'auto' | `cuda:${number}`;

/**
 * ns and mpa-lya are iterations that assume a positive semi-definite input: on a matrix with a
 * negative eigenvalue they return, silently, a matrix that is not its square root. A covariance
 * is PSD by construction; for `sqrtm` of other matrices, `checkPsd: true` tests each input first
 * (a Cholesky factorization, about a sixth of an eigendecomposition) and rejects indefinite ones.
 */
interface PsdCheckOption {
  /** Reject inputs with an eigenvalue below -10 C eps ||A||_F (default false). */
  checkPsd?: boolean;
}

export interface NsOptions extends CommonOptions, PsdCheckOption {
  method: 'ns';
  /** Newton-Schulz iterations T (default 5, at most 100). */
  iterations?: number;
}
export interface SvdOptions extends CommonOptions {
  method: 'svd' | 'svd-lyap';
}
export interface SvdTruncOptions extends CommonOptions {
  method: 'svd-trunc';
  /** K entries are clipped to [-kappa, kappa] (default 1e10). */
  kappa?: number;
}
export interface SvdTopNOptions extends CommonOptions {
  method: 'svd-topn';
  /** Eigenvalues kept (default C - round(50 C / 256): the paper drops 50 of 256). */
  n?: number;
}
export interface SvdTaylorOptions extends CommonOptions {
  method: 'svd-taylor';
  /** Taylor degree D (default 100). */
  degree?: number;
}
export interface SvdPadeOptions extends CommonOptions {
  method: 'svd-pade';
  /** Pade degree L of the [L/L] approximant (default 50). */
  degree?: number;
  /** Optional numerator / denominator coefficients (degree + 1 each) to use instead of the derived ones. */
  p?: number[];
  q?: number[];
}
export interface SvdPiOptions extends CommonOptions {
  method: 'svd-pi';
  /** Power-iteration steps T (default 19). */
  iterations?: number;
}
export interface SvdNewtonOptions extends CommonOptions {
  method: 'svd-newton';
  /** Newton-Schulz iterations of the backward (default 5). */
  iterations?: number;
}
export interface MpaLyaOptions extends CommonOptions, PsdCheckOption {
  method: 'mpa-lya';
  /** Pade degree m of the forward (default 5). */
  degree?: number;
  /** Newton-Schulz sign iterations of the Lyapunov backward (default 8). */
  iterations?: number;
}

export type MethodOptions =
  | NsOptions
  | SvdOptions
  | SvdTruncOptions
  | SvdTopNOptions
  | SvdTaylorOptions
  | SvdPadeOptions
  | SvdPiOptions
  | SvdNewtonOptions
  | MpaLyaOptions;

/** A method name or a full options object. */
export type MethodSpec = Method | MethodOptions;

const COMMON = ['method', 'precision', 'normalization', 'eps', 'device'];
const EXTRA: Record<Method, string[]> = {
  ns: ['iterations', 'checkPsd'],
  svd: [],
  'svd-trunc': ['kappa'],
  'svd-topn': ['n'],
  'svd-taylor': ['degree'],
  'svd-pade': ['degree', 'p', 'q'],
  'svd-pi': ['iterations'],
  'svd-newton': ['iterations'],
  'svd-lyap': [],
  'mpa-lya': ['degree', 'iterations', 'checkPsd'],
};

// The integer options' ranges, as native/core/methods.cpp checks them (kMaxIterations,
// kMaxPowerIterations, kMaxTaylorDegree; the Padé limits of native/core/pade.h); svd-topn's n is
// bounded by the number of channels, known only at the call (where the addon checks it).
const INTEGER_RANGES: Record<string, [number, number | 'C']> = {
  'ns iterations': [1, 100],
  'svd-newton iterations': [1, 100],
  'mpa-lya iterations': [1, 100],
  'svd-pi iterations': [1, 1000],
  'svd-taylor degree': [0, 1000],
  'svd-pade degree': [1, 1000],
  'mpa-lya degree': [1, 12],
  'svd-topn n': [1, 'C'],
};

/** Normalizes a method spec to an options object and rejects unknown methods and options. */
export function toMethodOptions(spec: MethodSpec): MethodOptions {
  const o: Record<string, unknown> = typeof spec === 'string' ? { method: spec } : { ...(spec as object) };
  if (typeof spec !== 'string' && (spec === null || typeof spec !== 'object'))
    throw new TypeError('covpool: a method must be a name or an options object');
  const m = o.method;
  if (typeof m !== 'string' || !(METHODS as readonly string[]).includes(m))
    throw new RangeError(`covpool: unknown method ${formatValue(m)}; expected one of ${METHODS.join(', ')}`);
  const allowed = [...COMMON, ...EXTRA[m as Method]];
  for (const key of Object.keys(o)) {
    if (o[key] === undefined) {
      delete o[key];
      continue;
    }
    if (!allowed.includes(key))
      throw new RangeError(`covpool: option '${key}' does not apply to method '${m}' (its options: ${allowed.slice(1).join(', ')})`);
  }
  for (const key of ['iterations', 'degree', 'n']) {
    if (!(key in o)) continue;
    const [lo, hi] = INTEGER_RANGES[`${m} ${key}`];
    const v = o[key];
    // svd-topn's integer n is range-checked natively, against the input's C.
    if (!(Number.isInteger(v) && (hi === 'C' || ((v as number) >= lo && (v as number) <= hi))))
      throw new RangeError(`covpool: ${m}: option '${key}' must be an integer in [${lo}, ${hi}]${hi === 'C' ? ' (C: the number of channels)' : ''}, got ${formatValue(v)}`);
  }
  for (const key of ['kappa', 'eps'])
    if (key in o && !(typeof o[key] === 'number' && Number.isFinite(o[key]) && (o[key] as number) > 0))
      throw new RangeError(`covpool: ${m}: option '${key}' must be a finite number > 0, got ${formatValue(o[key])}`);
  if ('precision' in o && o.precision !== 'float32' && o.precision !== 'float64')
    throw new RangeError(`covpool: ${m}: option 'precision' must be 'float32' or 'float64', got ${formatValue(o.precision)}`);
  if ('normalization' in o && !['none', 'trace', 'frobenius'].includes(o.normalization as string))
    throw new RangeError(`covpool: ${m}: option 'normalization' must be 'none', 'trace' or 'frobenius', got ${formatValue(o.normalization)}`);
  if ('device' in o && !(typeof o.device === 'string' && /^(cpu|cuda|auto|cuda:\d+)$/.test(o.device)))
    throw new RangeError(`covpool: ${m}: option 'device' must be 'cpu', 'cuda', 'cuda:N' or 'auto', got ${formatValue(o.device)}`);
  for (const key of ['p', 'q'])
    if (key in o && !(Array.isArray(o[key]) && (o[key] as unknown[]).every((v) => typeof v === 'number' && Number.isFinite(v))))
      throw new TypeError(`covpool: ${m}: option '${key}' must be an array of finite numbers, got ${formatValue(o[key])}`);
  if ('checkPsd' in o && typeof o.checkPsd !== 'boolean')
    throw new TypeError(`covpool: ${m}: option 'checkPsd' must be a boolean, got ${formatValue(o.checkPsd)}`);
  return o as unknown as MethodOptions;
}
