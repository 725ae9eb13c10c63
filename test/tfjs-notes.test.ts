// docs/tfjs.md's note on the wasm backend, kept true: the wasm backend registers no Conv2DBackpropFilter
// kernel (so tf.layers.conv2d cannot train there), which is why the MNIST example computes its
// convolutions as patches + dense layers. If a tfjs release adds the kernel, this fails and the
// note (and the example's choice) should be revisited.
import * as fs from 'fs';
import * as path from 'path';

describe('docs/tfjs.md: tfjs wasm backend and convolution training', () => {
  test('the wasm backend has Conv2DBackpropInput but no Conv2DBackpropFilter', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const tf = require('@tensorflow/tfjs') as typeof import('@tensorflow/tfjs');
    require('@tensorflow/tfjs-backend-wasm'); // registers its kernels (no wasm binary is loaded for this)
    expect(tf.getKernel('Conv2DBackpropInput', 'wasm')).toBeDefined();
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
    expect(tf.getKernel('Conv2DBackpropFilter', 'cpu')).toBeDefined();
  });

  test('docs/tfjs.md says so, and the README points there', () => {
    const doc = fs.readFileSync(path.resolve(__dirname, '..', 'docs', 'tfjs.md'), 'utf8');
    expect(doc).toMatch(/registers no `Conv2DBackpropFilter`\s+kernel/);
    const readme = fs.readFileSync(path.resolve(__dirname, '..', 'README.md'), 'utf8');
    expect(readme).toMatch(/\[docs\/tfjs\.md\]\(docs\/tfjs\.md\)[^.]*training\s+convolutions on the `cpu` and `wasm` backends/);
  });
});
