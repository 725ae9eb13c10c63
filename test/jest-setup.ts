// Runs before each test file (jest.config.js setupFiles). TensorFlow.js's CPU backend greets its
// first tensor in Node with a console.warn banner suggesting @tensorflow/tfjs-node; under jest every
// console.warn is printed with its stack, so each tfjs test file printed a dozen lines of noise.
// Only that banner is dropped: every other warning (tfjs's included) is printed as before.
const TFJS_NODE_BANNER = /looks like you are running TensorFlow\.js in Node\.js/;
const warn = console.warn.bind(console);
console.warn = (...args: unknown[]): void => {
  if (args.length === 1 && typeof args[0] === 'string' && TFJS_NODE_BANNER.test(args[0])) return;
  warn(...args);
};
