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

-- Exactly-once sends: the first message a user sent with a given client_msg_id. Kept at least
-- 7 days (pruned in the background after that).
CREATE TABLE IF NOT EXISTS chat_client_msg_ids (
    sender_id INTEGER NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (sender_id, client_msg_id)
);
CREATE INDEX IF NOT EXISTS chat_client_msg_ids_created_at ON chat_client_msg_ids (created_at);

-- Presence across servers: each live server's logged-in usernames, refreshed every few seconds.
-- A row whose seen_at is older than 30 s belongs to a server that died.
CREATE TABLE IF NOT EXISTS chat_servers (
    server_id TEXT PRIMARY KEY,
    usernames TEXT[] NOT NULL DEFAULT '{}',
    seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Failed-login throttling across servers: a token bucket per key ('user:<name>' or 'addr:<ip>').
CREATE TABLE IF NOT EXISTS chat_login_failures (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Stores one batch of messages in one round trip, in input order, and returns per input row its
-- message id, timestamp, whether it was a duplicate of an earlier send with the same
-- (sender, client_msg_id), and for duplicates the original text.
--
-- Every writer takes the same transaction-level advisory lock before it inserts and holds it to
-- COMMIT, so ids are handed out and committed in one order: when a batch commits, every smaller
-- id is committed or never will be. NOTIFY (sent only on commit, delivered in commit order)
-- announces the batch's last id; servers read the rows themselves (payloads stay tiny).
-- Input rows are unique by (sender, client_msg_id): the server merges duplicates within a batch.
CREATE OR REPLACE FUNCTION chat_store_messages(
    p_sender_ids INTEGER[],
    p_sender_names TEXT[],
    p_texts TEXT[],
    p_client_msg_ids TEXT[],
    OUT ids INTEGER[],
    OUT stamps TEXT[],
    OUT duplicates BOOLEAN[],
    OUT original_texts TEXT[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    last_id INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785076, 1);
    WITH input AS (
        SELECT t.sender_id, t.sender_username, t.message_text, t.client_msg_id, t.ord
        FROM unnest(p_sender_ids, p_sender_names, p_texts, p_client_msg_ids)
            WITH ORDINALITY AS t(sender_id, sender_username, message_text, client_msg_id, ord)
    ),
    earlier AS (
        SELECT i.ord, m.id, m.timestamp, m.message_text
        FROM input i
        JOIN chat_client_msg_ids c ON c.sender_id = i.sender_id AND c.client_msg_id = i.client_msg_id
        JOIN messages m ON m.id = c.message_id
    ),
    fresh AS (
        SELECT i.*, row_number() OVER (ORDER BY i.ord) AS rank
        FROM input i
        WHERE NOT EXISTS (SELECT 1 FROM earlier e WHERE e.ord = i.ord)
    ),
    inserted AS (
        -- Ids are drawn in the order rows leave this SELECT, so the k-th id is the k-th fresh row.
        INSERT INTO messages (sender_id, sender_username, message_text, timestamp)
        SELECT f.sender_id, f.sender_username, f.message_text, now() AT TIME ZONE 'UTC'
        FROM fresh f ORDER BY f.ord
        RETURNING messages.id, messages.timestamp
    ),
    stored AS (
        SELECT f.ord, n.id, n.timestamp, f.sender_id, f.client_msg_id
        FROM fresh f
        JOIN (SELECT ins.id, ins.timestamp, row_number() OVER (ORDER BY ins.id) AS rank FROM inserted ins) n
            ON n.rank = f.rank
    ),
    remembered AS (
        INSERT INTO chat_client_msg_ids (sender_id, client_msg_id, message_id)
        SELECT s.sender_id, s.client_msg_id, s.id FROM stored s WHERE s.client_msg_id IS NOT NULL
    ),
    answer AS (
        SELECT s.ord, s.id, s.timestamp, false AS duplicate, NULL::text AS message_text FROM stored s
        UNION ALL
        SELECT e.ord, e.id, e.timestamp, true, e.message_text FROM earlier e
    )
    SELECT array_agg(a.id ORDER BY a.ord),
           array_agg(to_char(a.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') ORDER BY a.ord),
           array_agg(a.duplicate ORDER BY a.ord),
           array_agg(a.message_text ORDER BY a.ord),
           max(a.id) FILTER (WHERE NOT a.duplicate)
      INTO ids, stamps, duplicates, original_texts, last_id
      FROM answer a;
    IF last_id IS NOT NULL THEN
        PERFORM pg_notify('chat_messages', last_id::text);
    END IF;
END
$fn$;
