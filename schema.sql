-- The chat server's schema. The two tables are the seed design's, unchanged, so a database made
-- by it works as is; everything after them is additive. Applied at start-up and by
-- `deno task db:setup`, in one transaction (on a PostgreSQL server under an advisory lock, so that
-- several servers starting at once do not race); safe to run again.

CREATE TABLE IF NOT EXISTS users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) UNIQUE NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS messages (
    id SERIAL PRIMARY KEY,
    sender_id INTEGER REFERENCES users(id),
    content TEXT NOT NULL,
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
