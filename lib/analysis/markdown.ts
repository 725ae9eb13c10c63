// Markdown helpers: pipe tables with aligned columns (readable as plain text too) and headings.

export type Cell = string | number;

function cellText(v: Cell): string {
  return String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/**
 * A GitHub-flavoured Markdown table. `align` per column: 'l' or 'r' (default: first column left,
 * the rest right, since the rest are numbers).
 */
export function table(headers: string[], rows: Cell[][], align?: Array<'l' | 'r'>): string {
  const al = headers.map((_, i) => align?.[i] ?? (i === 0 ? 'l' : 'r'));
  const cells = [headers.map(cellText), ...rows.map((r) => r.map(cellText))];
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    '| ' + r.map((v, i) => (al[i] === 'l' ? (v ?? '').padEnd(widths[i]) : (v ?? '').padStart(widths[i]))).join(' | ') + ' |';
  const sep = '| ' + widths.map((w, i) => (al[i] === 'l' ? ':' + '-'.repeat(w - 1) : '-'.repeat(w - 1) + ':')).join(' | ') + ' |';
  return [line(cells[0]), sep, ...cells.slice(1).map(line)].join('\n') + '\n';
}

/** A Markdown image link to an SVG next to the report. */
export function image(alt: string, file: string): string {
  return `![${alt.replace(/[[\]]/g, '')}](${file})\n`;
}
