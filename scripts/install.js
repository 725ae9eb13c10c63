#!/usr/bin/env node
// Install step: use the prebuilt binary when one matches this platform and loads; otherwise build
// from source with node-gyp, and when that cannot work, say exactly what is missing and how to
// get it. (With npm 11 this script only runs where the user allows install scripts; the prebuilt
// binary is found at require time either way.)
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');

function prebuildLoads() {
  let file;
  try {
    file = require('node-gyp-build').path(root);
  } catch {
    return false; // nothing for this platform
  }
  try {
    require(file);
    console.log(`covpool: using ${path.relative(root, file)}`);
    return true;
  } catch (e) {
    console.warn(`covpool: ${path.relative(root, file)} does not load here (${e.message.split('\n')[0]}); building from source`);
    return false;
  }
}

function which(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function missingPrerequisites() {
  const missing = [];
  for (const tool of ['g++', 'make', 'python3']) if (!which(tool)) missing.push(`${tool} (Debian/Ubuntu: apt-get install build-essential python3)`);
  const headerDirs = ['/usr/include', '/usr/local/include', '/usr/include/x86_64-linux-gnu/openblas-pthread', '/usr/include/openblas'];
  const has = (name) => headerDirs.some((d) => fs.existsSync(path.join(d, name)));
  if (!has('cblas.h')) missing.push('OpenBLAS with CBLAS headers (Debian/Ubuntu: apt-get install libopenblas-dev)');
  if (!has('lapacke.h')) missing.push('LAPACKE headers (Debian/Ubuntu: apt-get install liblapacke-dev)');
  return missing;
}

if (process.env.COVPOOL_BUILD_FROM_SOURCE !== '1' && prebuildLoads()) process.exit(0);

const missing = missingPrerequisites();
if (missing.length) {
  console.error('covpool: no prebuilt binary for ' + `${process.platform}-${process.arch}` + ' and cannot build from source. Missing:');
  for (const m of missing) console.error('  - ' + m);
  process.exit(1);
}

// npm hands lifecycle scripts the path of its bundled node-gyp; fall back to a local one.
let nodeGyp = process.env.npm_config_node_gyp;
if (!nodeGyp) {
  try {
    nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    console.error('covpool: node-gyp not found; run `npm install -g node-gyp` or install through npm');
    process.exit(1);
  }
}
const r = spawnSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('covpool: the source build failed (see above). It needs g++ with C++17, make, python3, libopenblas-dev and liblapacke-dev.');
  process.exit(r.status || 1);
}
