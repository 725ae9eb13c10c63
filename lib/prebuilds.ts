// What the package says about its prebuilt binaries: prebuilds/build.json, written when the
// tarball was packed (scripts/audit-prebuilds.js --record). Built in Debian 11 (the published
// tarball), they load on glibc >= 2.28; built on a contributor's machine (COVPOOL_PREBUILD_HOST=1),
// on that machine's glibc or the highest version they need. Errors name that floor.

/** The oldest glibc the published tarball's binaries load on. */
export const PUBLISHED_GLIBC_FLOOR = '2.28';

export interface PrebuildRecord {
  /** The oldest glibc every prebuilt binary loads on. */
  glibc: string;
  /** Built on the packing machine (COVPOOL_PREBUILD_HOST=1) rather than in Debian 11. */
  host: boolean;
  /** Where they were built, in words. */
  builtOn: string;
}

/** prebuilds/build.json under the package root `root`, or null when there is none (or it is unreadable). */
export function prebuildRecord(root: string): PrebuildRecord | null {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const path = require('path') as typeof import('path');
  try {
    const r = JSON.parse(fs.readFileSync(path.join(root, 'prebuilds', 'build.json'), 'utf8'));
    if (typeof r.glibc !== 'string') return null;
    return { glibc: r.glibc, host: r.host === true, builtOn: String(r.builtOn ?? '') };
  } catch {
    return null;
  }
}

/**
 * The sentence a load error gets when its cause is a missing GLIBC symbol version ('' otherwise):
 * the glibc the binary needs, and, for a tarball built on a contributor's machine, why it is
 * newer than the published floor.
 */
export function glibcAdvice(root: string, cause: string): string {
  if (!/GLIBC_/.test(cause)) return '';
  const rec = prebuildRecord(root);
  const floor = rec?.glibc ?? PUBLISHED_GLIBC_FLOOR;
  const glibc = process.report?.getReport ? (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime : undefined;
  let s = ` This system's C library${glibc ? ` (glibc ${glibc})` : ''} is older than the binary needs (glibc >= ${floor}).`;
  if (rec?.host)
    s += ` This package's binaries were built on ${rec.builtOn}, for that glibc; the published package needs glibc >= ${PUBLISHED_GLIBC_FLOOR}.`;
  return s;
}
