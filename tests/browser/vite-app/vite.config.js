import { defineConfig } from 'vite';

export default defineConfig({
  // oversync-web's worker is an ES module that imports the wasm glue.
  worker: { format: 'es' },
  // Keep the package out of dev pre-bundling so its worker and wasm URLs resolve (needed for `vite dev` only).
  optimizeDeps: { exclude: ['oversync-web'] },
});
