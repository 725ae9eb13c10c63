// Tensor: the typed-array wrapper every op takes. Checks that Float32Array/Float64Array data is
// wrapped without a copy, that plain number arrays are copied into the requested dtype, that the
// {data, shape} (TensorFlow.js) and {data, dims} (onnxruntime) forms are accepted, and that bad
// data, shapes, dtypes and detached buffers are rejected with messages naming what is wrong.
import * as vm from 'vm';
import { CovPoolLayer, Tensor, covpool, covpoolSync, sqrtmSync, sqrtmBackwardSync } from '../lib';
import { detach, expectReject, expectThrow, reluFeatures, sameBits } from './helpers';

describe('wrapping typed arrays', () => {
  test.each([
    ['float32', Float32Array],
    ['float64', Float64Array],
  ] as const)('%s data is wrapped, not copied: same object, same buffer, mutations visible', (dtype, Ctor) => {
    const data = new Ctor([1, 2, 3, 4, 5, 6]);
    const t = new Tensor(data, [2, 3]);
    expect(t.dtype).toBe(dtype);
    expect(t.data).toBe(data);
    expect(t.data.buffer).toBe(data.buffer);
    // A write through the caller's array is seen by the tensor and vice versa.
    data[4] = 42;
    expect(t.get(1, 1)).toBe(42);
    t.data[0] = -7;
    expect(data[0]).toBe(-7);
    expect(t.shape).toEqual([2, 3]);
    expect(t.rank).toBe(2);
    expect(t.size).toBe(6);
  });

  test('a subarray view keeps its byteOffset and the ops read the right elements', () => {
    // The view starts 2 elements into its buffer: an addon that ignored byteOffset would read 9s.
    const backing = new Float64Array([9, 9, 1, 0, 2, 1, 3, 4]);
    const view = backing.subarray(2);
    const t = new Tensor(view, [1, 2, 3]);
    expect(t.data.buffer).toBe(backing.buffer);
    const fromView = covpoolSync(t);
    const fromCopy = covpoolSync(new Tensor(Float64Array.from(view), [1, 2, 3]));
    expect(sameBits(fromView.data, fromCopy.data)).toBe(true);
  });

  // Regression test, fixed bug: Tensor accepts a Float32Array/Float64Array on a SharedArrayBuffer (it is a
  // Float32Array), but the addon reads every input through the ArrayBuffer API, which N-API refuses
  // for shared buffers, so every op throws the bare N-API message "Invalid argument".
  // Expected: the op works (it copies its inputs anyway), or a message naming SharedArrayBuffer.
  test('a Float64Array on a SharedArrayBuffer works with the ops or is rejected naming SharedArrayBuffer', () => {
    const shared = new Float64Array(new SharedArrayBuffer(6 * 8));
    shared.set([1, 0, 2, 1, 3, 4]);
    const t = new Tensor(shared, [1, 2, 3]);
    let result: Tensor | undefined;
    try {
      result = covpoolSync(t);
    } catch (e) {
      expect((e as Error).message).toMatch(/SharedArrayBuffer/);
      return;
    }
    const ref = covpoolSync(new Tensor(Float64Array.from(shared), [1, 2, 3]));
    expect(sameBits(result.data, ref.data)).toBe(true);
  });

  test('the shape array is copied and frozen: later edits of the caller array do not reshape the tensor', () => {
    const shape = [2, 3];
    const t = new Tensor(new Float32Array(6), shape);
    shape[0] = 3;
    expect(t.shape).toEqual([2, 3]);
    expect(Object.isFrozen(t.shape)).toBe(true);
  });

  test('reshape shares the data', () => {
    const t = new Tensor(new Float64Array(12), [2, 6]);
    const r = t.reshape([2, 3, 2]);
    expect(r.data).toBe(t.data);
    expect(r.shape).toEqual([2, 3, 2]);
    expectThrow(() => t.reshape([5, 2]), 'RangeError', /needs 10 elements.*holds 12/);
  });
});

describe('plain number arrays', () => {
  test('are copied into float32 by default', () => {
    const src = [1, 2.5, 1 / 3, 4];
    const t = new Tensor(src, [2, 2]);
    expect(t.dtype).toBe('float32');
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(Array.from(t.data)).toEqual(Array.from(Float32Array.from(src)));
    // A copy: the source array is not aliased.
    src[0] = 100;
    expect(t.data[0]).toBe(1);
    // 1/3 was rounded to float32.
    expect(t.data[2]).not.toBe(1 / 3);
  });

  test('are copied into float64 on request, with no rounding', () => {
    const src = [1, 2.5, 1 / 3, 4];
    const t = new Tensor(src, [4], 'float64');
    expect(t.dtype).toBe('float64');
    expect(t.data).toBeInstanceOf(Float64Array);
    expect(Array.from(t.data)).toEqual(src);
  });

  test('an unknown dtype for a number array is a TypeError naming it', () => {
    expectThrow(() => new Tensor([1, 2], [2], 'int32' as never), 'TypeError', /'int32'/);
  });
});

describe('typed arrays from another realm', () => {
  // Typed arrays made by the native addon, by a vm context or by jest's sandbox are instances of
  // another realm's Float32Array/Float64Array; they are still float arrays and must be wrapped.
  // (Regression: dtypeOfArray used `instanceof`, which rejected them as "unsupported element
  // type Float32Array; expected Float32Array or Float64Array" and, under jest's default
  // environment, made every op that returns a tensor throw.)
  test.each([
    ['Float32Array', 'float32'],
    ['Float64Array', 'float64'],
  ])('a %s from a vm context is wrapped as %s without a copy', (ctor, dtype) => {
    const foreign = vm.runInNewContext(`new ${ctor}([1, 2, 3, 4])`) as Float32Array;
    const t = new Tensor(foreign, [2, 2]);
    expect(t.dtype).toBe(dtype);
    expect(t.data).toBe(foreign);
  });

  test('results of the ops (arrays allocated by the addon) become tensors', () => {
    const a = covpoolSync(reluFeatures(2, 3, 5, 4, 'float64'));
    expect(a.dtype).toBe('float64');
    expect(a.shape).toEqual([2, 3, 3]);
    const b = covpoolSync(reluFeatures(2, 3, 5, 4, 'float32'));
    expect(b.dtype).toBe('float32');
  });
});

describe('conversions from other stacks', () => {
  test('{data, shape} (TensorFlow.js dataSync() + shape) wraps the typed array', () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const tfjsLike = { data, shape: [1, 2, 3], dtype: 'float32' };
    const t = Tensor.from(tfjsLike);
    expect(t.data).toBe(data);
    expect(t.shape).toEqual([1, 2, 3]);
    expect(t.dtype).toBe('float32');
  });

  test('{data, dims} (onnxruntime-node) wraps the typed array', () => {
    const data = new Float64Array([1, 2, 3, 4]);
    const ortLike = { data, dims: [1, 2, 2], type: 'float64' } as unknown as { data: Float64Array; shape: number[] };
    const t = Tensor.from(ortLike);
    expect(t.data).toBe(data);
    expect(t.shape).toEqual([1, 2, 2]);
    expect(t.dtype).toBe('float64');
  });

  test('{data: number[], dims} is copied into float32', () => {
    const t = Tensor.from({ data: [1, 2, 3], dims: [3] } as never);
    expect(t.dtype).toBe('float32');
    expect(Array.from(t.data)).toEqual([1, 2, 3]);
  });

  test('Tensor.from(tensor) returns the same tensor', () => {
    const t = new Tensor(new Float64Array(4), [2, 2]);
    expect(Tensor.from(t)).toBe(t);
    expectThrow(() => Tensor.from(t, 'float32'), 'TypeError', /float32.*float64/);
  });

  test('toObject round trip keeps data identity, shape and dtype', () => {
    const t = reluFeatures(2, 3, 4, 5, 'float32');
    const o = t.toObject();
    expect(o).toEqual({ data: t.data, shape: [2, 3, 4], dtype: 'float32' });
    expect(o.data).toBe(t.data);
    const back = Tensor.from(o);
    expect(back.data).toBe(t.data);
    expect(back.shape).toEqual(t.shape);
    expect(back.dtype).toBe(t.dtype);
    // The returned shape is a fresh array: editing it does not touch the tensor.
    o.shape[0] = 99;
    expect(t.shape[0]).toBe(2);
  });

  test('an object without data or shape is a TypeError saying what is missing', () => {
    expectThrow(() => Tensor.from({ data: new Float32Array(2) } as never), 'TypeError', /shape.*dims/);
    expectThrow(() => Tensor.from({ shape: [2] } as never), 'TypeError', /data.*shape/);
    expectThrow(() => Tensor.from(null as never), 'TypeError', /Tensor or an object/);
    expectThrow(() => Tensor.from(42 as never), 'TypeError', /Tensor or an object/);
  });

  test('a declared dtype other than float32/float64 is rejected naming it', () => {
    expectThrow(() => Tensor.from({ data: [1, 2], shape: [2], dtype: 'int32' }), 'TypeError', /'int32'.*not supported/);
  });

  test('a declared dtype that disagrees with the array type is rejected', () => {
    expectThrow(
      () => Tensor.from({ data: new Float32Array(2), shape: [2], dtype: 'float64' }),
      'TypeError',
      /float32 array but dtype 'float64'/,
    );
  });
});

describe('validation', () => {
  test('shape/data length mismatch names the expected and the received element count', () => {
    const e = expectThrow(() => new Tensor(new Float32Array(5), [2, 3]), 'RangeError', /\[2, 3\] needs 6 elements but the data holds 5/);
    expect(e.message).toMatch(/\b6\b/);
    expect(e.message).toMatch(/\b5\b/);
    expectThrow(() => new Tensor([1, 2, 3, 4, 5, 6, 7], [2, 3], 'float64'), 'RangeError', /needs 6 elements.*holds 7/);
    expectThrow(() => Tensor.from({ data: new Float64Array(8), dims: [3, 3] } as never), 'RangeError', /needs 9 elements.*holds 8/);
  });

  test.each([
    ['Int32Array', () => new Int32Array(4)],
    ['Uint8Array', () => new Uint8Array(4)],
    ['Float16-less Uint16Array', () => new Uint16Array(4)],
    ['BigInt64Array', () => new BigInt64Array(4)],
  ])('%s data is rejected with a message naming the type', (_name, make) => {
    const arr = make();
    const typeName = Object.prototype.toString.call(arr).slice(8, -1);
    const e = expectThrow(() => new Tensor(arr as never, [2, 2]), 'TypeError', new RegExp(`unsupported element type ${typeName}`));
    expect(e.message).toMatch(/Float32Array or Float64Array/);
    // Same through the {data, shape} form.
    expectThrow(() => Tensor.from({ data: arr as never, shape: [2, 2] }), 'TypeError', new RegExp(typeName));
  });

  test('non-array data is rejected', () => {
    expectThrow(() => new Tensor(7 as never, [1]), 'TypeError', /Float32Array, a Float64Array or an array of numbers/);
    expectThrow(() => new Tensor(null as never, [1]), 'TypeError', /Float32Array, a Float64Array or an array of numbers/);
  });

  // Regression test, fixed bug: a string has a numeric `length`, so the array-like branch of the constructor
  // accepts it and Float32Array.from('abcd') silently yields [NaN, NaN, NaN, NaN].
  test('a string is not accepted as tensor data (it would become NaNs)', () => {
    expectThrow(() => new Tensor('abcd' as never, [4]), 'TypeError', /Float32Array, a Float64Array or an array of numbers/);
  });

  test.each([
    [[2, 1.5]],
    [[-2, 3]],
    [[2, NaN]],
    [[2, Infinity]],
  ])('dims %p are rejected (non-negative integers only)', (shape) => {
    expectThrow(() => new Tensor(new Float32Array(6), shape), 'RangeError', /must hold non-negative integers/);
  });

  test('a zero dim makes an empty tensor (an empty batch); its data must then be empty', () => {
    expect(new Tensor(new Float32Array(0), [0, 3]).size).toBe(0);
    expectThrow(() => new Tensor(new Float32Array(6), [2, 0]), 'RangeError', /needs 0 elements but the data holds 6/);
  });

  test('a non-array shape is a TypeError', () => {
    expectThrow(() => new Tensor(new Float32Array(6), '2,3' as never), 'TypeError', /shape must be an array/);
  });

  test('dtype mismatch between the array and the requested dtype is rejected', () => {
    expectThrow(() => new Tensor(new Float32Array(4), [4], 'float64'), 'TypeError', /float32 array but dtype 'float64'/);
    expectThrow(() => new Tensor(new Float64Array(4), [4], 'float32'), 'TypeError', /float64 array but dtype 'float32'/);
  });

  test('get checks the number of coordinates and their range', () => {
    const t = new Tensor([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(t.get(1, 2)).toBe(6);
    expectThrow(() => t.get(1), 'RangeError', /needs 2 coordinates/);
    expectThrow(() => t.get(2, 0), 'RangeError', /out of range for axis 0/);
  });
});

describe('detached buffers', () => {
  test('the detach helper really detaches (precondition of the tests below)', () => {
    const a = new Float32Array(8);
    detach(a);
    expect(a.length).toBe(0);
    expect(a.buffer.byteLength).toBe(0);
  });

  test('a view of a detached buffer is rejected at construction with "detached"', () => {
    expectThrow(() => new Tensor(detach(new Float32Array(6)), [2, 3]), 'TypeError', /detached/);
    expectThrow(() => new Tensor(detach(new Float64Array(6)), [1, 2, 3]), 'TypeError', /detached/);
    expectThrow(() => Tensor.from({ data: detach(new Float64Array(4)), shape: [2, 2] }), 'TypeError', /detached/);
  });

  test('a tensor made before its buffer was detached is rejected by covpoolSync and covpool', async () => {
    const x = reluFeatures(2, 3, 4, 1, 'float32');
    detach(x.data);
    expectThrow(() => covpoolSync(x), 'TypeError', /detached/);
    await expectReject(() => covpool(x), 'TypeError', /detached/);
  });

  test('a tensor detached after it was made is rejected by layer.forwardSync and layer.forward', async () => {
    const layer = new CovPoolLayer('svd');
    const x = reluFeatures(2, 3, 4, 2, 'float64');
    detach(x.data);
    expectThrow(() => layer.forwardSync(x), 'TypeError', /detached/);
    await expectReject(() => layer.forward(x), 'TypeError', /detached/);
  });

  test('an output gradient detached after it was made is rejected by layer.backwardSync and layer.backward', async () => {
    const layer = new CovPoolLayer('ns');
    const { output, state } = layer.forwardSync(reluFeatures(2, 3, 4, 3, 'float32'));
    const dy = new Tensor(new Float32Array(output.size).fill(1), output.shape);
    detach(dy.data);
    expectThrow(() => layer.backwardSync(state, dy), 'TypeError', /detached/);
    await expectReject(() => layer.backward(state, dy), 'TypeError', /detached/);
    // The state is untouched by the failed calls: a live gradient still works.
    const g = layer.backwardSync(state, new Tensor(new Float32Array(output.size).fill(1), output.shape));
    expect(g.shape).toEqual([2, 3, 4]);
  });

  test('sqrtm and sqrtmBackward reject detached matrices/gradients', () => {
    const a = new Tensor(new Float64Array([2, 0, 0, 3]), [1, 2, 2]);
    const { state } = sqrtmSync(a, 'svd');
    const dS = new Tensor(new Float64Array(4), [1, 2, 2]);
    detach(dS.data);
    expectThrow(() => sqrtmBackwardSync(state, dS), 'TypeError', /detached/);
    detach(a.data);
    expectThrow(() => sqrtmSync(a, 'svd'), 'TypeError', /detached/);
  });
});
