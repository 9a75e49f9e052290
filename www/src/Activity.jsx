// What sync decided: conflicts (and who won), changes the server rejected, background errors.
import { useSyncStatus } from 'oversync-web/react';

const outcome = {
  server: 'another device saved first: its version was kept here, your edit was replaced',
  client: 'your version was kept and sent again',
  merge: 'the two versions were merged',
};

function label(c) {
  const title = c.server.payload?.title ?? c.local.payload?.title;
  return `${c.table === 'posts' ? 'Post' : 'Row'} ${title ? `“${title}”` : c.pk.slice(0, 8)}`;
}

export function Activity({ db, notices }) {
  const s = useSyncStatus(db);
  if (!s.conflicts.length && !s.rejections.length && !notices.length) return null;
  return (
    <section className="activity" aria-label="sync activity">
      <h2>Sync activity</h2>
      <ul>
        {s.conflicts.map((c, i) => (
          <li key={`c${i}`} className="conflict" data-testid="conflict">
            Conflict — {label(c)}: {outcome[c.resolution]}
            {c.resolution === 'server' && c.local.payload?.title && <> (your title was “{c.local.payload.title}”)</>}.
          </li>
        ))}
        {s.rejections.map((r, i) => (
          <li key={`r${i}`} className="rejection" data-testid="rejection">
            Rejected — {r.table} {r.pk.slice(0, 8)}: {r.reason}{r.message ? ` (${r.message})` : ''}; the change was dropped.
          </li>
        ))}
        {notices.map((n, i) => <li key={`n${i}`} className="error">{n}</li>)}
      </ul>
    </section>
  );
}
