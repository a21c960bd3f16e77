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

-- ---- v1.1: several servers on one database, exactly-once sends --------------------------------
-- Everything below is additive: new tables and a function; the seed's tables are not touched.

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

-- Every other writer of messages (the seed's server, a script, psql) is put in the same order:
-- before an INSERT draws its first id it takes the lock chat_store_messages() takes, held to
-- COMMIT, and its last id is announced on commit. So ids stay commit order for every writer, and
-- a row the seed's server inserts reaches every server live, and in every server's history, like
-- any other (without this, a row committed after a later id had been delivered would be in no
-- server's live stream nor in-memory history). Statement-level BEFORE triggers run before the
-- statement draws any id from the sequence. chat_store_messages() holds the lock already (taking
-- it again in one transaction is free), and PostgreSQL folds its identical NOTIFY into one.
CREATE OR REPLACE FUNCTION chat_messages_lock() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(1667785076, 1);
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION chat_messages_announce() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    last_id INTEGER;
BEGIN
    SELECT max(id) INTO last_id FROM chat_inserted_messages;
    IF last_id IS NOT NULL THEN
        PERFORM pg_notify('chat_messages', last_id::text);
    END IF;
    RETURN NULL;
END
$fn$;

-- Created once (not replaced at every start-up, which would lock the table while servers run).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'chat_messages_lock' AND tgrelid = 'messages'::regclass) THEN
        CREATE TRIGGER chat_messages_lock BEFORE INSERT ON messages
            FOR EACH STATEMENT EXECUTE FUNCTION chat_messages_lock();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'chat_messages_announce' AND tgrelid = 'messages'::regclass) THEN
        CREATE TRIGGER chat_messages_announce AFTER INSERT ON messages
            REFERENCING NEW TABLE AS chat_inserted_messages
            FOR EACH STATEMENT EXECUTE FUNCTION chat_messages_announce();
    END IF;
END
$$;
