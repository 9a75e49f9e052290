// Write, edit and delete posts; the list is a live query, so local, other-tab and synced changes all show.
import { useState } from 'react';
import { useQuery } from 'oversync-web/react';
import { authorId } from './db.js';

const LIST = `SELECT p.id, p.title, p.content, p.updated_at, u.name AS author
  FROM posts p LEFT JOIN users u ON u.id = p.author_id ORDER BY p.created_at DESC, p.id`;

export function Posts({ db, user }) {
  const { rows, loading } = useQuery(db, LIST);
  const [title, setTitle] = useState('');
  const [content, setContent] = useState('');
  const add = async (e) => {
    e.preventDefault();
    const now = new Date().toISOString();
    await db.exec(
      'INSERT INTO posts (id, title, content, author_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      [crypto.randomUUID(), title.trim(), content.trim(), await authorId(db, user), now, now],
    );
    setTitle('');
    setContent('');
  };
  return (
    <section className="posts">
      <form className="compose" onSubmit={add}>
        <input name="title" placeholder="Title" value={title} onChange={(e) => setTitle(e.target.value)} required />
        <textarea name="content" placeholder="What happened today?" value={content}
          onChange={(e) => setContent(e.target.value)} rows={3} />
        <button type="submit" disabled={!title.trim()}>Post</button>
      </form>
      {loading ? <p className="muted">Loading…</p> : rows.length === 0 && <p className="muted">No posts yet.</p>}
      <ul>
        {rows.map((p) => <Post key={p.id} db={db} post={p} />)}
      </ul>
    </section>
  );
}

function Post({ db, post }) {
  const [editing, setEditing] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    await db.exec('UPDATE posts SET title = ?, content = ?, updated_at = ? WHERE id = ?',
      [editing.title, editing.content, new Date().toISOString(), post.id]);
    setEditing(null);
  };
  if (editing) {
    return (
      <li className="post editing">
        <form onSubmit={save}>
          <input name="edit-title" value={editing.title} onChange={(e) => setEditing({ ...editing, title: e.target.value })} />
          <textarea name="edit-content" value={editing.content} rows={3}
            onChange={(e) => setEditing({ ...editing, content: e.target.value })} />
          <button type="submit">Save</button> <button type="button" onClick={() => setEditing(null)}>Cancel</button>
        </form>
      </li>
    );
  }
  return (
    <li className="post" data-id={post.id}>
      <h3>{post.title}</h3>
      {post.content && <p>{post.content}</p>}
      <footer className="muted">
        {post.author ?? 'someone'} · {post.updated_at ? new Date(post.updated_at).toLocaleString() : ''}
        <span className="spacer" />
        <button onClick={() => setEditing({ title: post.title, content: post.content })}>Edit</button>
        <button onClick={() => db.exec('DELETE FROM posts WHERE id = ?', [post.id])}>Delete</button>
      </footer>
    </li>
  );
}
