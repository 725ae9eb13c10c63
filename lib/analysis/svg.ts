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

/** Renders the plot as an SVG document string. */
export function svgPlot(spec: PlotSpec): string {
  const W = spec.width ?? 760;
  const H = spec.height ?? 440;
  const left = 72, right = 190, top = 40, bottom = 52;
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

  // reference lines (clipped to the plot area)
  out.push(`<clipPath id="plot-area"><rect x="${left}" y="${top}" width="${pw}" height="${ph}"/></clipPath>`);
  for (const r of spec.refLines ?? []) {
    let d = '';
    let lx = left + pw - 4, ly = top + 12;
    if (r.y !== undefined && usable(r.y, yLog)) {
      ly = py(r.y);
      d = `M${left} ${c(ly)}H${left + pw}`;
      ly -= 4;
    } else if (r.x !== undefined && usable(r.x, xLog)) {
      lx = px(r.x);
      d = `M${c(lx)} ${top}V${top + ph}`;
      lx -= 4;
    } else if (r.points) {
      const pts = r.points.filter(([x, y]) => usable(x, xLog) && usable(y, yLog));
      d = pts.map(([x, y], i) => `${i ? 'L' : 'M'}${c(px(x))} ${c(py(y))}`).join('');
      const vis = pts.filter(([x, y]) => inside(x, y));
      if (vis.length) [lx, ly] = [px(vis[vis.length - 1][0]) - 4, py(vis[vis.length - 1][1]) - 6];
    }
    if (!d) continue;
    out.push(`<g class="reference" clip-path="url(#plot-area)"><path d="${d}" fill="none" stroke="#888888" stroke-width="1" stroke-dasharray="6,4"/></g>`);
    out.push(`<text x="${c(Math.max(left + 4, Math.min(lx, left + pw - 4)))}" y="${c(Math.max(top + 10, Math.min(ly, top + ph - 4)))}" text-anchor="end" fill="#666666" font-size="11">${escapeXml(r.label)}</text>`);
  }

  // series
  spec.series.forEach((s, k) => {
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
        d += `${pen ? 'L' : 'M'}${c(px(x))} ${c(py(y))}`;
        pen = true;
      }
      const dash = dashOf(s, k);
      if (d) out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    }
    if (mode !== 'line') {
      const shape = MARKERS[k % MARKERS.length];
      for (const [x, y] of s.points) if (inside(x, y)) out.push(marker(shape, px(x), py(y), 3.2, color));
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
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n') + '\n';
}
