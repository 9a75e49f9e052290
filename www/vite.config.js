import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/** Fills the service worker's precache list with every emitted file, and its cache name with their hash. */
function precache() {
  let outDir;
  return {
    name: 'oversync-precache',
    apply: 'build',
    configResolved: (c) => void (outDir = path.resolve(c.root, c.build.outDir)),
    writeBundle(_, bundle) {
      const publicFiles = readdirSync(path.resolve(outDir, '..', 'public'));
      const files = [...Object.keys(bundle), ...publicFiles]
        .filter((f) => f !== 'sw.js' && f !== 'index.html')
        .map((f) => `/${f}`)
        .sort();
      const version = createHash('sha256').update(files.join('\n')).digest('hex').slice(0, 12);
      const sw = path.join(outDir, 'sw.js');
      const src = readFileSync(sw, 'utf8')
        .replace('self.__PRECACHE__', JSON.stringify(['/', ...files]))
        .replace('__VERSION__', version);
      writeFileSync(sw, src);
    },
  };
}

export default defineConfig({
  plugins: [precache()],
  esbuild: { jsx: 'automatic' },
  // oversync-web is this repository's package (../npm, built by npm/build.sh), used as built; its own (dev)
  // React must not be bundled next to the app's.
  resolve: {
    alias: [
      { find: /^oversync-web\/react$/, replacement: fileURLToPath(new URL('../npm/dist/react.js', import.meta.url)) },
      { find: /^oversync-web$/, replacement: fileURLToPath(new URL('../npm/dist/index.js', import.meta.url)) },
    ],
    dedupe: ['react', 'react-dom'],
  },
  // oversync-web's worker is an ES module that imports the wasm glue.
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['oversync-web'] },
  build: { target: 'es2022' },
  // `vite` (hot reload) next to a running `www/demo`: the sync routes go to its server.
  server: {
    port: 5173,
    strictPort: true,
    proxy: Object.fromEntries(['/sync', '/signin', '/health'].map((p) => [p, `http://127.0.0.1:${process.env.PORT ?? 8080}`])),
  },
});
