// The package's "exports" map, resolved by Node the way another project resolves it: a temporary
// project whose node_modules/covpool is a link to this repository. `require` and `import` of
// 'covpool' and 'covpool/tfjs' must reach the built files, share one module instance between
// the two, export the same names, and 'covpool' alone must never load TensorFlow.js.
// Runs against dist/ (what the package ships), so it needs `npm run build:ts` first.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const built = fs.existsSync(path.join(root, 'dist', 'lib', 'tfjs', 'index.js'));

let app: string;
beforeAll(() => {
  app = fs.mkdtempSync(path.join(os.tmpdir(), 'covpool-exports-'));
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  fs.mkdirSync(path.join(app, 'node_modules'));
  fs.symlinkSync(root, path.join(app, 'node_modules', 'covpool'), 'dir');
});
afterAll(() => {
  if (app) fs.rmSync(app, { recursive: true, force: true });
});

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

test('dist is built', () => {
  if (!built) throw new Error('dist/lib/tfjs/index.js is missing: run `npm run build:ts` (tsc) before this test');
});

(built ? test : test.skip)('require: covpool, covpool/tfjs and covpool/package.json; deep paths are closed; no tfjs in the core', () => {
  const out = JSON.parse(
    node([
      '-e',
      `const c = require('covpool');
       const tfLoaded = Object.keys(require.cache).some((k) => k.includes('@tensorflow'));
       const t = require('covpool/tfjs');
       let deep = 'open';
       try { require('covpool/dist/lib/ops'); } catch (e) { deep = e.code; }
       console.log(JSON.stringify({
         core: typeof c.CovPoolLayer, tfjs: typeof t.covPoolLayer, tfLoaded,
         version: require('covpool/package.json').version, deep,
         main: require.resolve('covpool'), sub: require.resolve('covpool/tfjs'),
       }));`,
    ]),
  );
  expect(out).toMatchObject({ core: 'function', tfjs: 'function', tfLoaded: false, deep: 'ERR_PACKAGE_PATH_NOT_EXPORTED' });
  expect(out.version).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  expect(out.main).toBe(path.join(root, 'dist', 'lib', 'index.js'));
  expect(out.sub).toBe(path.join(root, 'dist', 'lib', 'tfjs', 'index.js'));
});

(built ? test : test.skip)('import: the ESM entry points re-export the CommonJS build (same instances, same names)', () => {
  const out = JSON.parse(
    node([
      '--input-type=module',
      '-e',
      `import * as c from 'covpool';
       import cDefault from 'covpool';
       import * as t from 'covpool/tfjs';
       import { createRequire } from 'node:module';
       const require = createRequire(import.meta.url);
       const cc = require('covpool'), ct = require('covpool/tfjs');
       const missing = (esm, cjs) => Object.keys(cjs).filter((k) => k !== '__esModule' && !(k in esm));
       console.log(JSON.stringify({
         sameCore: c.Tensor === cc.Tensor && c.CovPoolLayer === cc.CovPoolLayer && cDefault === cc,
         sameTfjs: t.CovPool === ct.CovPool && t.CovPoolOp === ct.CovPoolOp,
         missingCore: missing(c, cc), missingTfjs: missing(t, ct),
         works: new c.CovPoolLayer('ns').forwardSync(new c.Tensor(new Float32Array(2 * 3 * 4).map((_, i) => Math.sin(i)), [2, 3, 4])).output.shape,
       }));`,
    ]),
  );
  expect(out).toEqual({ sameCore: true, sameTfjs: true, missingCore: [], missingTfjs: [], works: [2, 6] });
});

/** Writes a `node -r` preload that makes the modules matching `condition` (JS on `request`) unresolvable. */
function hidingPreload(file: string, condition: string): string {
  const hide = path.join(app, file);
  fs.writeFileSync(
    hide,
    `const Module = require('module');
     const resolve = Module._resolveFilename;
     Module._resolveFilename = function (request, ...rest) {
       if (${condition}) {
         const e = new Error("Cannot find module '" + request + "'");
         e.code = 'MODULE_NOT_FOUND';
         throw e;
       }
       return resolve.call(this, request, ...rest);
     };`,
  );
  return hide;
}

(built ? test : test.skip)('without TensorFlow.js installed: covpool works, covpool/tfjs says what to install', () => {
  // Simulates a project without tfjs: resolving any @tensorflow/* package fails as it would there.
  const hide = hidingPreload('hide-tfjs.js', "request.startsWith('@tensorflow/')");
  const out = JSON.parse(
    node([
      '-r',
      hide,
      '-e',
      `const c = require('covpool');
       let message = '';
       try { require('covpool/tfjs'); } catch (e) { message = e.message; }
       console.log(JSON.stringify({ core: typeof c.covpoolSync, message }));`,
    ]),
  );
  expect(out.core).toBe('function');
  expect(out.message).toMatch(/covpool\/tfjs: @tensorflow\/tfjs-core was not found; install TensorFlow.js next to covpool: `npm install @tensorflow\/tfjs`/);
});

(built ? test : test.skip)('with tfjs-core but without tfjs-layers: the op loads, the layer says what is missing', () => {
  const hide = hidingPreload('hide-layers.js', "request === '@tensorflow/tfjs-layers'");
  const out = JSON.parse(
    node([
      '-r',
      hide,
      '-e',
      `const t = require('covpool/tfjs');
       const op = new t.CovPoolOp('svd-pade');
       let message = '';
       try { t.covPoolLayer('ns'); } catch (e) { message = e.message; }
       console.log(JSON.stringify({ op: op.covpool.method, message }));`,
    ]),
  );
  expect(out.op).toBe('svd-pade');
  expect(out.message).toMatch(/the CovPool layer needs @tensorflow\/tfjs-layers, which was not found/);
});
