// The shared side of the team journal (docs/sharing.md): create a team, invite by its code, post to it; drafts
// stay private until published. Leaving a team removes its posts from this device. "Pin a note as the admin" asks
// the demo server's backend stand-in to write a post into PostgreSQL with plain SQL (docs/backend-writes.md).
import { useState } from 'react';
import { useQuery, useSyncStatus } from 'oversync-web/react';
import { teamRequest } from './db.js';

const LIST = `SELECT id, team_id, title, content, author_name, updated_at FROM team_posts
  ORDER BY team_id IS NOT NULL, created_at DESC, id`;

export function Teams({ db, user }) {
  const { scopes } = useSyncStatus(db);
  const { rows } = useQuery(db, LIST);
  const [name, setName] = useState('');
  const [code, setCode] = useState('');
  const [share, setShare] = useState('');
  const [title, setTitle] = useState('');
  const [message, setMessage] = useState(null);
  const act = async (body, done) => {
    try {
      const r = await teamRequest(user, body);
      setMessage(body.create ? `Created ${r.scope}: share this code to invite others.` : null);
      done?.(r);
      await db.sync().catch(() => undefined);
    } catch (e) {
      setMessage(e.message);
    }
  };
  const post = async (e) => {
    e.preventDefault();
    const now = new Date().toISOString();
    await db.exec(
      'INSERT INTO team_posts (id, team_id, title, author_name, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      [crypto.randomUUID(), share || null, title.trim(), user, now, now],
    );
    setTitle('');
  };
  const publish = (id, team) =>
    db.exec('UPDATE team_posts SET team_id = ?, updated_at = ? WHERE id = ?', [team, new Date().toISOString(), id]);
  return (
    <section className="teams" aria-label="teams">
      <h2>Teams</h2>
      <ul className="team-list">
        {scopes.map((t) => (
          <li key={t.scope} data-team={t.scope}>
            <code>{t.scope}</code> <span className="muted">{t.role} · {t.state} · {t.rows} posts</span>{' '}
            <button onClick={() => act({ leave: t.scope })}>Leave</button>{' '}
            <button
              title="The demo server's stand-in for your backend writes a note into PostgreSQL with plain SQL; it reaches every member by capture"
              onClick={() => act({ pin: { team: t.scope, text: `Note from the admin, ${new Date().toLocaleTimeString()}` } })}
            >
              Pin a note as the admin
            </button>
          </li>
        ))}
      </ul>
      <form className="inline" onSubmit={(e) => (e.preventDefault(), act({ create: name }, () => setName('')))}>
        <input name="team-name" placeholder="New team's name" value={name} onChange={(e) => setName(e.target.value)} />
        <button type="submit" disabled={!name.trim()}>Create team</button>
      </form>
      <form className="inline" onSubmit={(e) => (e.preventDefault(), act({ join: code.trim() }, () => setCode('')))}>
        <input name="team-code" placeholder="Invite code" value={code} onChange={(e) => setCode(e.target.value)} />
        <button type="submit" disabled={!code.trim()}>Join</button>
      </form>
      {message && <p className="muted" data-testid="team-message">{message}</p>}
      <form className="inline" onSubmit={post}>
        <select name="share" value={share} onChange={(e) => setShare(e.target.value)}>
          <option value="">Draft (only me)</option>
          {scopes.filter((t) => t.role === 'writer').map((t) => <option key={t.scope} value={t.scope}>{t.scope}</option>)}
        </select>
        <input name="team-title" placeholder="Title" value={title} onChange={(e) => setTitle(e.target.value)} required />
        <button type="submit" disabled={!title.trim()}>Share</button>
      </form>
      <ul>
        {rows.map((p) => (
          <li key={p.id} className="team-post" data-id={p.id} data-team={p.team_id ?? ''}>
            <h4>{p.title}</h4>
            <footer className="muted">
              {p.team_id ? <code>{p.team_id}</code> : <b>Draft</b>} · {p.author_name ?? 'someone'}
              {!p.team_id && share && <button onClick={() => publish(p.id, share)}>Publish to {share}</button>}
            </footer>
          </li>
        ))}
      </ul>
    </section>
  );
}
