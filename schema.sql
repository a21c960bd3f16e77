-- The chat server's schema. The two tables are the seed design's, column for column (the contract's
-- "storage" section), so a database made and filled by the seed's server is served as is and the
-- seed's server reads what this one stores. Everything after them is additive: nothing here renames,
-- drops or adds a required column to the seed's tables. Applied at start-up and by
-- `deno task db:setup`, in one transaction (on a PostgreSQL server under an advisory lock, so that
-- several servers starting at once do not race), after lib/store/schema.ts has brought a database of
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
    -- No foreign key: it would cost a check per row on the hot path; an id whose message is gone
    -- simply no longer matches (chat_store_messages joins messages).
    message_id INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    PRIMARY KEY (sender_id, client_msg_id)
);
-- BRIN: rows arrive in created_at order, so a tiny index serves the pruning at almost no cost per insert.
CREATE INDEX IF NOT EXISTS chat_client_msg_ids_created_brin ON chat_client_msg_ids USING brin (created_at);

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
-- (sender, client_msg_id), and for duplicates the original text. It also returns the committed
-- rows of other writers that the calling server has not delivered yet (ids above p_seen_through,
-- up to the batch's own; at most 1000, else gap_complete is false), so that the server can
-- deliver the batch in order without another round trip, even if the database is gone just after.
--
-- Every writer takes the same transaction-level advisory lock before it inserts and holds it to
-- COMMIT, so ids are handed out and committed in one order: when a batch commits, every smaller
-- id is committed or never will be. NOTIFY (sent only on commit, delivered in commit order)
-- announces the batch's last id; servers read the rows themselves (payloads stay tiny).
-- Input rows are unique by (sender, client_msg_id): the server merges duplicates within a batch.
-- (An earlier version took four arguments and returned no gap; a database that has it keeps it,
-- for servers of that version during a rolling upgrade.)
CREATE OR REPLACE FUNCTION chat_store_messages(
    p_sender_ids INTEGER[],
    p_sender_names TEXT[],
    p_texts TEXT[],
    p_client_msg_ids TEXT[],
    p_seen_through BIGINT,
    OUT ids INTEGER[],
    OUT stamps TEXT[],
    OUT duplicates BOOLEAN[],
    OUT original_texts TEXT[],
    OUT gap_ids INTEGER[],
    OUT gap_senders TEXT[],
    OUT gap_texts TEXT[],
    OUT gap_stamps TEXT[],
    OUT gap_complete BOOLEAN,
    OUT through_id INTEGER
) LANGUAGE plpgsql AS $fn$
-- Each statement has one obvious plan (an index probe per row, or a scan of the input), so the
-- generic plans PL/pgSQL caches stay good whatever the batch size.
DECLARE
    n INTEGER := coalesce(cardinality(p_sender_ids), 0);
    stored_at TIMESTAMP := now() AT TIME ZONE 'UTC';
    stamp TEXT := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS');
    with_ids INTEGER := n - coalesce(array_length(array_positions(p_client_msg_ids, NULL), 1), 0);
    claimed INTEGER := 0;
    r RECORD;
    id_sequence REGCLASS := pg_get_serial_sequence('messages', 'id')::REGCLASS;
    drawn INTEGER[];
    gap_rows INTEGER;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785076, 1);
    -- Every row's id, drawn now and in input order (a duplicate's id is never used: a hole).
    ids := ARRAY(SELECT nextval(id_sequence)::INTEGER FROM generate_series(1, n));
    drawn := ids;
    through_id := (SELECT max(d) FROM unnest(drawn) AS d);
    stamps := array_fill(stamp, ARRAY[n]);
    duplicates := array_fill(false, ARRAY[n]);
    original_texts := array_fill(NULL::TEXT, ARRAY[n]);
    IF with_ids > 0 THEN
        -- Claiming an id is one unique-index insert; only ids someone claimed before need a look-up.
        WITH fresh AS (
            INSERT INTO chat_client_msg_ids (sender_id, client_msg_id, message_id)
            SELECT t.sender_id, t.client_msg_id, ids[t.ord]
            FROM unnest(p_sender_ids, p_client_msg_ids) WITH ORDINALITY AS t(sender_id, client_msg_id, ord)
            WHERE t.client_msg_id IS NOT NULL
            ON CONFLICT (sender_id, client_msg_id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) INTO claimed FROM fresh;
        IF claimed < with_ids THEN
            -- Ids claimed before this batch: answer with the original message. If that message
            -- was deleted since, the id passes to this one.
            FOR r IN
                SELECT t.ord, t.sender_id, t.client_msg_id, e.message_id, m.id, m.timestamp, m.message_text
                FROM unnest(p_sender_ids, p_client_msg_ids) WITH ORDINALITY AS t(sender_id, client_msg_id, ord)
                CROSS JOIN LATERAL (
                    SELECT c.message_id FROM chat_client_msg_ids c
                    WHERE c.sender_id = t.sender_id AND c.client_msg_id = t.client_msg_id
                ) e
                LEFT JOIN LATERAL (SELECT * FROM messages WHERE messages.id = e.message_id) m ON true
                WHERE t.client_msg_id IS NOT NULL AND e.message_id <> ids[t.ord]
            LOOP
                IF r.id IS NULL THEN
                    UPDATE chat_client_msg_ids SET message_id = ids[r.ord], created_at = stored_at
                    WHERE sender_id = r.sender_id AND client_msg_id = r.client_msg_id;
                ELSE
                    ids[r.ord] := r.id;
                    stamps[r.ord] := to_char(r.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS');
                    duplicates[r.ord] := true;
                    original_texts[r.ord] := r.message_text;
                END IF;
            END LOOP;
        END IF;
    END IF;
    INSERT INTO messages (id, sender_id, sender_username, message_text, timestamp)
    SELECT ids[t.ord], t.sender_id, t.sender_username, t.message_text, stored_at
    FROM unnest(p_sender_ids, p_sender_names, p_texts) WITH ORDINALITY AS t(sender_id, sender_username, message_text, ord)
    WHERE NOT duplicates[t.ord];
    -- The trigger chat_messages_announce (below) NOTIFYs the batch's last id.

    -- Under the lock every smaller id is committed or never will be: the rows the caller has not
    -- seen are exactly these (the drawn ids are this batch's own rows, or holes).
    SELECT coalesce(array_agg(g.id ORDER BY g.id), '{}'), coalesce(array_agg(g.sender_username ORDER BY g.id), '{}'),
           coalesce(array_agg(g.message_text ORDER BY g.id), '{}'),
           coalesce(array_agg(to_char(g.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') ORDER BY g.id), '{}'), count(*)
    INTO gap_ids, gap_senders, gap_texts, gap_stamps, gap_rows
    FROM (
        SELECT m.id, m.sender_username, m.message_text, m.timestamp FROM messages m
        WHERE m.id > p_seen_through AND m.id <= through_id
          AND NOT (m.id = ANY (drawn))
        ORDER BY m.id LIMIT 1001
    ) g;
    gap_complete := gap_rows <= 1000;
    IF NOT gap_complete THEN
        gap_ids := '{}'; gap_senders := '{}'; gap_texts := '{}'; gap_stamps := '{}';
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
