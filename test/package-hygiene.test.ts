// What a user sees of the package on npm and after installing it: the licence the package.json
// names, no links to a repository that does not exist, a changelog, README links and images that
// resolve, and the files the tarball carries: what users run, no development scripts, and no
// binding.gyp at its root (npm would compile on every reinstall and `npm ci`).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
/** The project has no public repository yet; this one was a placeholder that does not exist. */
const PLACEHOLDER_REPO = /github(usercontent)?\.com\/covpool\/covpool\b/;

let packed: string[] | undefined;
/** The files `npm pack` puts in the tarball (without building anything: prebuilds only if present). */
function packedFiles(): string[] {
  if (packed) return packed;
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status).toBe(0);
  packed = (JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0].files as { path: string }[]).map((f) => f.path);
  return packed;
}

describe('package hygiene', () => {
  test('LICENSE is the MIT licence package.json names', () => {
    expect(pkg.license).toBe('MIT');
    const text = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8');
    expect(text).toMatch(/^MIT License/);
    expect(text).toMatch(/Permission is hereby granted, free of charge/);
  });

  test('no repository, homepage or bugs field until the project has a public repository', () => {
    // When it has one, name it here and in package.json.
    for (const field of ['repository', 'homepage', 'bugs']) expect({ field, value: pkg[field] }).toEqual({ field, value: undefined });
  });

  test('no file the tarball carries links to the placeholder repository github.com/covpool/covpool', () => {
    const offending = packedFiles().filter((f) => {
      const data = fs.readFileSync(path.join(ROOT, f));
      return !data.includes(0) && PLACEHOLDER_REPO.test(data.toString('utf8'));
    });
    expect(offending).toEqual([]);
  });

  test('README links and images are anchors, https addresses or relative paths to files that exist', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    expect(targets.length).toBeGreaterThan(3);
    expect(targets.filter((t) => /^[a-z]+:/i.test(t) && !/^https:\/\//.test(t))).toEqual([]);
    for (const t of targets.filter((x) => !/^(https:\/\/|#)/.test(x))) {
      const rel = decodeURIComponent(t.replace(/#.*$/, ''));
      expect({ t, exists: fs.existsSync(path.join(ROOT, rel)) }).toEqual({ t, exists: true });
    }
  });

  test('the tarball carries LICENSE, README, CHANGELOG and the JavaScript examples', () => {
    const files = packedFiles();
    for (const f of ['LICENSE', 'README.md', 'CHANGELOG.md', 'examples/js/layer.js', 'examples/js/tfjs-model.js']) expect({ f, shipped: files.includes(f) }).toEqual({ f, shipped: true });
    expect(files.filter((f) => f.startsWith('reports/') || f.startsWith('test/'))).toEqual([]);
  });

  test('the tarball carries what users run: the library, its bin entries, the sources covpool-build and cmake-js build', () => {
    const files = packedFiles();
    const needed = [
      'dist/lib/index.js',
      'dist/lib/index.d.ts',
      'dist/lib/tfjs/index.js',
      'esm/index.mjs',
      'esm/tfjs.mjs',
      ...Object.values(pkg.bin as Record<string, string>),
      'scripts/blas-paths.js', // native/binding.gyp runs it
      'native/binding.gyp',
      'CMakeLists.txt',
    ];
    for (const f of needed) expect({ f, shipped: files.includes(f) }).toEqual({ f, shipped: true });
    // Every native source the builds name is there (native/ is shipped whole).
    const gyp = fs.readFileSync(path.join(ROOT, 'native', 'binding.gyp'), 'utf8');
    for (const m of gyp.matchAll(/"([\w/]+\.(?:cpp|c))"/g)) expect(files).toContain('native/' + m[1]);
  });

  test('the tarball carries no binding.gyp at its root and none of the development files', () => {
    const files = packedFiles();
    // A root *.gyp makes npm run `node-gyp rebuild` on a reinstall and on `npm ci` ("gypfile": false
    // notwithstanding): the package would compile instead of loading its prebuilt binary.
    expect(files.filter((f) => !f.includes('/') && f.endsWith('.gyp'))).toEqual([]);
    const dev = files.filter((f) =>
      // native/cuda/test: the GPU test driver and the emulated CUDA device, a test build never shipped
      /^(dist\/(bench|examples)\/|bench\/|docs\/|test\/|reports\/|\.ci\/|scripts\/chroot\/|build\/|build-cmake\/|gpu-bundle\/|native\/cuda\/test\/)/.test(f) ||
      (f.startsWith('scripts/') && !['scripts/build-from-source.js', 'scripts/blas-paths.js'].includes(f)),
    );
    expect(dev).toEqual([]);
  });
});
