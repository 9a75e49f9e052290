// The same components rendered on a server (Vite's SSR build, run by node): no database there, so the hooks
// must not throw past their boundaries: loading, the offline status, and the Suspense fallback — with
// renderToString and with streaming SSR (renderToPipeableStream, what Next.js App Router uses), which must end.
import { Writable } from 'node:stream';
import { createElement as h } from 'react';
import { renderToPipeableStream, renderToString } from 'react-dom/server';
import { isClientOnly } from 'oversync-web/react';
import { Journal } from './journal.js';

const errors = [];
const string = renderToString(h(Journal, { db: null }));
const started = Date.now();
new Promise((resolve, reject) => {
  let html = '';
  const timer = setTimeout(() => reject(new Error('streaming SSR did not finish within 5 s')), 5000);
  const sink = new Writable({
    write(chunk, _, done) {
      html += chunk;
      done();
    },
  });
  sink.on('finish', () => {
    clearTimeout(timer);
    resolve(html);
  });
  const { pipe } = renderToPipeableStream(h(Journal, { db: null }), {
    onAllReady: () => pipe(sink),
    onShellError: reject,
    onError: (e) => {
      if (!isClientOnly(e)) errors.push(String(e));
    },
  });
}).then(
  (stream) => process.stdout.write(JSON.stringify({ string, stream, ms: Date.now() - started, errors })),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
