// The sync inspector (issue 37): db.diagnostics() shown live, and exported as JSON for a bug report.
import { useEffect, useState } from 'react';

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const ago = (ms) => (ms === null ? '—' : ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`);

export function Inspector({ db }) {
  const [open, setOpen] = useState(false);
  const [d, setD] = useState(null);
  const [failure, setFailure] = useState(null);

  useEffect(() => {
    if (!open) return;
    let live = true;
    const read = () =>
      db.diagnostics().then(
        (x) => live && (setD(x), setFailure(null)),
        (e) => live && setFailure(`${e.code ?? 'ERROR'}: ${e.message}`),
      );
    read();
    const timer = setInterval(read, 1000);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [db, open]);

  const exportJson = () => {
    const blob = new Blob([JSON.stringify(d, null, 2)], { type: 'application/json' });
    const a = Object.assign(document.createElement('a'), {
      href: URL.createObjectURL(blob),
      download: `oversync-diagnostics-${d.generatedAt.replace(/[:.]/g, '-')}.json`,
    });
    a.click();
    URL.revokeObjectURL(a.href);
  };

  return (
    <section className="inspector" aria-label="sync inspector">
      <button onClick={() => setOpen(!open)} data-testid="inspector-toggle">
        {open ? 'Hide sync inspector' : 'Sync inspector'}
      </button>
      {open && failure && <p className="error">{failure}</p>}
      {open && d && (
        <div data-testid="inspector">
          <button onClick={exportJson} data-testid="inspector-export">Export JSON</button>
          <dl>
            <dt>Queue</dt>
            <dd data-testid="inspector-queue">
              {d.queue.pending} pending, {d.queue.parked} parked, {d.queue.rejected} rejected; oldest {ago(d.queue.oldestPendingAgeMs)}
            </dd>
            <dt>Cursor</dt>
            <dd data-testid="inspector-cursor">{d.cursor} of {d.serverTop ?? '?'} on the server</dd>
            <dt>Realtime</dt>
            <dd data-testid="inspector-realtime">{d.realtime.mode}, {d.realtime.reconnects} reconnects</dd>
            <dt>Storage</dt>
            <dd data-testid="inspector-storage">
              {d.storage.kind}: {kib(d.storage.databaseBytes)}
              {d.storage.estimate && `; origin uses ${kib(d.storage.estimate.usage)} of ${kib(d.storage.estimate.quota)}`}
              {d.storage.persisted !== null && (d.storage.persisted ? ', persistent' : ', best effort')}
            </dd>
            <dt>Versions</dt>
            <dd>engine {d.versions.engine}, SQLite {d.versions.sqlite}</dd>
          </dl>
          <table data-testid="inspector-tables">
            <thead><tr><th>table</th><th>rows</th><th>pending</th></tr></thead>
            <tbody>
              {d.tables.map((t) => (
                <tr key={t.table} data-table={t.table}><td>{t.table}</td><td>{t.rows}</td><td>{t.pending}</td></tr>
              ))}
            </tbody>
          </table>
          <table data-testid="inspector-cycles">
            <thead><tr><th>cycle</th><th>ms</th><th>up</th><th>conflicts</th><th>cursor</th><th>error</th></tr></thead>
            <tbody>
              {[...d.cycles].reverse().map((c) => (
                <tr key={c.at} className={c.ok ? '' : 'error'}>
                  <td>{new Date(c.at).toLocaleTimeString()}</td><td>{c.ms}</td><td>{c.uploaded}</td><td>{c.conflicts}</td>
                  <td>{c.cursorBefore}→{c.cursorAfter}</td><td>{c.error?.code ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
