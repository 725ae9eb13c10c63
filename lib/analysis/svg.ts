// A tiny dependency-free SVG plot writer: line and scatter series on linear or log axes, a legend,
// and dashed reference lines (bounds such as eps/gap). Output is plain, deterministic SVG 1.1, small
// enough to commit; each series is one <g class="series" data-name="..."> so that tools (and the
// test) can find them.

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** 'line' (default), 'points' (scatter) or 'both'. */
  mode?: 'line' | 'points' | 'both';
  /** true: dashed; false: solid; absent: the k-th series gets the k-th pattern of DASHES. */
  dashed?: boolean;
  color?: string;
}

/** A horizontal (y) or vertical (x) dashed reference line with a label; not a series. */
export interface RefLine {
  y?: number;
  x?: number;
  /** A line through points instead (e.g. a bound eps/x on log axes). */
  points?: ReadonlyArray<readonly [number, number]>;
  label: string;
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: Series[];
  refLines?: RefLine[];
  /** Extra labelled x ticks, e.g. where exact ties are drawn on a log gap axis. */
  xTicks?: Array<{ value: number; label: string }>;
  xDomain?: [number, number];
  yDomain?: [number, number];
  width?: number;
  height?: number;
}

// Series often coincide exactly (ns, svd-newton and mpa-lya share a gradient error; svd and
// svd-pade share K): colour alone would hide all but the last one drawn. Each series therefore
// also gets its own dash pattern and an open marker of its own shape, so overlapping lines show
// alternating colours and overlapping points show nested shapes, and every legend entry is visible.
export const DASHES = ['', '7,3', '2,2', '9,3,2,3', '4,4', '12,4', '3,5', '6,2,2,2,2,2'];
export const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'cross', 'triangle-down', 'plus', 'star'] as const;

/** An open marker of the given shape centred on (x, y), as SVG. */
export function marker(shape: (typeof MARKERS)[number], x: number, y: number, r: number, color: string): string {
  const f = (v: number): string => String(Math.round(v * 10) / 10);
  const stroke = `fill="none" stroke="${color}" stroke-width="1.2"`;
  const poly = (pts: Array<[number, number]>): string => `<polygon points="${pts.map(([a, b]) => `${f(x + a)},${f(y + b)}`).join(' ')}" ${stroke}/>`;
  switch (shape) {
    case 'circle':
      return `<circle cx="${f(x)}" cy="${f(y)}" r="${f(r)}" ${stroke}/>`;
    case 'square':
      return `<rect x="${f(x - r)}" y="${f(y - r)}" width="${f(2 * r)}" height="${f(2 * r)}" ${stroke}/>`;
    case 'triangle':
      return poly([[0, -1.3 * r], [1.2 * r, r], [-1.2 * r, r]]);
    case 'triangle-down':
      return poly([[0, 1.3 * r], [1.2 * r, -r], [-1.2 * r, -r]]);
    case 'diamond':
      return poly([[0, -1.4 * r], [1.4 * r, 0], [0, 1.4 * r], [-1.4 * r, 0]]);
    case 'cross':
      return `<path d="M${f(x - r)} ${f(y - r)}L${f(x + r)} ${f(y + r)}M${f(x - r)} ${f(y + r)}L${f(x + r)} ${f(y - r)}" ${stroke}/>`;
    case 'plus':
      return `<path d="M${f(x - 1.3 * r)} ${f(y)}L${f(x + 1.3 * r)} ${f(y)}M${f(x)} ${f(y - 1.3 * r)}L${f(x)} ${f(y + 1.3 * r)}" ${stroke}/>`;
    case 'star':
      return `<path d="M${f(x - r)} ${f(y)}L${f(x + r)} ${f(y)}M${f(x - 0.6 * r)} ${f(y - r)}L${f(x + 0.6 * r)} ${f(y + r)}M${f(x - 0.6 * r)} ${f(y + r)}L${f(x + 0.6 * r)} ${f(y - r)}" ${stroke}/>`;
  }
}

function dashOf(s: Series, k: number): string {
  if (s.dashed === true) return '5,3';
  if (s.dashed === false) return '';
  return DASHES[k % DASHES.length];
}

export const PALETTE = [
  '#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f',
  '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#6b6b6b',
  '#17becf', '#1a1a1a',
];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Short round coordinates keep the files small and byte-stable across platforms. */
function c(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

interface Axis {
  log: boolean;
  lo: number; // in transformed units (log10 for log axes)
  hi: number;
  ticks: Array<{ t: number; label: string }>;
}

function usable(v: number, log: boolean): boolean {
  return Number.isFinite(v) && (!log || v > 0);
}

function tickLabelLog(e: number): string {
  if (e === 0) return '1';
  if (e === 1) return '10';
  return `1e${e}`;
}

function tickLabelLinear(v: number, step: number): string {
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(1).replace('e+', 'e');
  return v.toFixed(Math.min(digits, 6));
}

function makeAxis(values: number[], log: boolean, domain?: [number, number]): Axis {
  const vs = values.filter((v) => usable(v, log));
  let lo: number, hi: number;
  if (domain) [lo, hi] = domain;
  else if (vs.length === 0) [lo, hi] = log ? [1, 10] : [0, 1];
  else {
    lo = Math.min(...vs);
    hi = Math.max(...vs);
  }
  if (log) {
    let a = Math.floor(Math.log10(lo) + 1e-9);
    let b = Math.ceil(Math.log10(hi) - 1e-9);
    if (b <= a) b = a + 1;
    const span = b - a;
    const step = Math.max(1, Math.ceil(span / 9));
    // align to the step so that labels sit on round decades
    a = Math.floor(a / step) * step;
    b = Math.ceil(b / step) * step;
    const ticks = [];
    for (let e = a; e <= b; e += step) ticks.push({ t: e, label: tickLabelLog(e) });
    return { log, lo: a, hi: b, ticks };
  }
  if (hi === lo) {
    lo -= 0.5;
    hi += 0.5;
  }
  const raw = (hi - lo) / 6;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const a = domain ? lo : Math.floor(lo / step) * step;
  const b = domain ? hi : Math.ceil(hi / step) * step;
  const ticks = [];
  for (let v = Math.ceil(a / step - 1e-9) * step; v <= b + step * 1e-9; v += step) ticks.push({ t: v, label: tickLabelLinear(Math.abs(v) < step * 1e-9 ? 0 : v, step) });
  return { log, lo: a, hi: b, ticks };
}

type Px = (v: number) => number;

/**
 * Vertical pixel offsets that keep coinciding series apart: two series coincide when they share at
 * least two x values and at half or more of them their points lie within `tolerancePx` (1 px: one
 * line to the eye). Each group of
 * coinciding series (transitively) is spread symmetrically, `step` px between neighbours, in the
 * order the series are given; every other series keeps offset 0.
 */
export function coincidenceOffsets(series: readonly Series[], px: Px, py: Px, xLog: boolean, yLog: boolean, step: number, tolerancePx = 1): number[] {
  const at = series.map((s) => {
    const m = new Map<number, number>();
    for (const [x, y] of s.points) if (usable(x, xLog) && usable(y, yLog)) m.set(Math.round(px(x) * 10) / 10, py(y));
    return m;
  });
  const parent = series.map((_, i) => i);
  const find = (i: number): number => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (let a = 0; a < series.length; a++)
    for (let b = a + 1; b < series.length; b++) {
      let shared = 0, close = 0;
      for (const [x, y] of at[a]) {
        const yb = at[b].get(x);
        if (yb === undefined) continue;
        shared++;
        if (Math.abs(y - yb) <= tolerancePx) close++;
      }
      if (shared >= 2 && close * 2 >= shared) parent[find(b)] = find(a);
    }
  const groups = new Map<number, number[]>();
  series.forEach((_, i) => groups.set(find(i), [...(groups.get(find(i)) ?? []), i]));
  const offsets = series.map(() => 0);
  for (const members of groups.values()) members.forEach((i, k) => (offsets[i] = (k - (members.length - 1) / 2) * step));
  return offsets;
}

/** Pixel samples of what the series draw (markers, and every 3 px along lines): what a label must not cover. */
function seriesSamples(series: readonly Series[], offsets: number[], px: Px, py: Px, inside: (x: number, y: number) => boolean, xLog: boolean, yLog: boolean): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  series.forEach((s, k) => {
    const mode = s.mode ?? 'line';
    let prev: [number, number] | undefined;
    for (const [x, y] of s.points) {
      if (!usable(x, xLog) || !usable(y, yLog)) {
        prev = undefined;
        continue;
      }
      const p: [number, number] = [px(x), py(y) + offsets[k]];
      if (mode !== 'line' && inside(x, y)) out.push(p);
      if (mode !== 'points' && prev) {
        const n = Math.min(400, Math.ceil(Math.hypot(p[0] - prev[0], p[1] - prev[1]) / 3));
        for (let i = 1; i <= n; i++) out.push([prev[0] + ((p[0] - prev[0]) * i) / n, prev[1] + ((p[1] - prev[1]) * i) / n]);
      }
      prev = p;
    }
  });
  return out;
}

/**
 * Where a reference line's label goes: beside a point of the line (tried every 12 px along it, on
 * each side), inside the plot area, covering as few data samples — and as little of its own line —
 * as possible; ties go to the spot farthest from any data. Text is taken as 6.2 px a character,
 * 11 px high.
 */
export function placeLabel(
  label: string,
  path: ReadonlyArray<readonly [number, number]>,
  obstacles: ReadonlyArray<readonly [number, number]>,
  area: { left: number; top: number; right: number; bottom: number },
): { x: number; y: number; anchor: 'start' | 'end' } | undefined {
  const w = 6.2 * [...label].length, h = 11;
  const own: Array<[number, number]> = [];
  for (let i = 1; i < path.length; i++) {
    const [x0, y0] = path[i - 1], [x1, y1] = path[i];
    const n = Math.max(1, Math.min(400, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / 3)));
    for (let j = 0; j <= n; j++) own.push([x0 + ((x1 - x0) * j) / n, y0 + ((y1 - y0) * j) / n]);
  }
  const anchors = own.filter((_, i) => i % 4 === 0).filter(([x, y]) => x >= area.left && x <= area.right && y >= area.top && y <= area.bottom);
  let best: { x: number; y: number; anchor: 'start' | 'end'; score: number; clear: number } | undefined;
  for (const [ax, ay] of anchors)
    for (const [dx, anchor] of [[-4, 'end'], [4, 'start']] as const)
      for (const base of [ay - 5, ay + h + 3]) {
        const x0 = anchor === 'end' ? ax + dx - w : ax + dx;
        const box = { l: x0 - 2, r: x0 + w + 2, t: base - h - 1, b: base + 3 };
        if (box.l < area.left || box.r > area.right || box.t < area.top || box.b > area.bottom) continue;
        const hit = (p: readonly [number, number]) => p[0] >= box.l && p[0] <= box.r && p[1] >= box.t && p[1] <= box.b;
        const score = obstacles.filter(hit).length + 0.25 * own.filter(hit).length;
        let clear = Infinity;
        const cx = (box.l + box.r) / 2, cy = (box.t + box.b) / 2;
        for (const [ox, oy] of obstacles) clear = Math.min(clear, Math.max(Math.abs(ox - cx) - (box.r - box.l) / 2, Math.abs(oy - cy) - (box.b - box.t) / 2));
        if (!best || score < best.score || (score === best.score && clear > best.clear)) best = { x: ax + dx, y: base, anchor, score, clear };
      }
  return best && { x: best.x, y: best.y, anchor: best.anchor };
}

/** Renders the plot as an SVG document string. */
export function svgPlot(spec: PlotSpec): string {
  // The legend's column is as wide as its longest name needs (about 6.6 px a character at 12 px).
  const longest = Math.max(0, ...spec.series.map((s) => s.name.length));
  const right = Math.max(190, Math.ceil(48 + 6.6 * longest));
  const W = spec.width ?? 570 + right;
  const H = spec.height ?? 440;
  const left = 72, top = 40, bottom = 52;
  const pw = W - left - right, ph = H - top - bottom;
  const xLog = !!spec.xLog, yLog = !!spec.yLog;

  const xs: number[] = [], ys: number[] = [];
  for (const s of spec.series)
    for (const [x, y] of s.points)
      if (usable(x, xLog) && usable(y, yLog)) {
        xs.push(x);
        ys.push(y);
      }
  for (const r of spec.refLines ?? []) {
    if (r.y !== undefined) ys.push(r.y);
    if (r.x !== undefined) xs.push(r.x);
  }
  for (const t of spec.xTicks ?? []) xs.push(t.value);
  const ax = makeAxis(xs, xLog, spec.xDomain);
  const ay = makeAxis(ys, yLog, spec.yDomain);
  const tx = (v: number) => (xLog ? Math.log10(v) : v);
  const ty = (v: number) => (yLog ? Math.log10(v) : v);
  const px = (v: number) => left + ((tx(v) - ax.lo) / (ax.hi - ax.lo)) * pw;
  const py = (v: number) => top + ph - ((ty(v) - ay.lo) / (ay.hi - ay.lo)) * ph;
  const inside = (x: number, y: number) =>
    usable(x, xLog) && usable(y, yLog) && tx(x) >= ax.lo - 1e-9 && tx(x) <= ax.hi + 1e-9 && ty(y) >= ay.lo - 1e-9 && ty(y) <= ay.hi + 1e-9;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<title>${escapeXml(spec.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${c(left + pw / 2)}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(spec.title)}</text>`);

  // grid and ticks
  out.push('<g class="axes" stroke="#dddddd" stroke-width="1">');
  for (const t of ax.ticks) {
    const x = left + ((t.t - ax.lo) / (ax.hi - ax.lo)) * pw;
    out.push(`<line x1="${c(x)}" y1="${top}" x2="${c(x)}" y2="${top + ph}"/>`);
  }
  for (const t of ay.ticks) {
    const y = top + ph - ((t.t - ay.lo) / (ay.hi - ay.lo)) * ph;
    out.push(`<line x1="${left}" y1="${c(y)}" x2="${left + pw}" y2="${c(y)}"/>`);
  }
  out.push('</g>');
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`);
  out.push('<g class="tick-labels" fill="#333333">');
  for (const t of ax.ticks) {
    const x = left + ((t.t - ax.lo) / (ax.hi - ax.lo)) * pw;
    out.push(`<text x="${c(x)}" y="${top + ph + 16}" text-anchor="middle">${escapeXml(t.label)}</text>`);
  }
  for (const t of spec.xTicks ?? []) {
    if (!usable(t.value, xLog)) continue;
    const x = px(t.value);
    out.push(`<line x1="${c(x)}" y1="${top}" x2="${c(x)}" y2="${top + ph}" stroke="#999999" stroke-dasharray="2,3"/>`);
    out.push(`<text x="${c(x)}" y="${top + ph + 30}" text-anchor="middle" font-style="italic">${escapeXml(t.label)}</text>`);
  }
  for (const t of ay.ticks) {
    const y = top + ph - ((t.t - ay.lo) / (ay.hi - ay.lo)) * ph;
    out.push(`<text x="${left - 6}" y="${c(y + 4)}" text-anchor="end">${escapeXml(t.label)}</text>`);
  }
  out.push('</g>');
  out.push(`<text x="${c(left + pw / 2)}" y="${H - 8}" text-anchor="middle">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text x="16" y="${c(top + ph / 2)}" text-anchor="middle" transform="rotate(-90 16 ${c(top + ph / 2)})">${escapeXml(spec.yLabel)}</text>`);

  // Series that coincide on the page (most shared points within 1 px: one line to the eye) are drawn
  // 3 px apart, so that each one's line and markers show beside the others instead of under them.
  const offsets = coincidenceOffsets(spec.series, px, py, xLog, yLog, 3);
  const shifted = offsets.some((o) => o !== 0);

  // reference lines (clipped to the plot area); each label where it covers the fewest data
  out.push(`<clipPath id="plot-area"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath>`);
  const obstacles = seriesSamples(spec.series, offsets, px, py, inside, xLog, yLog);
  const area = { left, top, right: left + pw, bottom: top + ph };
  for (const r of spec.refLines ?? []) {
    let path: Array<[number, number]> = [];
    if (r.y !== undefined && usable(r.y, yLog)) path = [[left, py(r.y)], [left + pw, py(r.y)]];
    else if (r.x !== undefined && usable(r.x, xLog)) path = [[px(r.x), top], [px(r.x), top + ph]];
    else if (r.points) path = r.points.filter(([x, y]) => usable(x, xLog) && usable(y, yLog)).map(([x, y]) => [px(x), py(y)] as [number, number]);
    if (path.length < 2) continue;
    const d = path.map(([x, y], i) => `${i ? 'L' : 'M'}${c(x)} ${c(y)}`).join('');
    out.push(`<g class="reference" clip-path="url(#plot-area)"><path d="${d}" fill="none" stroke="#888888" stroke-width="1" stroke-dasharray="6,4"/></g>`);
    const at = placeLabel(r.label, path, obstacles, area);
    if (at) out.push(`<text class="reference-label" x="${c(at.x)}" y="${c(at.y)}" text-anchor="${at.anchor}" fill="#666666" font-size="11">${escapeXml(r.label)}</text>`);
  }

  // series
  spec.series.forEach((s, k) => {
    const dy = offsets[k];
    const color = s.color ?? PALETTE[k % PALETTE.length];
    const mode = s.mode ?? 'line';
    out.push(`<g class="series" data-name="${escapeXml(s.name)}" clip-path="url(#plot-area)">`);
    if (mode !== 'points') {
      // break the line where a point cannot be drawn (NaN, infinity, <= 0 on a log axis)
      let d = '';
      let pen = false;
      for (const [x, y] of s.points) {
        if (!usable(x, xLog) || !usable(y, yLog)) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${c(px(x))} ${c(py(y) + dy)}`;
        pen = true;
      }
      const dash = dashOf(s, k);
      if (d) out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    }
    if (mode !== 'line') {
      const shape = MARKERS[k % MARKERS.length];
      for (const [x, y] of s.points) if (inside(x, y)) out.push(marker(shape, px(x), py(y) + dy, 3.2, color));
    }
    out.push('</g>');
  });

  // legend
  out.push('<g class="legend">');
  spec.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    const y = top + 10 + k * 17;
    const x = left + pw + 14;
    const mode = s.mode ?? 'line';
    const dash = dashOf(s, k);
    if (mode !== 'points')
      out.push(`<line x1="${x}" y1="${y}" x2="${x + 22}" y2="${y}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    if (mode !== 'line') out.push(marker(MARKERS[k % MARKERS.length], x + 11, y, 3.5, color));
    out.push(`<text x="${x + 28}" y="${y + 4}">${escapeXml(s.name)}</text>`);
  });
  if (shifted) {
    const y = top + 10 + spec.series.length * 17 + 6;
    out.push(`<text class="offset-note" x="${left + pw + 14}" y="${y}" fill="#666666" font-size="10">coinciding series are drawn</text>`);
    out.push(`<text class="offset-note" x="${left + pw + 14}" y="${y + 12}" fill="#666666" font-size="10">3 px apart to stay visible</text>`);
  }
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}
