#!/usr/bin/env node
// Where the OpenBLAS (CBLAS) and LAPACKE files are for the architecture being built, for binding.gyp:
// Debian and Ubuntu keep them in multiarch folders (/usr/include/<triplet>/openblas-pthread,
// /usr/lib/<triplet>/openblas-pthread), other systems in /usr/include/openblas or /usr/lib.
// The triplet is the compiler's own ($CC -print-multiarch), so a cross build (CC=aarch64-linux-gnu-gcc)
// finds the arm64 libraries.
//   node scripts/blas-paths.js include    the include folders (space-separated)
//   node scripts/blas-paths.js libdir     the folder holding libopenblas (static or shared)
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');

function multiarch() {
  try {
    const t = execFileSync(process.env.CC || 'cc', ['-print-multiarch'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (t) return t;
  } catch {
    /* no compiler answered: guess from the architecture */
  }
  return { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.env.npm_config_arch || process.arch] || '';
}

const triplet = multiarch();
const what = process.argv[2];
if (what === 'include') {
  console.log([`/usr/include/${triplet}/openblas-pthread`, '/usr/include/openblas'].join(' '));
} else if (what === 'libdir') {
  const candidates = [`/usr/lib/${triplet}/openblas-pthread`, `/usr/lib/${triplet}`, '/usr/lib64', '/usr/lib'];
  console.log(candidates.find((d) => triplet !== '' && fs.existsSync(d)) || '/usr/lib');
} else {
  console.error('usage: node scripts/blas-paths.js include|libdir');
  process.exit(1);
}
