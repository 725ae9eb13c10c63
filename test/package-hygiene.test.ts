// What a user sees of the package on npm and after installing it: the licence the package.json
// names, where the project lives, a changelog, README links and images that resolve from the npm
// page (absolute: npm does not serve the repository's files), and the files the tarball carries.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

describe('package hygiene', () => {
  test('LICENSE is the MIT licence package.json names', () => {
    expect(pkg.license).toBe('MIT');
    const text = fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8');
    expect(text).toMatch(/^MIT License/);
    expect(text).toMatch(/Permission is hereby granted, free of charge/);
  });

  test('repository, homepage and bugs point at the project', () => {
    expect(pkg.repository).toEqual({ type: 'git', url: expect.stringMatching(/^git\+https:\/\/github\.com\/[\w-]+\/covpool\.git$/) });
    expect(pkg.homepage).toMatch(/^https:\/\/github\.com\/[\w-]+\/covpool#readme$/);
    expect(pkg.bugs.url).toMatch(/^https:\/\/github\.com\/[\w-]+\/covpool\/issues$/);
  });

  test('README links and images are absolute (or anchors), so they work on the npm page', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    expect(targets.length).toBeGreaterThan(3);
    expect(targets.filter((t) => !/^(https:\/\/|#)/.test(t))).toEqual([]);
    // Links into this repository name files that exist here.
    const base = pkg.homepage.replace(/#readme$/, '');
    for (const t of targets.filter((x) => x.startsWith(base + '/blob/main/') || x.startsWith(base + '/tree/main/'))) {
      const rel = t.replace(/^.*\/(blob|tree)\/main\//, '').replace(/#.*$/, '');
      expect({ t, exists: fs.existsSync(path.join(ROOT, rel)) }).toEqual({ t, exists: true });
    }
    const raw = base.replace('https://github.com/', 'https://raw.githubusercontent.com/') + '/main/';
    for (const t of targets.filter((x) => x.startsWith(raw))) expect({ t, exists: fs.existsSync(path.join(ROOT, t.slice(raw.length))) }).toEqual({ t, exists: true });
  });

  test('the tarball carries LICENSE, README, CHANGELOG and the JavaScript examples', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(0);
    const files = (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path);
    for (const f of ['LICENSE', 'README.md', 'CHANGELOG.md', 'examples/js/layer.js', 'examples/js/tfjs-model.js']) expect({ f, shipped: files.includes(f) }).toEqual({ f, shipped: true });
    expect(files.filter((f) => f.startsWith('reports/') || f.startsWith('test/'))).toEqual([]);
  });
});
