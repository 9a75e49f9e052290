// webpack 5 with no loaders or plugins for oversync-web: `new Worker(new URL(…, import.meta.url))` becomes a
// worker chunk and the wasm's `new URL(…, import.meta.url)` an asset, both by webpack's defaults.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export default {
  mode: 'production',
  entry: './src/main.js',
  output: { path: path.join(here, 'dist'), filename: 'main.js', publicPath: '/', clean: true },
  performance: { hints: false },
};
