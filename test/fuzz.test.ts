// The fuzzer's short seeded pass (test/fuzz/fuzz.js: random and adversarial calls at every exported
// function and the raw addon, sync and async, each case in its own child process), and a check that
// it does catch crashes, hangs, silent non-finite outputs and foreign exceptions. Runs on the
// compiled package: `npm run build` (CI's `npm ci` does it) before `npm test`.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.join(__dirname, '..');
const fuzzer = path.join(__dirname, 'fuzz', 'fuzz.js');

function fuzz(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [fuzzer, ...args], { cwd: root, encoding: 'utf8', timeout: 600000, env: { ...process.env, ...env } });
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  return { status: r.status, stderr: r.stderr, summary: JSON.parse(lines[0] ?? '{}'), failures: lines.slice(1).map((l) => JSON.parse(l)) };
}

beforeAll(() => {
  if (!fs.existsSync(path.join(root, 'dist', 'lib', 'index.js'))) throw new Error('the fuzzer runs on dist/: run `npm run build` first');
});

test('a seeded fuzzer pass finds no crash, hang, silent non-finite output or foreign exception', () => {
  const cases = Number(process.env.COVPOOL_FUZZ_CASES ?? 80);
  const r = fuzz(['--seed', '20261201', '--cases', String(cases), '--jobs', '2']);
  if (r.failures.length) console.log(r.failures.map((f) => JSON.stringify(f)).join('\n'));
  expect(r.failures).toEqual([]);
  expect(r.status).toBe(0);
  const outcomes = r.summary.outcomes as Record<string, number>;
  expect(Object.values(outcomes).reduce((a, b) => a + b, 0)).toBe(cases);
  // Both kinds of outcome occur: valid calls whose outputs were checked, and rejected ones.
  expect(Object.keys(outcomes).some((k) => k.endsWith('/returned'))).toBe(true);
  expect(Object.keys(outcomes).some((k) => k.endsWith('/error'))).toBe(true);
});

test.each([
  ['crash', /crashed \(exit code null, signal SIG(SEGV|ABRT)\)/], // SIGABRT: under ASan, which reports the fault and aborts
  ['hang', /hang: no result within 3000 ms/],
  ['nonfinite', /injected non-finite output/],
  ['foreign-error', /not a covpool error: TypeError: Cannot read properties of null/],
])('the fuzzer reports an injected %s as a failure, with its replay command', (inject, why) => {
  const r = fuzz(['--seed', '5', '--cases', '2', '--jobs', '2', '--timeout', '3000'], { COVPOOL_FUZZ_INJECT: inject });
  expect(r.status).toBe(1);
  expect(r.failures).toHaveLength(2);
  for (const f of r.failures) {
    expect(f.why).toMatch(why);
    expect(f.replay).toMatch(/^node test\/fuzz\/fuzz.js --seed 5 --case [01]$/);
  }
});
