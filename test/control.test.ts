// Control of long calls: an AbortSignal cancels an async call between batch items (the promise
// rejects with an AbortError), a progress callback reports finished items; and memory control:
// memoryStats() and emptyCache() over the host caching allocator.
import { AbortError, CovPoolLayer, Tensor, covpool, eigh, emptyCache, memoryStats, sqrtm, sqrtmBackward } from '../lib';
import type { NativeAddon, NativeControl } from '../lib/native';
import { controlled } from '../lib/ops';
import { errorName, reluFeatures, withSpectrum } from './helpers';

// Items big enough (tens of ms each) that an abort lands while most of the batch is still queued.
const B = 24;
const features = reluFeatures(B, 96, 49, 3, 'float32');

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; cause?: unknown }> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected the promise to reject');
}

describe('AbortSignal', () => {
  test('an already aborted signal rejects at once with an AbortError whose cause is the reason', async () => {
    const ctl = new AbortController();
    ctl.abort(new Error('user stopped'));
    const e = await rejection(new CovPoolLayer('svd').forward(features, { signal: ctl.signal }));
    expect(e).toBeInstanceOf(AbortError);
    expect(e.name).toBe('AbortError');
    expect(e.code).toBe('ABORT_ERR');
    expect((e.cause as Error).message).toBe('user stopped');
  });

  test('aborting during a forward stops it between batch items and rejects with an AbortError', async () => {
    const big = reluFeatures(96, 96, 49, 4, 'float32'); // ~0.3 s of work on 2 cores: the abort lands well inside it
    const ctl = new AbortController();
    const seen: number[] = [];
    const p = new CovPoolLayer('svd-pade').forward(big, { signal: ctl.signal, onProgress: (r) => seen.push(r.done) });
    ctl.abort(); // the call is already running on the thread pool
    const e = await rejection(p);
    expect(errorName(e)).toBe('AbortError');
    // Items that had started finish; the rest never run. Progress counts finished items only: 1, 2, ...
    expect(seen.length).toBeLessThan(96);
    expect(seen).toEqual(seen.map((_, i) => i + 1));
  });

  test('a call that completes before the abort resolves normally, and the layer keeps working after an abort', async () => {
    const layer = new CovPoolLayer('ns');
    const ctl = new AbortController();
    const r = await layer.forward(features, { signal: ctl.signal });
    ctl.abort(); // too late: nothing to cancel
    expect(r.output.shape).toEqual([B, 96 * 97 / 2]);
    // An aborted backward (aborted before it starts, so no race with a fast backward finishing
    // first; a mid-call abort is the test above) leaves a retained state usable.
    const ctl2 = new AbortController();
    ctl2.abort();
    const p = layer.backward(r.state, Tensor.zeros([B, 96 * 97 / 2]), { signal: ctl2.signal, retainState: true });
    const e = await rejection(p);
    expect(e.name).toBe('AbortError');
    const again = await layer.backward(r.state, Tensor.zeros([B, 96 * 97 / 2]));
    expect(again.shape).toEqual([B, 96, 49]);
  });

  test('sqrtm, sqrtmBackward, covpool and eigh take a signal too', async () => {
    const one = withSpectrum(Array.from({ length: 64 }, (_, k) => k + 1), 7);
    const a = new Tensor(Float64Array.from({ length: 4 * 4096 }, (_, i) => one[i % 4096]), [4, 64, 64]);
    const ctl = new AbortController();
    ctl.abort();
    for (const p of [sqrtm(a, 'svd', { signal: ctl.signal }), covpool(features, { signal: ctl.signal }), eigh(a, { signal: ctl.signal })])
      expect((await rejection(p)).name).toBe('AbortError');
    const { state } = await sqrtm(a, 'svd');
    expect((await rejection(sqrtmBackward(state, Tensor.zeros([4, 64, 64], 'float64'), { signal: ctl.signal }))).name).toBe('AbortError');
  });

  test('a signal that is not an AbortSignal, or a progress callback that is not a function, is a TypeError', async () => {
    const layer = new CovPoolLayer('ns');
    expect(errorName(await rejection(layer.forward(features, { signal: {} as never })))).toBe('TypeError');
    expect(errorName(await rejection(layer.forward(features, { onProgress: 3 as never })))).toBe('TypeError');
  });
});

describe('which binary holds the control token', () => {
  // The CPU binary and the CUDA-enabled binary are separate modules: a token must be made, cancelled
  // and released by the binary that runs the call, not handed from one to the other.
  function fakeBinary(log: string[]): { addon: NativeAddon; token: NativeControl } {
    const token = { fake: true } as unknown as NativeControl;
    const addon = {
      createControl: () => (log.push('create'), token),
      cancelControl: (t: NativeControl) => log.push(t === token ? 'cancel' : 'cancel foreign'),
      releaseControl: (t: NativeControl) => log.push(t === token ? 'release' : 'release foreign'),
    } as unknown as NativeAddon;
    return { addon, token };
  }

  test('the token comes from the binary named for the call, which also cancels and releases it', async () => {
    const log: string[] = [];
    const { addon, token } = fakeBinary(log);
    const ctl = new AbortController();
    let seen: NativeControl | undefined;
    const p = controlled({ signal: ctl.signal }, 1, async (c) => {
      seen = c;
      ctl.abort();
      return 1;
    }, () => addon);
    await p.catch(() => undefined);
    expect(seen).toBe(token);
    expect(log).toEqual(['create', 'cancel', 'release']);
  });

  test('when naming the binary fails, the call still runs (on the CPU binary) and reports its own error', async () => {
    const e = await rejection(
      controlled({ onProgress: () => undefined }, 1, () => Promise.reject(new Error('the call said why')), () => {
        throw new Error('no such device');
      }),
    );
    expect(e.message).toBe('the call said why');
  });
});

describe('progress', () => {
  test('reports done = 1 ... B in order, the last before the promise resolves, none after', async () => {
    const seen: [number, number][] = [];
    let resolved = false;
    const p = new CovPoolLayer('svd').forward(features, { onProgress: ({ done, total }) => seen.push([done, total]) });
    await p.then(() => {
      resolved = true;
    });
    expect(resolved).toBe(true);
    const at = seen.length;
    expect(seen[seen.length - 1]).toEqual([B, B]);
    expect(seen.every(([, t]) => t === B)).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(seen[i][0]).toBeGreaterThan(seen[i - 1][0]);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen.length).toBe(at);
  });
});

describe('memoryStats / emptyCache', () => {
  test('states count as allocated; disposed ones are cached; emptyCache releases the cache', async () => {
    emptyCache();
    const before = memoryStats();
    expect(before.host.cachedBytes).toBe(0);
    expect(before.host.cacheLimitBytes).toBeGreaterThan(0);
    expect(before.devices).toEqual([]);
    const layer = new CovPoolLayer('ns');
    const { state } = await layer.forward(features);
    const bytes = state.bytes;
    expect(bytes).toBeGreaterThan(0);
    const held = memoryStats();
    expect(held.host.allocatedBytes).toBeGreaterThanOrEqual(bytes);
    expect(held.host.peakAllocatedBytes).toBeGreaterThanOrEqual(held.host.allocatedBytes);
    state.dispose();
    const parked = memoryStats();
    // The state's blocks moved from allocated to cached (sizes are rounded up to whole blocks).
    expect(held.host.allocatedBytes - parked.host.allocatedBytes).toBeGreaterThanOrEqual(bytes);
    expect(parked.host.cachedBytes - held.host.cachedBytes).toBeGreaterThanOrEqual(bytes);
    expect(parked.host.scratchBytes).toBeGreaterThan(0); // the threads' work space of that forward
    const released = emptyCache();
    expect(released).toBe(parked.host.cachedBytes + parked.host.scratchBytes);
    expect(memoryStats().host).toMatchObject({ cachedBytes: 0, scratchBytes: 0 });
    // Scratch comes back on demand: the next call works as before.
    expect((await layer.forward(features)).output.shape).toEqual([B, 96 * 97 / 2]);
  });

  test('emptyCache during a running call frees the cache but leaves the scratch in use alone', async () => {
    const layer = new CovPoolLayer('svd');
    const x = reluFeatures(48, 96, 49, 9, 'float32');
    const expected = layer.forwardSync(x).output.data;
    const running = layer.forward(x);
    emptyCache(); // the call is computing on the pool: its items use their scratch
    expect(Buffer.from((await running).output.data.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    emptyCache();
    expect(memoryStats().host.scratchBytes).toBe(0);
  });
});
