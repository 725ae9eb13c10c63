// Jest runs each test file in its own vm context, whose typed-array constructors differ from the
// ones of the main Node realm where the native addon creates its output arrays. lib/tensor.ts
// recognizes Float32Array/Float64Array with `instanceof`, so under the default environment every
// op that wraps a native result throws "unsupported element type Float64Array" (a library bug,
// reported; it also hits users who test their code with jest). This environment hands the test
// context the main realm's typed-array constructors so the numerical suites can run; it changes
// nothing else.
const { TestEnvironment } = require('jest-environment-node');

class NativeRealmEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of ['ArrayBuffer', 'Float32Array', 'Float64Array']) this.global[name] = globalThis[name];
  }
}

module.exports = NativeRealmEnvironment;
