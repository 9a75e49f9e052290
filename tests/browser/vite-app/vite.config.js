import { defineConfig } from 'vite';

export default defineConfig({
  // oversync-web's worker is an ES module that imports the wasm glue.
  worker: { format: 'es' },
  // Keep the package out of dev pre-bundling so its worker and wasm URLs resolve (needed for `vite dev` only).
  optimizeDeps: { exclude: ['oversync-web'] },
  // Developing against a local sync server (npm/README.md, "Develop against a local server"): the dev server
  // proxies the sync API, the stream's WebSocket included, and the dev sign-in.
  server: process.env.OVERSYNC_SERVER
    ? {
        proxy: {
          '/sync': { target: process.env.OVERSYNC_SERVER, ws: true },
          '/signin': process.env.OVERSYNC_SERVER,
        },
      }
    : undefined,
});
