// The analysis tool (lib/analysis, `npm run analyze`): runs the generator end to end on small sizes
// and checks its numbers against computations done here independently — a Jacobi eigensolver in
// plain JavaScript instead of LAPACK, eigen-gap algebra from the spectrum's definition, closed forms
// of the Taylor sum and of 1/(1 - r), exact integer arithmetic for Q(1) — and that every SVG is
// well-formed XML with the expected number of series.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { eighSync, resolveOptions, sqrtmBackwardSync, sqrtmSync, Tensor } from '../lib';
import { main, parseArgs } from '../lib/analysis/cli';
import { controlledSpectrum, spdWithSpectrum, syntheticFeatures } from '../lib/analysis/data';
import { randomSymmetric } from '../lib/analysis/linalg';
import { reconstructFromEigen, relErr } from './helpers';

const EPS32 = 2 ** -23;
const EPS64 = 2 ** -52;

// ---- independent tools ----------------------------------------------------------------------

/** Cyclic Jacobi eigensolver for a small symmetric matrix: ascending values, vectors as columns. */
function jacobiEigen(aIn: ArrayLike<number>, n: number): { values: number[]; vectors: Float64Array } {
  const a = Float64Array.from(aIn);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-300) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i * n + i] - a[j * n + j]);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    for (let k = 0; k < n; k++) vectors[k * n + dst] = v[k * n + src];
  });
  return { values: order.map((i) => a[i * n + i]), vectors };
}

/** Covariance of one [C, N] feature block in float64, centred over positions. */
function covariance(x: ArrayLike<number>, off: number, C: number, N: number): Float64Array {
  const mean = new Float64Array(C);
  for (let i = 0; i < C; i++) {
    let s = 0;
    for (let n = 0; n < N; n++) s += x[off + i * N + n];
    mean[i] = s / N;
  }
  const a = new Float64Array(C * C);
  for (let i = 0; i < C; i++)
    for (let j = i; j < C; j++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += (x[off + i * N + n] - mean[i]) * (x[off + j * N + n] - mean[j]);
      a[i * C + j] = a[j * C + i] = s / N;
    }
  return a;
}

/** V diag(f(l)) V^T. */
function spectralFunction(v: ArrayLike<number>, l: number[], f: (x: number) => number, n: number): Float64Array {
  return reconstructFromEigen(v, l.map(f), n);
}

/**
 * A strict little XML well-formedness check (what an SVG viewer needs): every tag closed in order,
 * attributes quoted, no stray '<' or '&'. Returns the number of <g class="series"> elements.
 */
function checkXml(xml: string): { ok: boolean; why?: string; series: number } {
  const stack: string[] = [];
  let series = 0;
  let i = 0;
  const text = xml.replace(/<\?xml[^>]*\?>/, '');
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/y;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    const chunk = text.slice(i, lt < 0 ? text.length : lt);
    if (/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(chunk)) return { ok: false, why: `bad entity near ${i}`, series };
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(text);
    if (!m) return { ok: false, why: `malformed tag at ${lt}: ${text.slice(lt, lt + 60)}`, series };
    const [, closing, name, attrs, selfClosing] = m;
    if (closing) {
      if (stack.pop() !== name) return { ok: false, why: `unbalanced </${name}> at ${lt}`, series };
    } else {
      if (name === 'g' && /\sclass="series"/.test(attrs)) series++;
      if (!selfClosing) stack.push(name);
    }
    i = tag.lastIndex;
  }
  if (stack.length) return { ok: false, why: `unclosed <${stack[stack.length - 1]}>`, series };
  return { ok: true, series };
}

// ---- one small run of the whole tool ----------------------------------------------------------

const OUT = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-analysis-'));
const SIZE = { C: 16, N: 9 };
const B = 2;
const GRAD_C = 8;
const SEED = 3;
let exitCode = -1;
let stderrText = '';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
const readJson = (name: string): Json => JSON.parse(fs.readFileSync(path.join(OUT, name), 'utf8'));
const num = (v: unknown): number => (v === '+inf' ? Infinity : v === '-inf' ? -Infinity : v === 'NaN' ? NaN : (v as number));

beforeAll(() => {
  const sink = { write: (s: string) => ((stderrText += s), true) } as unknown as NodeJS.WritableStream;
  exitCode = main(
    ['all', '--quick', '--out', OUT, '--sizes', `${SIZE.C}x${SIZE.N}`, '--batch', String(B), '--grad-batch', String(B),
      '--grad-sizes', String(GRAD_C), '--seeds', '1', '--seed', String(SEED), '--no-default-features'],
    sink,
  );
});

afterAll(() => fs.rmSync(OUT, { recursive: true, force: true }));

describe('covpool-analyze all (small sizes)', () => {
  test('exits 0 and writes the reports, an index and their plots', () => {
    expect({ exitCode, stderrText: exitCode === 0 ? '' : stderrText }).toEqual({ exitCode: 0, stderrText: '' });
    for (const f of ['README.md', 'precision.md', 'gradients.md', 'pade.md', 'precision.json', 'gradients.json', 'pade.json'])
      expect(fs.existsSync(path.join(OUT, f))).toBe(true);
    const md = fs.readFileSync(path.join(OUT, 'precision.md'), 'utf8');
    expect(md).toMatch(/\| case +\| zero \(C−N\+1\)/);
    // every linked image exists
    for (const name of ['precision.md', 'gradients.md', 'pade.md']) {
      const text = fs.readFileSync(path.join(OUT, name), 'utf8');
      const links = [...text.matchAll(/!\[[^\]]*\]\(([^)]+\.svg)\)/g)].map((m) => m[1]);
      expect(links.length).toBeGreaterThan(0);
      for (const l of links) expect(fs.existsSync(path.join(OUT, l))).toBe(true);
    }
  });

  test('each report says how to regenerate it from an installed package and from the repository', () => {
    for (const name of ['README.md', 'precision.md', 'gradients.md', 'pade.md']) {
      const text = fs.readFileSync(path.join(OUT, name), 'utf8');
      expect(text).toContain('`npx covpool-analyze all --quick --out ');
      expect(text).toContain('`npm run analyze -- all --quick --out ');
    }
  });

  test('every SVG is well-formed XML with the expected number of series', () => {
    const expected: Record<string, number> = {
      [`gradients-C${GRAD_C}-bottom-library.svg`]: 10, // one per method
      [`gradients-C${GRAD_C}-bottom-exact.svg`]: 7, // the six K methods + svd-lyap
      [`gradients-C${GRAD_C}-bottom-maxk.svg`]: 8, // the same seven + the exact 1/gap line
      [`gradients-C${GRAD_C}-middle-library.svg`]: 10,
      'pade-values.svg': 5,
      'pade-error.svg': 3,
      'precision-spectrum-iid-c-16-n-9.svg': 4,
      'precision-eigenvalues.svg': 2, // one per feature case (iid, decay)
      'precision-eigenvectors.svg': 2,
    };
    const svgs = fs.readdirSync(OUT).filter((f) => f.endsWith('.svg'));
    expect(svgs.length).toBe(6 + 2 + 4); // gradients 2 positions x 3, pade 2, precision 2 spectra + 2
    for (const f of svgs) {
      const r = checkXml(fs.readFileSync(path.join(OUT, f), 'utf8'));
      expect({ f, ok: r.ok, why: r.why }).toEqual({ f, ok: true, why: undefined });
      if (f in expected) expect({ f, series: r.series }).toEqual({ f, series: expected[f] });
    }
  });

  test('precision: eigenvalue counts and errors match a Jacobi eigensolver on a covariance formed here', () => {
    const data = readJson('precision.json');
    const iid = data.cases.find((c: Json) => c.name.startsWith('iid'));
    expect([iid.B, iid.C, iid.N]).toEqual([B, SIZE.C, SIZE.N]);
    const x = syntheticFeatures('iid', SIZE, B, SEED).features.data; // same inputs as the tool
    const { C, N } = SIZE;
    for (let b = 0; b < B; b++) {
      const s = iid.samples[b];
      const a = covariance(x, b * C * N, C, N);
      const { values: l, vectors: v } = jacobiEigen(a, C);
      const lmax = l[C - 1];
      expect(Math.abs(s.lambdaMax - lmax) / lmax).toBeLessThan(1e-12);
      // a centred covariance of N < C positions has C - N + 1 zero eigenvalues
      expect(s.counts.expectedNull).toBe(C - N + 1);
      expect(l.filter((x) => x < EPS32 * lmax).length).toBe(C - N + 1);
      expect(s.counts.f64BelowEps32Rel).toBe(l.filter((x) => x < EPS32 * lmax).length);
      // the float32 run: the library's float32 eigh of this covariance rounded to float32
      const l32 = Array.from(eighSync(new Tensor(Float32Array.from(a), [1, C, C])).values.data);
      expect(Math.abs(s.counts.f32BelowEps32Rel - l32.filter((x) => x < EPS32 * lmax).length)).toBeLessThanOrEqual(1);
      // a relative error by hand: the float64 root floored at eps32 instead of eps64
      const sq64 = spectralFunction(v, l, (x) => Math.sqrt(Math.max(x, EPS64)), C);
      const sqFloor = spectralFunction(v, l, (x) => Math.sqrt(Math.max(x, EPS32)), C);
      // (not to rounding: the two eigensolvers round the C - N + 1 null eigenvalues differently, at
      // ~1e-16 lambda_max, and those above eps64 pass through sqrt(max(l, eps64)) as up to ~1e-8
      // against sqrt(eps32) = 3.5e-4, i.e. up to ~3e-5 relative; measured 1.2e-6)
      expect(Math.abs(s.sqrtFloorOnly / relErr(sqFloor, sq64) - 1)).toBeLessThan(1e-4);
      // ... and float32 svd against it (the library's float32 root on the rounded covariance)
      const s32 = sqrtmSync(new Tensor(Float32Array.from(a), [1, C, C]), { method: 'svd', precision: 'float32' });
      expect(s.sqrtF32 / relErr(s32.output.data, sq64)).toBeGreaterThan(0.9);
      expect(s.sqrtF32 / relErr(s32.output.data, sq64)).toBeLessThan(1.1);
      // reconstruction in float64 is at rounding level
      expect(s.reconF64).toBeLessThan(1e-13);
      expect(s.reconF32).toBeGreaterThan(1e-9);
      expect(s.reconF32).toBeLessThan(1e-5);
    }
    // the eigenvalue buckets count every eigenvalue once
    const counted = iid.buckets.reduce((t: number, k: Json) => t + k.count, 0);
    expect(counted).toBe(B * C);
    const nullBucket = iid.buckets.find((k: Json) => k.decade === null);
    expect(nullBucket.count).toBeGreaterThanOrEqual(B * (C - N + 1));
    // the float64 layer gradient agrees with finite differences (the reference is right)
    for (const c of data.cases) expect(Math.abs(num(c.fd.f64) / num(c.fd.fd) - 1)).toBeLessThan(1e-5);
    // the layer table: svd-lyap in f64 set-up is the reference itself
    const lyap = iid.layer.find((r: Json) => r.method === 'svd-lyap');
    expect(num(lyap.grad.f64)).toBe(0);
    expect(num(lyap.out.f64)).toBe(0);
  });

  test('gradients: the K entries follow from the spectrum, and one error recomputed by hand', () => {
    const data = readJson('gradients.json');
    const fam = data.families.find((f: Json) => f.C === GRAD_C && f.position === 'bottom');
    const lmin = fam.lambdaMin;
    const D = resolveOptions('svd-taylor', 'float64', GRAD_C).degree as number;
    for (const row of fam.rows) {
      const g = row.gap;
      // the bottom pair is (lmin, lmin (1 + g)); its exact coefficient is 1/(lmin g), up to the
      // rounding of 1 + g (relative 2 eps64 / g)
      if (g > 0) {
        expect(Math.abs(num(row.pairExact) * lmin * g - 1)).toBeLessThan(1e-12 + (4 * EPS64) / g);
        expect(num(row.pairExact) * num(row.absGap)).toBeCloseTo(1, 12);
        expect(Math.abs(num(row.pairEntry.svd) / num(row.pairExact) - 1)).toBeLessThan(1e-12);
        expect(num(row.nonFinite.svd)).toBe(0);
      } else {
        expect(num(row.pairEntry.svd)).toBe(Infinity);
        expect(num(row.nonFinite.svd)).toBeCloseTo(2 / (GRAD_C * (GRAD_C - 1)), 12);
      }
      // Taylor: s / l_b * sum_{k<=D} r^k with r = 1/(1 + g); bounded by (D + 1)/l_b
      // (1 - r^(D+1)) / (1 - r) through expm1/log1p: the plain form cancels for r near 1
      const lb = lmin * (1 + g);
      const taylor = g === 0 ? (D + 1) / lb : -Math.expm1(-(D + 1) * Math.log1p(g)) / (g / (1 + g)) / lb;
      expect(Math.abs(num(row.pairEntry['svd-taylor']) / taylor - 1)).toBeLessThan(1e-9);
      expect(num(row.nonFinite['svd-taylor'])).toBe(0);
      // the exact-eigenpair svd-lyap row only sees rounding
      expect(num(row.exactPairs['svd-lyap'])).toBeLessThan(1e-13);
    }
    // svd's error grows as the gap shrinks (library backward): 1e-1 vs 1e-8
    const at = (g: number) => fam.rows.find((r: Json) => r.gap === g);
    expect(num(at(1e-8).library.svd)).toBeGreaterThan(num(at(1e-1).library.svd));
    // recompute the 1e-2 row by hand (one seed: its scale is exactly 1)
    const row = at(1e-2);
    const spec = controlledSpectrum(GRAD_C, 'bottom', 1e-2, lmin);
    const seedQ = SEED * 1000 + GRAD_C;
    const { a, q } = spdWithSpectrum(spec.values, seedQ);
    const G = randomSymmetric(GRAD_C, seedQ + 7);
    const grad = (m: 'svd' | 'svd-lyap' | 'svd-taylor') => {
      const f = sqrtmSync(new Tensor(Float64Array.from(a), [1, GRAD_C, GRAD_C]), m);
      return Float64Array.from(sqrtmBackwardSync(f.state, new Tensor(Float64Array.from(G), [1, GRAD_C, GRAD_C])).data);
    };
    const ref = grad('svd-lyap');
    expect(Math.abs(num(row.library.svd) - relErr(grad('svd'), ref))).toBeLessThan(1e-20 + 1e-9 * num(row.library.svd));
    expect(Math.abs(num(row.library['svd-taylor']) / relErr(grad('svd-taylor'), ref) - 1)).toBeLessThan(1e-9);
    // the reference against the exact Lyapunov solution written out here: Q [(Q^T G Q) / (sqrt li + sqrt lj)] Q^T
    const C = GRAD_C, l = spec.values;
    const m = new Float64Array(C * C);
    for (let i = 0; i < C; i++)
      for (let j = 0; j < C; j++) {
        let s = 0;
        for (let k = 0; k < C; k++) for (let t = 0; t < C; t++) s += q[k * C + i] * G[k * C + t] * q[t * C + j];
        m[i * C + j] = s / (Math.sqrt(l[i]) + Math.sqrt(l[j]));
      }
    const exact = new Float64Array(C * C);
    for (let i = 0; i < C; i++)
      for (let j = 0; j < C; j++) {
        let s = 0;
        for (let k = 0; k < C; k++) for (let t = 0; t < C; t++) s += q[i * C + k] * m[k * C + t] * q[j * C + t];
        exact[i * C + j] = s;
      }
    expect(relErr(ref, exact)).toBeLessThan(1e-9);
    expect(num(row.library['svd-lyap'])).toBeLessThan(1e-9);
  });

  test('gradients (realistic): svd\'s non-finite share is the tied pairs among the floored eigenvalues', () => {
    const data = readJson('gradients.json');
    for (const r of data.realistic) {
      const C = r.C;
      const svd = r.rows.find((x: Json) => x.method === 'svd');
      const worst = Math.max(...r.floored.map((f: number) => (f * (f - 1)) / (C * (C - 1))));
      expect(num(svd.nonFinite)).toBeCloseTo(worst, 12);
      const taylor = r.rows.find((x: Json) => x.method === 'svd-taylor');
      expect(num(taylor.nonFinite)).toBe(0);
      for (const m of ['ns', 'svd-newton', 'mpa-lya']) expect(r.rows.find((x: Json) => x.method === m).maxK).toBe('NaN');
    }
  });

  test('pade: values against 1/(1 - r), the Taylor closed form and exact integer arithmetic', () => {
    const data = readJson('pade.json');
    expect(data.L).toBe(50);
    expect(data.matchesLibrary).toBe(true);
    for (const p of data.decadePoints) {
      const r = p.r;
      const omr = 1 - r;
      if (omr >= 1e-3) {
        expect(Math.abs(num(p.horner) * omr - 1)).toBeLessThan(1e-12);
        expect(Math.abs(num(p.libraryK) * omr - 1)).toBeLessThan(1e-12);
      }
      const taylor = omr === 0 ? data.D + 1 : -Math.expm1((data.D + 1) * Math.log1p(-omr)) / omr;
      expect(Math.abs(num(p.taylor) / taylor - 1)).toBeLessThan(1e-12);
    }
    const atOne = data.decadePoints[data.decadePoints.length - 1];
    expect(atOne.r).toBe(1);
    expect(num(atOne.libraryK)).toBe(Infinity); // the pole rule
    // Q(1) of the stored coefficients: 1 + 50 fl(-1/50), exactly. fl(0.02) * 2^58 is an integer.
    const m = BigInt(0.02 * 2 ** 58);
    expect(Number(m) * 2 ** -58).toBe(0.02);
    const q1 = Number(2n ** 58n - 50n * m) * 2 ** -58;
    expect(num(data.summary.storedQ1)).toBe(q1);
    expect(q1).not.toBe(0);
    // the pole rule fires only within a few ulps of r = 1; Taylor's 1e-8 error starts at r^(D+1) = 1e-8
    expect(num(data.summary.firstPole)).toBeLessThan(1e-14);
    const taylorEdge = 1 - 1e-8 ** (1 / (data.D + 1));
    expect(num(data.summary.firstBadTaylor)).toBeGreaterThan(taylorEdge / 1.2);
    expect(num(data.summary.firstBadTaylor)).toBeLessThan(taylorEdge * 1.2);
  });
});

describe('covpool-analyze with feature files', () => {
  test('JSON and raw float32 features are analysed like the synthetic ones', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-features-'));
    try {
      const [C, N] = [12, 5];
      const x = syntheticFeatures('decay', { C, N }, 1, 9).features.data;
      fs.writeFileSync(path.join(dir, 'feat.json'), JSON.stringify({ shape: [1, C, N], data: Array.from(x) }));
      fs.writeFileSync(path.join(dir, 'feat.f32'), Buffer.from(Float32Array.from(x).buffer));
      let text = '';
      const sink = { write: (t: string) => ((text += t), true) } as unknown as NodeJS.WritableStream;
      const code = main(
        ['precision', '--quiet', '--sizes', '8x5', '--batch', '1', '--models', 'iid', '--no-default-features', '--out', dir,
          '--features', path.join(dir, 'feat.json'), '--features', path.join(dir, 'feat.f32'), '--features-shape', `1,${C},${N}`],
        sink,
      );
      expect({ code, text }).toEqual({ code: 0, text: '' });
      const data = JSON.parse(fs.readFileSync(path.join(dir, 'precision.json'), 'utf8'));
      expect(data.cases.map((c: Json) => c.name)).toEqual(['iid C=8 N=5', `feat.json C=${C} N=${N}`, `feat.f32 C=${C} N=${N}`]);
      for (const c of data.cases.slice(1)) {
        expect(c.samples[0].counts.expectedNull).toBe(C - N + 1);
        expect(c.samples[0].counts.f64BelowEps32Rel).toBe(C - N + 1);
      }
      // the same numbers from both file formats
      expect(data.cases[2].samples).toEqual(data.cases[1].samples);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('plots: coinciding series stay visible', () => {
  test('three identical series get three dash patterns and three marker shapes, in the plot and the legend', () => {
    const { svgPlot } = require('../lib/analysis/svg') as typeof import('../lib/analysis/svg');
    const pts: Array<[number, number]> = [[1, 1], [2, 4], [3, 9]];
    const svg = svgPlot({ title: 't', xLabel: 'x', yLabel: 'y', series: ['ns', 'svd-newton', 'mpa-lya'].map((name) => ({ name, points: pts, mode: 'both' as const })) });
    const groups = [...svg.matchAll(/<g class="series" data-name="([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)];
    expect(groups.map((g) => g[1])).toEqual(['ns', 'svd-newton', 'mpa-lya']);
    const dashes = groups.map((g) => /stroke-dasharray="([^"]+)"/.exec(g[2])?.[1] ?? 'solid');
    expect(new Set(dashes).size).toBe(3);
    // Markers: open shapes, one element kind per series here (circle, rect, polygon).
    const shapes = groups.map((g) => /<(circle|rect|polygon|path) [^>]*fill="none"[^>]*stroke-width="1.2"/.exec(g[2])?.[1]);
    expect(shapes).toEqual(['circle', 'rect', 'polygon']);
    const legend = /<g class="legend">([\s\S]*?)<\/g>/.exec(svg)![1];
    expect(new Set([...legend.matchAll(/stroke-dasharray="([^"]+)"/g)].map((m) => m[1])).size).toBe(2); // + one solid
    expect(checkXml(svg).ok).toBe(true);
  });

  test('series that coincide are drawn 3 px apart (and the legend says so); the others where they are', () => {
    const { svgPlot } = require('../lib/analysis/svg') as typeof import('../lib/analysis/svg');
    const pts: Array<[number, number]> = [[1, 1], [2, 4], [3, 9]];
    const apart: Array<[number, number]> = [[1, 5], [2, 6], [3, 2]];
    const series = [...['ns', 'svd-newton', 'mpa-lya'].map((name) => ({ name, points: pts, mode: 'both' as const })), { name: 'svd', points: apart, mode: 'both' as const }];
    const svg = svgPlot({ title: 't', xLabel: 'x', yLabel: 'y', series });
    const groups = [...svg.matchAll(/<g class="series" data-name="([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)];
    const ys = groups.map((g) => [.../[ML][\d.]+ ([\d.]+)/g.exec(g[2]) ?? []].slice(1).map(Number)[0]);
    // The first point of each line: the three coinciding ones 3 px apart around the true position.
    expect(ys[1] - ys[0]).toBeCloseTo(3, 5);
    expect(ys[2] - ys[1]).toBeCloseTo(3, 5);
    const alone = svgPlot({ title: 't', xLabel: 'x', yLabel: 'y', series: [series[1], series[3]] });
    const aloneGroups = [...alone.matchAll(/<g class="series" data-name="([^"]+)"[^>]*>([\s\S]*?)<\/g>/g)];
    expect(/<path d="([^"]+)"/.exec(groups[3][2])![1]).toBe(/<path d="([^"]+)"/.exec(aloneGroups[1][2])![1]); // svd not moved
    expect(/<path d="([^"]+)"/.exec(groups[1][2])![1]).toBe(/<path d="([^"]+)"/.exec(aloneGroups[0][2])![1]); // the middle one at its true place
    expect(svg).toContain('coinciding series are drawn');
    expect(alone).not.toContain('coinciding series are drawn');
  });

  test("a reference line's label does not sit on the data", () => {
    const { svgPlot } = require('../lib/analysis/svg') as typeof import('../lib/analysis/svg');
    // Points crowd the lower right end of the bound, where a label at the line's end would go (one
    // more, far off, makes the axes span the whole bound).
    const crowd: Array<[number, number]> = [[1e-8, 1e-9]];
    for (let e = -3; e <= 0; e += 0.05) for (const f of [0.5, 1, 2]) crowd.push([10 ** e, (f * 1e-7) / 10 ** e]);
    const bound: Array<[number, number]> = [-8, -6, -4, -2, 0].map((e) => [10 ** e, 1e-7 / 10 ** e]);
    const svg = svgPlot({ title: 't', xLabel: 'x', yLabel: 'y', xLog: true, yLog: true, series: [{ name: 'errors', points: crowd, mode: 'points' }], refLines: [{ points: bound, label: 'ε32·λmax/λ' }] });
    const label = /<text class="reference-label" x="([\d.]+)" y="([\d.]+)" text-anchor="(start|end)"/.exec(svg)!;
    const [lx, ly] = [Number(label[1]), Number(label[2])];
    const w = 6.2 * [...'ε32·λmax/λ'].length;
    const box = { l: label[3] === 'end' ? lx - w : lx, r: label[3] === 'end' ? lx : lx + w, t: ly - 11, b: ly + 2 };
    const group = /<g class="series" data-name="errors"[^>]*>([\s\S]*?)<\/g>/.exec(svg)![1];
    const markers = [...group.matchAll(/<circle cx="([\d.]+)" cy="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(markers.length).toBe(crowd.length);
    expect(markers.filter(([x, y]) => x >= box.l - 3 && x <= box.r + 3 && y >= box.t - 3 && y <= box.b + 3)).toEqual([]);
  });
});

describe('covpool-analyze arguments', () => {
  test('defaults and --quick', () => {
    const full = parseArgs(['all']);
    const quick = parseArgs(['gradients', '--quick']);
    if (full === 'help' || quick === 'help') throw new Error('unexpected help');
    expect(full.out).toBe('reports');
    // --quick writes next to, never over, the tracked full reports (unless --out says otherwise).
    expect(quick.out).toBe(require('path').join('reports', 'quick'));
    const quickOut = parseArgs(['all', '--quick', '--out', 'elsewhere']);
    if (quickOut === 'help') throw new Error('unexpected help');
    expect(quickOut.out).toBe('elsewhere');
    expect(full.sizes).toEqual([{ C: 256, N: 196 }, { C: 64, N: 49 }]);
    expect(full.gradSizes).toEqual([16, 64]);
    expect(quick.gradSizes).toEqual([16]);
    expect(parseArgs(['pade', '--help'])).toBe('help');
  });

  test('mistakes exit with 2 and say what is wrong', () => {
    for (const [argv, re] of [
      [['nope'], /unknown subcommand 'nope'/],
      [['all', '--sizes', '256'], /'256' is not CxN/],
      [['all', '--seeds', '0'], /--seeds needs an integer >= 1/],
      [['all', '--positions', 'top'], /'top' is not one of bottom, middle/],
      [['pade', '--frobnicate'], /unknown option '--frobnicate'/],
    ] as Array<[string[], RegExp]>) {
      let text = '';
      const sink = { write: (s: string) => ((text += s), true) } as unknown as NodeJS.WritableStream;
      expect(main(argv, sink)).toBe(2);
      expect(text).toMatch(re);
    }
  });
});
