// Small helpers shared by the analyses: seeded random numbers (every report must come out the same
// on every run, so nothing here touches Math.random), summary statistics that keep NaN/Infinity
// visible instead of silently dropping them, and number formatting for the Markdown tables.

/** Machine epsilons (unit roundoff times two) of the two dtypes, the library's default floors. */
export const EPS32 = 2 ** -23;
export const EPS64 = 2 ** -52;

/**
 * Seeded uniform generator on [0, 1): splitmix32-style mixing of a Weyl sequence. Good enough for
 * test inputs and cheap; the point is reproducibility across machines, not statistical quality.
 */
export function uniform(seed: number): () => number {
  let state = (seed * 0x9e3779b9) >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}

/** Seeded standard normal samples (Marsaglia's polar method: no trigonometry, exact tails). */
export function normal(seed: number): () => number {
  const u = uniform(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    for (;;) {
      const a = 2 * u() - 1;
      const b = 2 * u() - 1;
      const s = a * a + b * b;
      if (s > 0 && s < 1) {
        const f = Math.sqrt((-2 * Math.log(s)) / s);
        spare = b * f;
        return a * f;
      }
    }
  };
}

/** Median of the values; NaN if any value is NaN (a hidden NaN would make a table lie). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  if (xs.some((x) => Number.isNaN(x))) return NaN;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : 0.5 * (s[m - 1] + s[m]);
}

/** Maximum; NaN if any value is NaN; -Infinity for an empty list. */
export function maximum(xs: readonly number[]): number {
  let m = -Infinity;
  for (const x of xs) {
    if (Number.isNaN(x)) return NaN;
    if (x > m) m = x;
  }
  return m;
}

export function minimum(xs: readonly number[]): number {
  let m = Infinity;
  for (const x of xs) {
    if (Number.isNaN(x)) return NaN;
    if (x < m) m = x;
  }
  return m;
}

/** Scientific notation with `digits` decimals, with readable forms for 0 and non-finite values. */
export function sci(x: number, digits = 2): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return '0';
  const [m, e] = x.toExponential(digits).split('e');
  return `${m}e${e.startsWith('+') ? e.slice(1) : e}`;
}

/** Fixed notation for moderate numbers, scientific otherwise. */
export function num(x: number, digits = 3): string {
  if (!Number.isFinite(x) || x === 0) return sci(x, digits);
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e6) return Number(x.toPrecision(digits + 1)).toString();
  return sci(x, digits);
}

/** A percentage with enough digits to show small shares (one tie in a 256 x 256 matrix is 0.003 %). */
export function percent(share: number): string {
  if (Number.isNaN(share)) return 'NaN';
  if (share === 0) return '0';
  const p = share * 100;
  return (p >= 1 ? p.toFixed(1) : p.toPrecision(2)) + ' %';
}

/** Decades from 10^hi down to 10^lo, e.g. decades(-1, -14) = [1e-1, ..., 1e-14]. */
export function decades(hi: number, lo: number): number[] {
  const out: number[] = [];
  for (let e = hi; e >= lo; e--) out.push(Number(`1e${e}`));
  return out;
}
