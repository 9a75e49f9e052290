-- The demo business schema: the same tables the classic go-oversync example server uses, plus an owner_id column
-- filled by materialisation. Every key is scoped by its owner: primary keys are (owner_id, id) and FKs reference
-- (owner_id, id), so one user's ids never collide with another's (a user who writes another's ids first gets
-- rows of their own) and no user's row can point at another's. FKs are deferrable so a batch can arrive in any
-- order within one transaction. Idempotent: run at every start-up. A database made by an older version of this
-- file (keys on id alone) keeps its tables; the server warns at start-up, and `DROP SCHEMA business CASCADE`
-- recreates them.
CREATE SCHEMA IF NOT EXISTS business;

CREATE TABLE IF NOT EXISTS business.users (
  owner_id text NOT NULL,
  id uuid NOT NULL,
  name text NOT NULL,
  email text NOT NULL,
  created_at timestamptz,
  updated_at timestamptz,
  PRIMARY KEY (owner_id, id)
);

CREATE TABLE IF NOT EXISTS business.posts (
  owner_id text NOT NULL,
  id uuid NOT NULL,
  title text NOT NULL,
  content text NOT NULL,
  author_id uuid,
  created_at timestamptz,
  updated_at timestamptz,
  PRIMARY KEY (owner_id, id),
  FOREIGN KEY (owner_id, author_id) REFERENCES business.users (owner_id, id) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE IF NOT EXISTS business.files (
  owner_id text NOT NULL,
  id uuid NOT NULL,
  name text NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (owner_id, id)
);

CREATE TABLE IF NOT EXISTS business.file_reviews (
  owner_id text NOT NULL,
  id uuid NOT NULL,
  review text NOT NULL,
  file_id uuid,
  PRIMARY KEY (owner_id, id),
  FOREIGN KEY (owner_id, file_id) REFERENCES business.files (owner_id, id) DEFERRABLE INITIALLY DEFERRED
);

-- The team journal's shared posts (docs/sharing.md): a row belongs to the team named in team_id, which is also
-- its owner column; NULL keeps it a private draft (synced, not materialised). Keys are global: a post is one row
-- whichever member wrote it.
CREATE TABLE IF NOT EXISTS business.team_posts (
  id uuid PRIMARY KEY,
  team_id text,
  title text NOT NULL DEFAULT '',
  content text NOT NULL DEFAULT '',
  author_name text,
  created_at timestamptz,
  updated_at timestamptz
);

CREATE INDEX IF NOT EXISTS posts_author_id ON business.posts (owner_id, author_id);
CREATE INDEX IF NOT EXISTS file_reviews_file_id ON business.file_reviews (owner_id, file_id);
