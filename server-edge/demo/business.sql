-- The demo business schema: the same tables the classic go-oversync example server uses, plus an owner_id column
-- filled by materialisation so one user can never overwrite another's row. FKs are deferrable so a batch can
-- arrive in any order within one transaction. Idempotent: run at every start-up.
CREATE SCHEMA IF NOT EXISTS business;

CREATE TABLE IF NOT EXISTS business.users (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  created_at timestamptz,
  updated_at timestamptz,
  owner_id text
);

CREATE TABLE IF NOT EXISTS business.posts (
  id uuid PRIMARY KEY,
  title text NOT NULL,
  content text NOT NULL,
  author_id uuid REFERENCES business.users(id) DEFERRABLE INITIALLY DEFERRED,
  created_at timestamptz,
  updated_at timestamptz,
  owner_id text
);

CREATE TABLE IF NOT EXISTS business.files (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  data bytea NOT NULL,
  owner_id text
);

CREATE TABLE IF NOT EXISTS business.file_reviews (
  id uuid PRIMARY KEY,
  review text NOT NULL,
  file_id uuid REFERENCES business.files(id) DEFERRABLE INITIALLY DEFERRED,
  owner_id text
);

CREATE INDEX IF NOT EXISTS posts_author_id ON business.posts (author_id);
CREATE INDEX IF NOT EXISTS file_reviews_file_id ON business.file_reviews (file_id);
