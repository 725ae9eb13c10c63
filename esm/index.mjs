// ESM entry point of covpool (package.json "exports" -> "import"). It re-exports the CommonJS
// build instead of being a second build, so `import` and `require` share one module instance:
// one addon load, one set of classes (a Tensor from one is `instanceof` Tensor in the other).
// Node finds the CommonJS named exports by static analysis of dist/lib/index.js.
export * from '../dist/lib/index.js';
export { default } from '../dist/lib/index.js';
