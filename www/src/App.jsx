// Team journal: sign in, write and edit posts offline or online, watch them sync.
import { useEffect, useRef, useState } from 'react';
import { openJournal } from './db.js';
import { SignIn } from './SignIn.jsx';
import { StatusBar } from './StatusBar.jsx';
import { Posts } from './Posts.jsx';
import { Activity } from './Activity.jsx';
import { Teams } from './Teams.jsx';
import { Inspector } from './Inspector.jsx';

const KEY = 'journal-user';

export function App() {
  const [user, setUser] = useState(() => localStorage.getItem(KEY));
  const [db, setDb] = useState(null);
  const [error, setError] = useState(null);
  const [notices, setNotices] = useState([]);
  const [leaving, setLeaving] = useState(false);
  const forget = () => (localStorage.removeItem(KEY), setLeaving(false), setUser(null));
  const forgetRef = useRef(forget);
  forgetRef.current = forget;

  useEffect(() => {
    if (!user) return;
    let client = null;
    let cancelled = false;
    const notify = (e) => setNotices((n) => [...n.slice(-4), `${e.code}: ${e.message}`]);
    openJournal(user, notify, () => forgetRef.current()).then(
      (c) => (cancelled ? c.close() : ((client = c), setDb(c))),
      (e) => setError(`${e.code ?? 'ERROR'}: ${e.message}`),
    );
    return () => {
      cancelled = true;
      setDb(null);
      client?.close();
    };
  }, [user]);

  if (!user) {
    return <SignIn onSignIn={(name) => (localStorage.setItem(KEY, name), setError(null), setUser(name))} />;
  }
  // Uploads what is pending, then deletes this user's journal from the browser (every tab signs out with it).
  // If the changes cannot be uploaded (offline), ask before discarding them.
  const signOut = async () => {
    if (!db) return forget();
    setLeaving(true);
    try {
      await db.signOut();
    } catch (e) {
      const discard =
        e.code !== 'CLOSED' &&
        window.confirm(`${e.message}\n\nSign out anyway and discard the changes that were not uploaded?`);
      if (!discard && e.code !== 'CLOSED') return setLeaving(false);
      if (discard) await db.signOut({ keepPending: false }).catch(() => undefined);
    }
    forget();
  };
  return (
    <div className="app">
      <header>
        <h1>Team journal</h1>
        <span className="who">
          signed in as <b>{user}</b>{' '}
          <button onClick={signOut} disabled={leaving}>
            {leaving ? 'Signing out…' : 'Sign out'}
          </button>
        </span>
      </header>
      <StatusBar db={db} />
      {error && <p className="error" role="alert">{error}</p>}
      {!db && !error && <p className="muted">Opening your journal…</p>}
      {db && <Posts db={db} user={user} />}
      {db && <Teams db={db} user={user} />}
      {db && <Activity db={db} notices={notices} />}
      {db && <Inspector db={db} />}
    </div>
  );
}
