#!/usr/bin/env node
// Build step of the emulated CUDA device: copies native/cuda/kernels.cu to a C++ file in which every
// launch `kernel<<<grid, block, shared, stream>>>(args)` reads
// `::cuemu::kernel::launch("kernel", kernel, grid, block, shared, stream, args)`. Nothing else
// changes (kernel bodies are compiled as written) and line numbers are kept, with a #line
// directive naming the original file, so compiler and sanitizer messages point into kernels.cu.
//   node rewrite_launches.js native/cuda/kernels.cu out/kernels_emulated.cpp
'use strict';
const fs = require('fs');
const path = require('path');

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error('usage: rewrite_launches.js <kernels.cu> <output.cpp>');
  process.exit(2);
}
const text = fs.readFileSync(src, 'utf8');

// The macro definition (name and parameters) that the text at `pos` belongs to, if any.
function enclosingMacro(pos) {
  const lineStart = text.lastIndexOf('\n', pos - 1) + 1;
  let start = lineStart;
  for (;;) {
    const line = text.slice(start, text.indexOf('\n', start));
    const m = /^\s*#\s*define\s+\w+\(([^)]*)\)/.exec(line);
    if (m) return m[1].split(',').map((p) => p.trim());
    if (start === 0) return null;
    const prevStart = text.lastIndexOf('\n', start - 2) + 1;
    const prev = text.slice(prevStart, start - 1);
    if (!/\\\s*$/.test(prev)) return null; // the previous line does not continue into this one
    start = prevStart;
  }
}

// The kernel expression that ends right before `end`: an identifier, with template arguments.
function kernelBefore(end) {
  let i = end;
  while (i > 0 && /\s/.test(text[i - 1])) i--;
  const exprEnd = i;
  if (text[i - 1] === '>') {
    let depth = 0;
    do {
      i--;
      if (text[i] === '>') depth++;
      else if (text[i] === '<') depth--;
    } while (depth > 0 && i > 0);
  }
  while (i > 0 && /[\w:]/.test(text[i - 1])) i--;
  return { start: i, expr: text.slice(i, exprEnd) };
}

let result = '';
let last = 0;
let count = 0;
for (let at = text.indexOf('<<<'); at >= 0; at = text.indexOf('<<<', at + 3)) {
  const close = text.indexOf('>>>', at);
  const paren = text.slice(close + 3).search(/\S/) + close + 3;
  if (close < 0 || text[paren] !== '(') throw new Error(`${src}: a <<< at offset ${at} is not a launch`);
  const config = text.slice(at + 3, close);
  if (config.includes('\n')) throw new Error(`${src}: a launch configuration spans lines (keep it on one line)`);
  const kernel = kernelBefore(at);
  const params = enclosingMacro(at);
  const name = params && params.includes(kernel.expr) ? `#${kernel.expr}` : JSON.stringify(kernel.expr);
  result += text.slice(last, kernel.start) + `::cuemu::kernel::launch(${name}, ${kernel.expr}, ${config}, `;
  last = paren + 1;
  count++;
}
result += text.slice(last);
if (count === 0) throw new Error(`${src}: no kernel launch found`);
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, `#line 1 "${path.resolve(src)}"\n${result}`);
console.log(`rewrite_launches: ${count} launch sites in ${path.basename(src)} -> ${out}`);
