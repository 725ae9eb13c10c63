/** Tests run against the TypeScript sources (ts-jest) and the addon in build/Release. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testTimeout: 120000,
  // Drops TensorFlow.js's "install tfjs-node" banner, and nothing else (test/jest-setup.ts).
  setupFiles: ['<rootDir>/test/jest-setup.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};
