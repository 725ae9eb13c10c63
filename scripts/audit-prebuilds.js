#!/usr/bin/env node
// What a prebuilt binary needs from the system it loads on, read from its ELF dynamic section and
// symbol table with readelf (which reads every architecture): the shared libraries it names
// (DT_NEEDED), the highest GLIBC symbol version it needs, every GLIBCXX/CXXABI/GCC version (a
// statically linked C++ runtime leaves none), and undefined symbols no library will provide (N-API
// functions come from Node itself; weak ones may stay unresolved).
//
// Two modes, the same rules but for the glibc floor:
//   default                   the binaries were built in Debian 11 (scripts/build-prebuilt.sh, as root):
//                             none may need a GLIBC symbol version above GLIBC_FLOOR (2.28)
//   --host or                 they were built on this machine (no root needed): they may need up to
//   COVPOOL_PREBUILD_HOST=1   this machine's glibc, and the floor is the highest version they need
//
// Usage: node scripts/audit-prebuilds.js [--host] [--summary] [--record] [file.node | folder]...
//   (default folder: prebuilds/). Prints one report per binary (--summary: one line each) and
//   exits 1 when one breaks the rules below. --record writes prebuilds/build.json: the glibc floor
//   of the binaries, how they were built, and what each needs; the loader's error names that floor
//   when a binary does not load on an older glibc (npm pack runs this last: scripts/prepack.sh).
// test/package.test.ts applies auditBinary to every binary in the packed tarball.
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

/** This machine's glibc version ('2.36'), or null where the C library is not glibc. */
function hostGlibc() {
  return process.report.getReport().header.glibcVersionRuntime || null;
}

/**
 * Audits one binary. Returns what it needs and the list of rule violations (empty when it is fine).
 * `options.host`: built on this machine, so the highest GLIBC version it may need is this
 * machine's (default: GLIBC_FLOOR, the Debian 11 build's promise).
 */
function auditBinary(file, options = {}) {
  const host = !!options.host;
  const limit = host ? hostGlibc() || GLIBC_FLOOR : GLIBC_FLOOR;
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
  const tooNew = undefinedSymbols.filter((s) => s.version && s.version.startsWith('GLIBC_') && compareVersions(s.version.slice(6), limit) > 0);
  for (const s of tooNew)
    problems.push(
      host
        ? `needs ${s.name}@${s.version}, newer than this machine's glibc ${limit}`
        : `needs ${s.name}@${s.version}, newer than GLIBC_${GLIBC_FLOOR} (build it in Debian 11, as root: scripts/build-prebuilt.sh; or build for this machine's glibc with COVPOOL_PREBUILD_HOST=1)`,
    );
  for (const family of ['GLIBCXX', 'CXXABI', 'GCC']) {
    if (sorted[family]) problems.push(`needs the shared C++ runtime/libgcc: ${family}_${sorted[family].join(', ')}`);
  }
  // glibc versions every symbol it exports, so with only its libraries needed an unversioned
  // undefined symbol is one nothing will provide (e.g. a Fortran runtime routine of the static
  // OpenBLAS): dlopen would fail at load time.
  const onlyLibc = needed.every((lib) => ALLOWED_NEEDED.test(lib));
  const unresolved = undefinedSymbols.filter((s) => !s.version && !s.weak && !FROM_NODE.test(s.name)).map((s) => s.name);
  if (onlyLibc && unresolved.length) problems.push(`undefined symbols no library provides: ${unresolved.join(', ')}`);
  // The oldest glibc it loads on: the Debian 11 build promises GLIBC_FLOOR; a host build needs
  // what it needs (its highest GLIBC symbol version).
  const glibcFloor = host ? glibcMax || '2.2.5' : GLIBC_FLOOR;
  return { file, machine, needed, versions: sorted, glibcMax, glibcFloor, host, problems };
}

/**
 * What the binaries need together: the glibc floor (the highest of theirs), how they were built,
 * and each one's needs (paths relative to `dir`). prebuilds/build.json holds this.
 */
function buildRecord(results, dir, host) {
  const glibc = results.map((r) => r.glibcFloor).sort(compareVersions).pop() || GLIBC_FLOOR;
  const builtOn = host
    ? `this machine (COVPOOL_PREBUILD_HOST=1): ${osName()}, glibc ${hostGlibc()}`
    : 'Debian 11 (glibc 2.31; scripts/build-prebuilt.sh), audited for glibc 2.28';
  const binaries = {};
  for (const r of results) binaries[path.relative(dir, r.file).split(path.sep).join('/')] = { machine: r.machine, glibc: r.glibcMax };
  return { glibc, host, builtOn, binaries };
}

function osName() {
  try {
    return /^PRETTY_NAME="?([^"\n]*)/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))[1];
  } catch {
    return `${process.platform}-${process.arch}`;
  }
}

function binariesUnder(p) {
  if (!fs.existsSync(p)) return [];
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs.readdirSync(p).flatMap((e) => binariesUnder(path.join(p, e))).filter((f) => f.endsWith('.node'));
}

function report(r) {
  const lines = [`${r.file} (${r.machine})`, `  shared libraries: ${r.needed.join(', ') || 'none'}`];
  for (const [family, v] of Object.entries(r.versions)) lines.push(`  ${family}: ${v.join(' ')}`);
  lines.push(r.problems.length ? r.problems.map((p) => '  PROBLEM: ' + p).join('\n') : `  ok: loads on glibc >= ${r.glibcFloor} with no C++ runtime installed`);
  return lines.join('\n');
}

module.exports = { auditBinary, binariesUnder, buildRecord, hostGlibc, GLIBC_FLOOR };

if (require.main === module) {
  const argv = process.argv.slice(2);
  const flags = new Set(argv.filter((a) => a.startsWith('--')));
  for (const f of flags) if (!['--host', '--summary', '--record'].includes(f)) {
    console.error(`audit-prebuilds: unknown option ${f} (--host, --summary, --record)`);
    process.exit(2);
  }
  const host = flags.has('--host') || process.env.COVPOOL_PREBUILD_HOST === '1';
  const prebuilds = path.join(__dirname, '..', 'prebuilds');
  const args = argv.filter((a) => !a.startsWith('--'));
  const files = (args.length ? args : [prebuilds]).flatMap(binariesUnder);
  if (!files.length) {
    console.error('audit-prebuilds: no .node files found (build them with `npm run build:prebuilt`)');
    process.exit(1);
  }
  const results = files.map((f) => auditBinary(f, { host }));
  for (const r of results) {
    if (!flags.has('--summary')) console.log(report(r));
    else console.log(`${path.relative(process.cwd(), r.file)} (${r.machine}): GLIBC up to ${r.glibcMax}${r.problems.length ? `; ${r.problems.length} PROBLEM(S), first: ${r.problems[0]}` : ''}`);
  }
  const bad = results.filter((r) => r.problems.length).length;
  if (bad) {
    console.error(`audit-prebuilds: ${bad} of ${results.length} binaries break the rules (PROBLEM lines above)`);
    process.exit(1);
  }
  const record = buildRecord(results, prebuilds, host);
  if (host) {
    console.log(
      `audit-prebuilds: built on this machine (COVPOOL_PREBUILD_HOST=1), these binaries load on glibc >= ${record.glibc} only ` +
        `(this machine: glibc ${hostGlibc()}), not on older systems. The published tarball's floor, glibc ${GLIBC_FLOOR}, ` +
        'needs the Debian 11 build (npm pack as root, without COVPOOL_PREBUILD_HOST).',
    );
  } else {
    console.log(`audit-prebuilds: the binaries load on glibc >= ${record.glibc} and need no C++ runtime`);
  }
  if (flags.has('--record')) {
    fs.writeFileSync(path.join(prebuilds, 'build.json'), JSON.stringify(record, null, 2) + '\n');
    console.log(`audit-prebuilds: recorded in ${path.relative(process.cwd(), path.join(prebuilds, 'build.json'))}`);
  }
}
