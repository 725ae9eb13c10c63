#!/usr/bin/env node
// Builds the addon from source (node-gyp, native/binding.gyp) into build/Release, which the loader
// prefers over the prebuilt binaries. The package has no install script, so npm never asks to approve one:
// where a prebuilt binary matches (linux-x64, linux-arm64 with glibc >= 2.28) nothing needs building,
// and elsewhere the first call that needs the addon fails with the message of sourceBuildHelp()
// below (require itself succeeds), which names this command:
//   npx covpool-build            in a project that depends on covpool
//   npm run build:native         in a clone of the repository
// Before building, it checks the prerequisites and says exactly what is missing and how to get it.
// In the repository it builds through the top-level binding.gyp; the package has none (npm would
// then compile on every reinstall and `npm ci`), so there it builds native/binding.gyp in native/
// and moves the addon to build/Release, where the loader looks.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const BUILD_COMMAND = 'npx covpool-build';
const DEBIAN_PACKAGES = 'g++ make python3 libopenblas-dev liblapacke-dev';

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Where Debian/Ubuntu (multiarch), Fedora and source installs put the CBLAS and LAPACKE headers. */
function headerDirs() {
  const dirs = ['/usr/include', '/usr/local/include', '/usr/include/openblas', '/usr/local/opt/openblas/include', '/opt/homebrew/opt/openblas/include'];
  try {
    for (const d of fs.readdirSync('/usr/include')) {
      if (/-linux-gnu/.test(d)) dirs.push(path.join('/usr/include', d), path.join('/usr/include', d, 'openblas-pthread'));
    }
  } catch {
    /* no /usr/include: every header is missing */
  }
  return dirs;
}

/** What the source build needs and this machine lacks, one line each, with how to get it. */
function missingPrerequisites() {
  const missing = [];
  const linux = process.platform === 'linux';
  if (!which('g++') && !which('c++')) missing.push('a C++17 compiler' + (linux ? ' (Debian/Ubuntu: g++)' : ''));
  if (!which('make')) missing.push('make');
  if (!which('python3')) missing.push('python3 (node-gyp runs on it)');
  const dirs = headerDirs();
  const has = (name) => dirs.some((d) => fs.existsSync(path.join(d, name)));
  if (!has('cblas.h')) missing.push('OpenBLAS with its CBLAS header' + (linux ? ' (Debian/Ubuntu: libopenblas-dev)' : ''));
  if (!has('lapacke.h')) missing.push('LAPACKE' + (linux ? ' (Debian/Ubuntu: liblapacke-dev)' : ''));
  return missing;
}

/** The text `require('covpool')` shows when no binary loads: the command and what it needs. */
function sourceBuildHelp() {
  const missing = missingPrerequisites();
  return (
    `Build it from source with \`${BUILD_COMMAND}\` (in your project folder; in a clone of the repository: ` +
    '`npm run build:native`). That needs a C++17 compiler, make, python3 and the OpenBLAS (CBLAS) and LAPACKE ' +
    `development files: on Debian/Ubuntu \`sudo apt-get install ${DEBIAN_PACKAGES}\`.` +
    (missing.length ? ` Missing here: ${missing.join('; ')}.` : '')
  );
}

/** node-gyp: the one npm hands its scripts, a local one, or the one bundled with this Node's npm. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    (() => {
      try {
        return require.resolve('node-gyp/bin/node-gyp.js', { paths: [root] });
      } catch {
        return undefined;
      }
    })(),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && fs.existsSync(c));
}

function main() {
  const missing = missingPrerequisites();
  if (missing.length) {
    console.error(`covpool: cannot build from source on ${process.platform}-${process.arch}; missing:`);
    for (const m of missing) console.error('  - ' + m);
    if (process.platform === 'linux') console.error(`Debian/Ubuntu: sudo apt-get install ${DEBIAN_PACKAGES}`);
    process.exit(1);
  }
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) {
    console.error('covpool: node-gyp not found; install it with `npm install -g node-gyp` and run this again');
    process.exit(1);
  }
  // The repository's top-level binding.gyp builds into build/; an installed package has only
  // native/binding.gyp, which node-gyp builds into native/build/.
  const topLevel = fs.existsSync(path.join(root, 'binding.gyp'));
  const gypDir = topLevel ? root : path.join(root, 'native');
  console.log(`covpool: building from source in ${root}`);
  const r = spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: gypDir, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`covpool: the source build failed (see above). It needs a C++17 compiler, make, python3 and the OpenBLAS/LAPACKE development files (Debian/Ubuntu: ${DEBIAN_PACKAGES}).`);
    process.exit(r.status || 1);
  }
  const built = path.join(root, 'build', 'Release', 'covpool.node');
  if (!topLevel) {
    // The addon where node-gyp-build looks first; node-gyp's intermediate files are not needed.
    fs.mkdirSync(path.dirname(built), { recursive: true });
    fs.rmSync(built, { force: true });
    fs.renameSync(path.join(gypDir, 'build', 'Release', 'covpool.node'), built);
    fs.rmSync(path.join(gypDir, 'build'), { recursive: true, force: true });
  }
  require(built); // fails loudly here rather than at the user's first require
  console.log(`covpool: built ${built}; require('covpool') now uses it`);
}

module.exports = { BUILD_COMMAND, missingPrerequisites, sourceBuildHelp };

if (require.main === module) main();
