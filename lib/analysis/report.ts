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

/** JSON that keeps Infinity/NaN readable (JSON has no literal for them). */
export function toJson(v: unknown): string {
  return (
    JSON.stringify(
      v,
      (_k, x) => {
        if (typeof x === 'number' && !Number.isFinite(x)) return Number.isNaN(x) ? 'NaN' : x > 0 ? '+inf' : '-inf';
        if (x instanceof Float64Array || x instanceof Float32Array) return Array.from(x);
        return x;
      },
      1,
    ) + '\n'
  );
}
