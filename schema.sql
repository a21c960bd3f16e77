-- The chat server's schema. The two tables are the seed design's, column for column (the contract's
-- "storage" section), so a database made and filled by the seed's server is served as is and the
-- seed's server reads what this one stores. Everything after them is additive: nothing here renames,
-- drops or adds a required column to the seed's tables. Applied at start-up and by
-- `deno task db:setup`, in one transaction (on a PostgreSQL server under an advisory lock, so that
-- several servers starting at once do not race), after lib/migrate.ts has brought a database of
-- this project's earlier layout up to date; safe to run again.

CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS messages (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER REFERENCES users(id),
    sender_username VARCHAR(50) NOT NULL,
    message_text TEXT NOT NULL,
    timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

-- Usernames are unique case-insensitively ("John" and "john" cannot both exist); logins look
-- names up through this index. A database that already holds such a pair keeps working: the
-- index is then skipped with a warning, and registration checks in its query instead.
DO $$
BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS users_username_lower_key ON users (lower(username));
EXCEPTION WHEN unique_violation THEN
    RAISE WARNING 'users_username_lower_key not created: usernames differing only in case exist';
END
$$;

-- ===== Additive objects (v1.1 and later) go below this line =====
-- Indexes, new tables and functions only; a new column on users or messages must be nullable or
-- defaulted (the seed's server does not write it). Each statement idempotent (IF NOT EXISTS,
-- CREATE OR REPLACE), since this whole file runs at every start-up.
