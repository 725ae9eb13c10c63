// What the training examples share: their command-line parsing and the seeded randomness that makes
// every run of a method see the same split, initial weights and batch order.

/** Parsed `--name value` / `--name=value` flags, `--quick`, and an integer reader with a range check. */
export interface Flags {
  flags: Map<string, string>;
  quick: boolean;
  int(name: string, fallback: number, min?: number): number;
}

/** Parses argv; `--help` prints `help` and exits; a flag not in `known` is an error. */
export function parseFlags(argv: string[], help: string, known: readonly string[]): Flags {
  const flags = new Map<string, string>();
  let quick = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(help);
      process.exit(0);
    }
    if (a === '--quick') {
      quick = true;
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unknown argument '${a}' (see --help)`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    flags.set(m[1], value);
  }
  for (const k of flags.keys()) if (!known.includes(k)) throw new Error(`unknown option --${k} (see --help)`);
  const int = (k: string, d: number, min = 1) => {
    const v = flags.has(k) ? Number(flags.get(k)) : d;
    if (!Number.isInteger(v) || v < min) throw new Error(`--${k} must be an integer >= ${min}, got '${flags.get(k)}'`);
    return v;
  };
  return { flags, quick, int };
}

/** Deterministic PRNG (mulberry32): a run's random choices depend on its seed only. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates) drawn from `r`. */
export function permutation(n: number, r: () => number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
