#!/usr/bin/env node
// covpool-analyze: reproduces the two analyses of "Why Approximate Matrix Square Root Outperforms
// Accurate SVD in Global Covariance Pooling?" (data precision, gradient smoothness) and the Padé
// approximant behind SVD-Padé, on this library's methods and on your own features. Writes Markdown
// tables, SVG plots and JSON into a reports folder; progress goes to stderr.
//
//   npx covpool-analyze all                  full run (about a minute on 2 cores); in the covpool
//                                            repository: npm run analyze -- all
//   npx covpool-analyze all --quick          small sizes (seconds), written to reports/quick/
//   npx covpool-analyze precision --features feats.json --out my-reports
import * as fs from 'fs';
import * as path from 'path';

import { FEATURE_MODELS, FeatureModel, FeatureSet, PAIR_POSITIONS, PairPosition, Size, loadFeatures } from './data';
import { DEFAULT_GAPS, gradientsReport, runGradients } from './gradients';
import { padeReport, runPade } from './pade';
import { precisionReport, runPrecision, syntheticSets } from './precision';
import { ProgressSink, silentProgress, stderrProgress } from './progress';
import { Report, regenerateHint, toJson } from './report';

export const SUBCOMMANDS = ['precision', 'gradients', 'pade', 'all'] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number];

/** Where features exported from a (trained) example model are picked up without a flag. */
export const DEFAULT_FEATURES_DIR = path.join('examples', 'features');

export interface CliOptions {
  command: Subcommand;
  out: string;
  quick: boolean;
  seed: number;
  /** Precision sizes and the realistic gradient cases. */
  sizes: Size[];
  /** Batch of the precision analysis. */
  batch: number;
  /** Batch of the realistic gradient cases. */
  gradBatch: number;
  models: FeatureModel[];
  features: string[];
  featuresShape?: number[];
  defaultFeatures: boolean;
  gradSizes: number[];
  seeds: number;
  positions: PairPosition[];
  lambdaMin: number;
  padeDegree: number;
  taylorDegree: number;
  quiet: boolean;
}

export const USAGE = `usage: covpool-analyze <precision|gradients|pade|all> [options]

  precision   float32 vs float64 eigendecomposition of GCP covariances (N < C)
  gradients   each backward method vs the smallest eigen-gap, and on realistic covariances
  pade        the [L/L] Pade approximant of svd-pade vs 1/(1-r) and the Taylor sum
  all         the three, plus an index (reports/README.md)

options:
  --out DIR             output folder (default: reports; with --quick: reports/quick)
  --quick               small sizes, a few seconds (C=64 N=49; gaps on C=16; 2 seeds)
  --seed N              base seed (default 1)
  --sizes CxN,...       feature sizes (default 256x196,64x49; quick 64x49)
  --batch B             precision batch per size (default 8; quick 2)
  --grad-batch B        batch of the realistic gradient cases (default 4; quick 2)
  --models M,...        synthetic feature models: iid, decay (default both)
  --features FILE       also analyse features from a file (JSON {shape, data} or raw float32
                        with --features-shape); repeatable. Files in ${DEFAULT_FEATURES_DIR}/ are
                        picked up automatically (a trained example model writes its features there)
  --features-shape S    B,C,N or B,C,H,W for raw float32 feature files
  --no-default-features do not read ${DEFAULT_FEATURES_DIR}/
  --grad-sizes C,...    sizes of the controlled spectra (default 16,64; quick 16)
  --seeds S             random bases per gap (default 5; quick 2)
  --positions P,...     where the controlled pair sits: bottom, middle (default both)
  --lambda-min X        smallest background eigenvalue of the controlled spectra (default 1e-6)
  --pade-degree L       Pade degree (default 50, the library's)
  --taylor-degree D     Taylor degree (default 100, the library's)
  --quiet               no progress on stderr
  --help                this text
`;

function fail(msg: string): never {
  throw new UsageError(msg);
}

export class UsageError extends Error {}

function parseInt10(v: string | undefined, flag: string, min: number): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < min) fail(`${flag} needs an integer >= ${min}, got '${v ?? ''}'`);
  return n;
}

function parseSizes(v: string | undefined, flag: string): Size[] {
  if (!v) fail(`${flag} needs sizes like 256x196,64x49`);
  return v.split(',').map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) fail(`${flag}: '${s}' is not CxN (e.g. 256x196)`);
    const C = Number(m[1]), N = Number(m[2]);
    if (C < 4 || N < 2) fail(`${flag}: '${s}' needs C >= 4 and N >= 2`);
    return { C, N };
  });
}

function parseList<T extends string>(v: string | undefined, flag: string, allowed: readonly T[]): T[] {
  if (!v) fail(`${flag} needs a comma-separated list of ${allowed.join(', ')}`);
  const items = v.split(',').map((s) => s.trim());
  for (const i of items) if (!(allowed as readonly string[]).includes(i)) fail(`${flag}: '${i}' is not one of ${allowed.join(', ')}`);
  return items as T[];
}

/** Parses argv (without node and the script); throws UsageError on mistakes. */
export function parseArgs(argv: string[]): CliOptions | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help';
  const [command, ...rest] = argv;
  if (!command) fail('missing subcommand');
  if (!(SUBCOMMANDS as readonly string[]).includes(command)) fail(`unknown subcommand '${command}'`);
  const quick = rest.includes('--quick');
  const o: CliOptions = {
    command: command as Subcommand,
    // A quick run never overwrites the full reports of the default folder.
    out: quick ? path.join('reports', 'quick') : 'reports',
    quick,
    seed: 1,
    sizes: quick ? [{ C: 64, N: 49 }] : [{ C: 256, N: 196 }, { C: 64, N: 49 }],
    batch: quick ? 2 : 8,
    gradBatch: quick ? 2 : 4,
    models: [...FEATURE_MODELS],
    features: [],
    defaultFeatures: true,
    gradSizes: quick ? [16] : [16, 64],
    seeds: quick ? 2 : 5,
    positions: [...PAIR_POSITIONS],
    lambdaMin: 1e-6,
    padeDegree: 50,
    taylorDegree: 100,
    quiet: false,
  };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const val = () => rest[++i];
    switch (flag) {
      case '--quick': break;
      case '--quiet': o.quiet = true; break;
      case '--no-default-features': o.defaultFeatures = false; break;
      case '--out': o.out = val() ?? fail('--out needs a folder'); break;
      case '--seed': o.seed = parseInt10(val(), flag, 0); break;
      case '--sizes': o.sizes = parseSizes(val(), flag); break;
      case '--batch': o.batch = parseInt10(val(), flag, 1); break;
      case '--grad-batch': o.gradBatch = parseInt10(val(), flag, 1); break;
      case '--models': o.models = parseList(val(), flag, FEATURE_MODELS); break;
      case '--features': o.features.push(val() ?? fail('--features needs a file')); break;
      case '--features-shape': {
        const v = val() ?? fail('--features-shape needs B,C,N');
        o.featuresShape = v.split(',').map((s) => parseInt10(s, flag, 1));
        break;
      }
      case '--grad-sizes': {
        const v = val() ?? fail('--grad-sizes needs sizes like 16,64');
        o.gradSizes = v.split(',').map((s) => parseInt10(s, flag, 4));
        break;
      }
      case '--seeds': o.seeds = parseInt10(val(), flag, 1); break;
      case '--positions': o.positions = parseList(val(), flag, PAIR_POSITIONS); break;
      case '--lambda-min': {
        const x = Number(val());
        if (!(x > 0 && x < 1)) fail('--lambda-min needs a number in (0, 1)');
        o.lambdaMin = x;
        break;
      }
      case '--pade-degree': o.padeDegree = parseInt10(val(), flag, 1); break;
      case '--taylor-degree': o.taylorDegree = parseInt10(val(), flag, 0); break;
      default: fail(`unknown option '${flag}'`);
    }
  }
  return o;
}

/** Feature files named with --features plus those in examples/features/. */
export function featureSets(o: CliOptions, cwd = process.cwd()): FeatureSet[] {
  const files = [...o.features];
  const dir = path.join(cwd, DEFAULT_FEATURES_DIR);
  if (o.defaultFeatures && fs.existsSync(dir))
    for (const f of fs.readdirSync(dir).sort()) if (/\.(json|f32|bin)$/i.test(f)) files.push(path.join(dir, f));
  return files.map((f) => loadFeatures(f, o.featuresShape));
}

function writeReport(r: Report, out: string): string[] {
  fs.mkdirSync(out, { recursive: true });
  const written = [`${r.name}.md`, `${r.name}.json`, ...Object.keys(r.svgs)];
  fs.writeFileSync(path.join(out, `${r.name}.md`), r.markdown);
  fs.writeFileSync(path.join(out, `${r.name}.json`), toJson(r.data));
  for (const [file, svg] of Object.entries(r.svgs)) fs.writeFileSync(path.join(out, file), svg);
  return written;
}

/** Runs the analyses; returns the reports (also written to o.out). */
export function run(o: CliOptions, progress: ProgressSink = o.quiet ? silentProgress : stderrProgress(), cmdline?: string): Report[] {
  const reports: Report[] = [];
  const command = cmdline ?? `${o.command}${o.quick ? ' --quick' : ''}`;
  const files = featureSets(o);
  if (o.command === 'precision' || o.command === 'all') {
    const sets = [...syntheticSets(o.sizes, o.models, o.batch, o.seed), ...files];
    reports.push(precisionReport(runPrecision({ sets, progress, seed: o.seed }), command));
  }
  if (o.command === 'gradients' || o.command === 'all') {
    const res = runGradients({
      sizes: o.gradSizes,
      gaps: DEFAULT_GAPS,
      positions: o.positions,
      seeds: o.seeds,
      seed: o.seed,
      lambdaMin: o.lambdaMin,
      realistic: o.sizes,
      realisticModels: o.models,
      realisticBatch: o.gradBatch,
      extraSets: files,
      progress,
    });
    reports.push(gradientsReport(res, command));
  }
  if (o.command === 'pade' || o.command === 'all') {
    reports.push(padeReport(runPade({ degree: o.padeDegree, taylorDegree: o.taylorDegree, progress }), command));
  }
  for (const r of reports) writeReport(r, o.out);
  if (o.command === 'all') {
    const index = [
      '# covpool analysis reports\n',
      `${regenerateHint(command)} See docs/analysis.md for what the numbers mean.\n`,
      ...reports.map((r) => `- [${r.title}](${r.name}.md) — ${Object.keys(r.svgs).length} plots, numbers in [${r.name}.json](${r.name}.json)`),
      '',
    ].join('\n');
    fs.writeFileSync(path.join(o.out, 'README.md'), index);
  }
  return reports;
}

/** CLI entry: returns the exit code. */
export function main(argv: string[], stderr: NodeJS.WritableStream = process.stderr): number {
  let o: CliOptions | 'help';
  try {
    o = parseArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      stderr.write(`covpool-analyze: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (o === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const t0 = Date.now();
  try {
    // The arguments recorded in the reports: what regenerates them (--quiet changes nothing in them).
    const recorded = argv.filter((a) => a !== '--quiet').join(' ');
    const reports = run(o, o.quiet ? silentProgress : stderrProgress(stderr), recorded);
    if (!o.quiet) stderr.write(`covpool-analyze: wrote ${reports.map((r) => r.name + '.md').join(', ')} and their plots to ${o.out}/ in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
    return 0;
  } catch (e) {
    stderr.write(`covpool-analyze: ${(e as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
