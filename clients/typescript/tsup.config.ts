import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2020',
  platform: 'neutral',
  splitting: false,
  treeshake: true,
  // `ws` (Node 20's WebSocket) is loaded with `require` in the CJS build and a
  // hidden dynamic `import()` in the ESM build: see loadNodeWebSocket in src/client.ts.
  esbuildOptions(options, { format }) {
    options.define = { ...options.define, __ROSTER_CJS__: format === 'cjs' ? 'true' : 'false' };
  },
});
