#!/usr/bin/env node
// What a prebuilt binary needs from the system it loads on, read from its ELF dynamic section and
// symbol table with readelf (which reads every architecture): the shared libraries it names
// (DT_NEEDED), the highest GLIBC symbol version it needs, every GLIBCXX/CXXABI/GCC version (a
// statically linked C++ runtime leaves none), and undefined symbols no library will provide (N-API
// functions come from Node itself; weak ones may stay unresolved).
//
// Usage: node scripts/audit-prebuilds.js [file.node | folder]...   (default: prebuilds/)
// Prints one report per binary and exits 1 when one breaks the rules below (test/package.test.ts
// applies the same function to every binary in the packed tarball).
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

/** The oldest glibc the prebuilt binaries support (manylinux_2_28: RHEL 8, Ubuntu 20.04, Debian 10). */
const GLIBC_FLOOR = '2.28';
/** Shared libraries a binary may need: the C library's parts, present on every glibc system. */
const ALLOWED_NEEDED = /^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux[-a-z0-9_.]*\.so\.[0-9]+)$/;
/**
 * What a CUDA-enabled binary (one in a `cuda` folder of prebuilds/) may need besides: the CUDA
 * libraries it is documented to require (cuBLAS, cuSOLVER; the driver's libcuda), which the loader
 * finds at run time. The glibc and C++ runtime rules apply to it all the same.
 */
const ALLOWED_NEEDED_CUDA = /^(libcublas\.so\.[0-9]+|libcublasLt\.so\.[0-9]+|libcusolver\.so\.[0-9]+|libcuda\.so\.1)$/;
/** Undefined symbols the host process provides: N-API (and node-api) from Node. */
const FROM_NODE = /^(napi_|node_api_)/;

function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] || 0) - (y[i] || 0);
    if (d) return d;
  }
  return 0;
}

function readelf(args, file) {
  return execFileSync('readelf', ['-W', ...args, file], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 << 20 });
}

/**
 * Audits one binary. Returns what it needs and the list of rule violations (empty when it is fine).
 */
function auditBinary(file) {
  const dynamic = readelf(['-d'], file);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const machine = (readelf(['-h'], file).match(/Machine:\s+(.+)/) || [])[1]?.trim() || 'unknown';

  // Undefined dynamic symbols: "Num: Value Size Type Bind Vis UND name@VERSION (n)".
  const undefinedSymbols = [];
  for (const line of readelf(['--dyn-syms'], file).split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[6] !== 'UND' || !f[7]) continue;
    const [name, version] = f[7].split(/@+/);
    undefinedSymbols.push({ name, version: version || null, weak: f[4] === 'WEAK' });
  }

  const versions = {}; // GLIBC -> [2.2.5, 2.3, ...], GLIBCXX -> [...]
  for (const s of undefinedSymbols) {
    const m = s.version && s.version.match(/^([A-Z_]*?)_?([0-9][0-9.]*)$/);
    if (!m) continue;
    (versions[m[1]] ||= new Set()).add(m[2]);
  }
  const sorted = Object.fromEntries(Object.entries(versions).map(([k, v]) => [k, [...v].sort(compareVersions)]));
  const glibcMax = sorted.GLIBC ? sorted.GLIBC[sorted.GLIBC.length - 1] : null;

  const cuda = file.split(path.sep).includes('cuda');
  const allowed = (lib) => ALLOWED_NEEDED.test(lib) || (cuda && ALLOWED_NEEDED_CUDA.test(lib));
  const problems = [];
  for (const lib of needed) if (!allowed(lib)) problems.push(`needs the shared library ${lib} (only the C library's${cuda ? ' and cuBLAS/cuSOLVER' : ''} may be needed)`);
  const tooNew = undefinedSymbols.filter((s) => s.version && s.version.startsWith('GLIBC_') && compareVersions(s.version.slice(6), GLIBC_FLOOR) > 0);
  for (const s of tooNew) problems.push(`needs ${s.name}@${s.version}, newer than GLIBC_${GLIBC_FLOOR} (build it in Debian 11: scripts/build-prebuilt.sh)`);
  for (const family of ['GLIBCXX', 'CXXABI', 'GCC']) {
    if (sorted[family]) problems.push(`needs the shared C++ runtime/libgcc: ${family}_${sorted[family].join(', ')}`);
  }
  // glibc versions every symbol it exports, so with only its libraries needed an unversioned
  // undefined symbol is one nothing will provide (e.g. a Fortran runtime routine of the static
  // OpenBLAS): dlopen would fail at load time.
  const onlyLibc = needed.every((lib) => ALLOWED_NEEDED.test(lib));
  const unresolved = undefinedSymbols.filter((s) => !s.version && !s.weak && !FROM_NODE.test(s.name)).map((s) => s.name);
  if (onlyLibc && unresolved.length) problems.push(`undefined symbols no library provides: ${unresolved.join(', ')}`);
  return { file, machine, needed, versions: sorted, glibcMax, problems };
}

function binariesUnder(p) {
  if (!fs.existsSync(p)) return [];
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs.readdirSync(p).flatMap((e) => binariesUnder(path.join(p, e))).filter((f) => f.endsWith('.node'));
}

function report(r) {
  const lines = [`${r.file} (${r.machine})`, `  shared libraries: ${r.needed.join(', ') || 'none'}`];
  for (const [family, v] of Object.entries(r.versions)) lines.push(`  ${family}: ${v.join(' ')}`);
  lines.push(r.problems.length ? r.problems.map((p) => '  PROBLEM: ' + p).join('\n') : `  ok: loads on glibc >= ${GLIBC_FLOOR} with no C++ runtime installed`);
  return lines.join('\n');
}

module.exports = { auditBinary, binariesUnder, GLIBC_FLOOR };

if (require.main === module) {
  const args = process.argv.slice(2);
  const files = (args.length ? args : [path.join(__dirname, '..', 'prebuilds')]).flatMap(binariesUnder);
  if (!files.length) {
    console.error('audit-prebuilds: no .node files found (build them with `npm run build:prebuilt`)');
    process.exit(1);
  }
  let bad = 0;
  for (const f of files) {
    const r = auditBinary(f);
    console.log(report(r));
    if (r.problems.length) bad++;
  }
  process.exit(bad ? 1 : 0);
}
