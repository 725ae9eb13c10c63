// ESM entry point of covpool/tfjs: re-exports the CommonJS build (see index.mjs for why).
// TensorFlow.js's node bundles are CommonJS too, so the `@tensorflow/tfjs-core` this module
// requires is the same instance an application gets from `import * as tf from '@tensorflow/tfjs'`.
export * from '../dist/lib/tfjs/index.js';
export { default } from '../dist/lib/tfjs/index.js';
