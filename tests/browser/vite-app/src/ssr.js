// The same components rendered on a server (Vite's SSR build, run by node): no database there, so the hooks
// must not throw: loading, the offline status, and the Suspense fallback.
import { createElement as h } from 'react';
import { renderToString } from 'react-dom/server';
import { Journal } from './journal.js';

process.stdout.write(renderToString(h(Journal, { db: null })));
