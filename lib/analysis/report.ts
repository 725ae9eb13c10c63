// What every analysis hands back: the Markdown text, the SVG files it links, and a compact JSON of
// its numbers (for post-processing and for the test), all relative to one output folder.
export interface Report {
  /** Base name: <name>.md and <name>.json are written. */
  name: string;
  title: string;
  markdown: string;
  /** SVG file name -> content. */
  svgs: Record<string, string>;
  /** Summary numbers (small: no raw spectra). */
  data: unknown;
}

/**
 * The "Regenerate:" line of a report, for covpool-analyze arguments `args`: the command that works
 * where the reader is, an installed package (its bin, through npx) or the covpool repository.
 */
export function regenerateHint(args: string): string {
  return `Regenerate: \`npx covpool-analyze ${args}\` in a project that has covpool installed, or \`npm run analyze -- ${args}\` in the covpool repository.`;
}

/**
 * JSON that keeps Infinity/NaN readable (JSON has no literal for them, so they become the strings
 * "+inf", "-inf", "NaN") and stays diff-friendly but small: an object or array whose members are all
 * plain values is written on one line, anything nested is indented.
 */
export function toJson(v: unknown): string {
  return serialize(v, '') + '\n';
}

function plain(x: unknown): unknown {
  if (typeof x === 'number' && !Number.isFinite(x)) return Number.isNaN(x) ? 'NaN' : x > 0 ? '+inf' : '-inf';
  if (x instanceof Float64Array || x instanceof Float32Array) return Array.from(x);
  return x;
}

function isLeaf(x: unknown): boolean {
  return x === null || typeof x !== 'object';
}

function serialize(raw: unknown, indent: string): string {
  const x = plain(raw);
  if (isLeaf(x)) return JSON.stringify(x) ?? 'null';
  const inner = indent + ' ';
  if (Array.isArray(x)) {
    const items = x.map(plain);
    if (items.every(isLeaf)) return '[' + items.map((i) => JSON.stringify(i) ?? 'null').join(', ') + ']';
    return '[\n' + items.map((i) => inner + serialize(i, inner)).join(',\n') + '\n' + indent + ']';
  }
  const entries = Object.entries(x as Record<string, unknown>).filter(([, v]) => v !== undefined).map(([k, v]) => [k, plain(v)] as const);
  if (entries.every(([, v]) => isLeaf(v))) return '{' + entries.map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(', ') + '}';
  return '{\n' + entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${serialize(v, inner)}`).join(',\n') + '\n' + indent + '}';
}
