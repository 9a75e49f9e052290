import { useState } from 'react';

export function SignIn({ onSignIn }) {
  const [name, setName] = useState('');
  const valid = /^[a-z0-9][a-z0-9_-]{0,31}$/.test(name);
  return (
    <form className="signin" onSubmit={(e) => (e.preventDefault(), valid && onSignIn(name))}>
      <h1>Team journal</h1>
      <p>An offline-first journal: your posts live in this browser (SQLite on OPFS) and sync through the oversync
        server to your other devices. Sign in with the same name in another browser profile to see it.</p>
      <label>
        Your name <input name="username" value={name} autoFocus placeholder="e.g. dana"
          onChange={(e) => setName(e.target.value.toLowerCase())} />
      </label>
      <button type="submit" disabled={!valid}>Sign in</button>
      <p className="muted">Dev sign-in: no password (the server runs with <code>dev_signin = true</code>).</p>
    </form>
  );
}
