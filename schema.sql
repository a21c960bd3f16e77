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
    -- simply no longer matches (chat_store_batch joins messages and chat_room_events).
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

-- Login and registration throttling across servers: a token bucket per key ('user:<name>',
-- 'addr:<ip>' for logins, 'register:<ip>' for registrations).
CREATE TABLE IF NOT EXISTS chat_login_failures (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Takes one token from each of the buckets p_keys (bursts and rates per second aligned with them),
-- all or none, atomically across servers: the attempt is counted when it starts, so concurrent
-- attempts get no more than sequential ones. Returns 0 when taken, else the milliseconds until
-- every bucket has a token again. A refused attempt takes nothing (the buckets never go below
-- zero, so one burst cannot lock a user out for longer than one refill of a token).
CREATE OR REPLACE FUNCTION chat_bucket_take(p_keys TEXT[], p_bursts FLOAT8[], p_rates FLOAT8[])
RETURNS INTEGER LANGUAGE plpgsql AS $fn$
DECLARE
    wait INTEGER := 0;
    r RECORD;
BEGIN
    INSERT INTO chat_login_failures (key, tokens, updated_at)
    SELECT t.key, t.burst, now() FROM unnest(p_keys, p_bursts) AS t(key, burst) ORDER BY t.key
    ON CONFLICT (key) DO NOTHING;
    FOR r IN
        SELECT f.key, t.rate, LEAST(t.burst, f.tokens + extract(epoch FROM now() - f.updated_at)::FLOAT8 * t.rate) AS now_tokens
        FROM chat_login_failures f JOIN unnest(p_keys, p_bursts, p_rates) AS t(key, burst, rate) ON t.key = f.key
        ORDER BY f.key FOR UPDATE OF f
    LOOP
        IF r.now_tokens < 1 THEN
            wait := GREATEST(wait, ceil((1 - r.now_tokens) / r.rate * 1000)::INTEGER);
        END IF;
    END LOOP;
    IF wait = 0 THEN
        UPDATE chat_login_failures f
        SET tokens = LEAST(t.burst, f.tokens + extract(epoch FROM now() - f.updated_at)::FLOAT8 * t.rate) - 1,
            updated_at = now()
        FROM unnest(p_keys, p_bursts, p_rates) AS t(key, burst, rate) WHERE f.key = t.key;
    END IF;
    RETURN wait;
END
$fn$;

-- Gives one token back to a bucket (an attempt that turned out well), up to its burst.
CREATE OR REPLACE FUNCTION chat_bucket_give(p_key TEXT, p_burst FLOAT8, p_rate FLOAT8)
RETURNS VOID LANGUAGE sql AS $fn$
    UPDATE chat_login_failures f
    SET tokens = LEAST(p_burst, f.tokens + extract(epoch FROM now() - f.updated_at)::FLOAT8 * p_rate + 1),
        updated_at = now()
    WHERE f.key = p_key
$fn$;

-- ===== Rooms and direct messages (protocol v2) =====
-- Room events never go into messages: the seed's server reads it unfiltered, and v1 history must
-- never show a private room's text. The lobby stays in messages, with its one global order.

-- A room: its kind, its name (a DM's is empty: each member sees the other's name), and its head:
-- last_id is the id of its newest event. Ids are drawn by incrementing it while the row is locked,
-- and the lock is held to COMMIT, so a room's id order is its commit order, with no gap, and
-- rooms never wait on each other. `messages` counts message events (for unread counts).
CREATE TABLE IF NOT EXISTS chat_rooms (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('public', 'private', 'dm')),
    name TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT 'shared' CHECK (history IN ('shared', 'joined')),
    last_id BIGINT NOT NULL DEFAULT 0,
    messages BIGINT NOT NULL DEFAULT 0,
    -- Members (owner or member); invitations not counted.
    members INTEGER NOT NULL DEFAULT 0,
    -- A DM's pair, 'smaller user id:larger user id': one room per pair.
    dm_key TEXT UNIQUE,
    created_by INTEGER,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
-- Public names are unique regardless of case; the public list pages through them in this order.
CREATE UNIQUE INDEX IF NOT EXISTS chat_rooms_public_name ON chat_rooms ((lower(name) COLLATE "C")) WHERE kind = 'public';

-- Who belongs to a room: role owner, member or invited. joined_id is the id of the member's latest
-- join event (what a history:"joined" room shows from); since orders members by how long they
-- have been in (the longest-standing member inherits ownership). read_id is the read marker, and
-- read_messages the room's message count at it.
CREATE TABLE IF NOT EXISTS chat_room_members (
    room_id TEXT NOT NULL REFERENCES chat_rooms (id),
    user_id INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'member', 'invited')),
    joined_id BIGINT,
    since BIGINT NOT NULL,
    read_id BIGINT NOT NULL DEFAULT 0,
    read_messages BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS chat_room_members_user ON chat_room_members (user_id, room_id);

-- A room's events: messages and membership events (join, leave, invite, kick), ids 1, 2, 3, …
-- within the room. user_id/username: the sender, or the member the event is about; by_username:
-- who made a membership event; msg_no: the room's message count through this event.
CREATE TABLE IF NOT EXISTS chat_room_events (
    room_id TEXT NOT NULL,
    id BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'join', 'leave', 'invite', 'kick')),
    user_id INTEGER,
    username TEXT NOT NULL,
    body TEXT,
    by_username TEXT,
    created_at TIMESTAMP NOT NULL,
    msg_no BIGINT NOT NULL,
    PRIMARY KEY (room_id, id)
);

-- The lobby's read markers (a room's are on its membership).
CREATE TABLE IF NOT EXISTS chat_lobby_markers (
    user_id INTEGER PRIMARY KEY,
    read_id BIGINT NOT NULL
);

-- A client_msg_id is unique per user across the lobby and every room: its original is a lobby
-- message (room_id NULL) or a room's event.
ALTER TABLE chat_client_msg_ids ADD COLUMN IF NOT EXISTS room_id TEXT;

-- Servers on the NATS bus announce their messages there, not by NOTIFY (which takes a lock at
-- every commit, cluster-wide): their connections set chat.quiet = on, and their lobby and room
-- messages do not NOTIFY. Membership events still do (they are rare, and a server that does not
-- follow the room must learn of them in commit order); every other writer (the seed's server,
-- psql) still does.
CREATE OR REPLACE FUNCTION chat_quiet() RETURNS BOOLEAN LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(current_setting('chat.quiet', true), '') = 'on'
$fn$;

-- Appends a membership event to a room whose row this transaction holds locked, and announces it
-- (room, id, and the member it is about: their server may not follow the room yet, and learns of
-- it in commit order, even on the NATS bus). Returns its id.
CREATE OR REPLACE FUNCTION chat_room_append(
    p_room TEXT, p_kind TEXT, p_user_id INTEGER, p_username TEXT, p_body TEXT, p_by TEXT, p_at TIMESTAMP
) RETURNS BIGINT LANGUAGE plpgsql AS $fn$
DECLARE
    next_id BIGINT;
    message_count BIGINT;
BEGIN
    UPDATE chat_rooms SET last_id = last_id + 1, messages = messages + (p_kind = 'message')::INTEGER
    WHERE id = p_room RETURNING last_id, messages INTO next_id, message_count;
    INSERT INTO chat_room_events (room_id, id, kind, user_id, username, body, by_username, created_at, msg_no)
    VALUES (p_room, next_id, p_kind, p_user_id, p_username, p_body, p_by, p_at, message_count);
    PERFORM pg_notify('chat_rooms', p_room || ':' || next_id || ':' || p_user_id);
    RETURN next_id;
END
$fn$;

-- Membership changes. Each takes the room's row lock (after the user locks it needs, so that two
-- changes never wait on each other in a circle), checks that the room and the roles it was asked
-- for are still what the server decided on (else 'changed': the server decides again), applies
-- the change and appends its events. They return one row per event appended, or one row with the
-- status alone. Which requests are allowed is decided in the server (lib/chat/room_access.ts);
-- these functions only keep the state consistent under concurrency.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'chat_room_change') THEN
        CREATE TYPE chat_room_change AS (
            status TEXT, room_id TEXT, id BIGINT, kind TEXT, user_id INTEGER, username TEXT, by_username TEXT, stamp TEXT
        );
    END IF;
END
$$;

-- The rooms a user has (joined and invitations), for MAX_ROOMS_PER_USER.
CREATE OR REPLACE FUNCTION chat_user_room_count(p_user_id INTEGER) RETURNS INTEGER LANGUAGE sql STABLE AS $fn$
    SELECT count(*)::INTEGER FROM chat_room_members WHERE user_id = p_user_id
$fn$;

CREATE OR REPLACE FUNCTION chat_room_event_change(p_status TEXT, p_room TEXT, p_id BIGINT)
RETURNS chat_room_change LANGUAGE sql STABLE AS $fn$
    SELECT p_status, e.room_id, e.id, e.kind, e.user_id, e.username, e.by_username,
           to_char(e.created_at, 'YYYY-MM-DD"T"HH24:MI:SS')
    FROM chat_room_events e WHERE e.room_id = p_room AND e.id = p_id
$fn$;

CREATE OR REPLACE FUNCTION chat_room_create(
    p_room TEXT, p_kind TEXT, p_name TEXT, p_history TEXT, p_user_id INTEGER, p_username TEXT, p_max_rooms INTEGER
) RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    event_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785077, p_user_id);
    IF chat_user_room_count(p_user_id) >= p_max_rooms THEN
        RETURN NEXT ROW('limit_exceeded', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    INSERT INTO chat_rooms (id, kind, name, history, created_by, created_at)
    VALUES (p_room, p_kind, p_name, p_history, p_user_id, at)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN NEXT ROW('name_taken', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    PERFORM 1 FROM chat_rooms WHERE id = p_room FOR UPDATE;
    event_id := chat_room_append(p_room, 'join', p_user_id, p_username, NULL, p_username, at);
    INSERT INTO chat_room_members (room_id, user_id, role, joined_id, since, read_id, read_messages)
    VALUES (p_room, p_user_id, 'owner', event_id, event_id, event_id, 0);
    UPDATE chat_rooms SET members = 1 WHERE id = p_room;
    RETURN NEXT chat_room_event_change('ok', p_room, event_id);
END
$fn$;

-- Joins a public room, or a private room the user is invited to (p_role: the role the server saw,
-- '' for none).
CREATE OR REPLACE FUNCTION chat_room_join(
    p_room TEXT, p_user_id INTEGER, p_username TEXT, p_role TEXT, p_max_rooms INTEGER, p_max_members INTEGER
) RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    had_role TEXT;
    room RECORD;
    event_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785077, p_user_id);
    SELECT * INTO room FROM chat_rooms WHERE id = p_room FOR UPDATE;
    SELECT role INTO had_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_user_id;
    IF room.id IS NULL OR coalesce(had_role, '') <> p_role THEN
        RETURN NEXT ROW('changed', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    IF had_role IS NULL AND chat_user_room_count(p_user_id) >= p_max_rooms THEN
        RETURN NEXT ROW('limit_exceeded', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    IF room.members >= p_max_members THEN
        RETURN NEXT ROW('limit_exceeded', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    event_id := chat_room_append(p_room, 'join', p_user_id, p_username, NULL, p_username, at);
    -- The marker starts at the join: what came before is history, not unread.
    INSERT INTO chat_room_members (room_id, user_id, role, joined_id, since, read_id, read_messages)
    VALUES (p_room, p_user_id, 'member', event_id, event_id, event_id, room.messages)
    ON CONFLICT (room_id, user_id) DO UPDATE
    SET role = 'member', joined_id = event_id, since = event_id, read_id = event_id, read_messages = room.messages;
    UPDATE chat_rooms SET members = members + 1 WHERE id = p_room;
    RETURN NEXT chat_room_event_change('ok', p_room, event_id);
END
$fn$;

-- Leaves a room (or declines an invitation). An owner who leaves hands ownership to the
-- longest-standing member.
CREATE OR REPLACE FUNCTION chat_room_leave(p_room TEXT, p_user_id INTEGER, p_username TEXT, p_role TEXT)
RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    had_role TEXT;
    event_id BIGINT;
BEGIN
    PERFORM 1 FROM chat_rooms WHERE id = p_room FOR UPDATE;
    SELECT role INTO had_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_user_id;
    IF had_role IS NULL OR had_role <> p_role THEN
        RETURN NEXT ROW('changed', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    event_id := chat_room_append(p_room, 'leave', p_user_id, p_username, NULL, p_username, at);
    DELETE FROM chat_room_members WHERE room_id = p_room AND user_id = p_user_id;
    IF had_role <> 'invited' THEN
        UPDATE chat_rooms SET members = members - 1 WHERE id = p_room;
    END IF;
    IF had_role = 'owner' THEN
        UPDATE chat_room_members SET role = 'owner'
        WHERE room_id = p_room AND user_id = (
            SELECT user_id FROM chat_room_members WHERE room_id = p_room AND role = 'member'
            ORDER BY since, user_id LIMIT 1
        );
    END IF;
    RETURN NEXT chat_room_event_change('ok', p_room, event_id);
END
$fn$;

-- Invites a user (p_target_role: the role the server saw the target have, '' for none: an
-- invitation is only recorded for someone who has none).
CREATE OR REPLACE FUNCTION chat_room_invite(
    p_room TEXT, p_user_id INTEGER, p_username TEXT, p_role TEXT,
    p_target_id INTEGER, p_target_name TEXT, p_max_rooms INTEGER, p_max_members INTEGER
) RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    inviter_role TEXT;
    target_role TEXT;
    pending INTEGER;
    room RECORD;
    event_id BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1667785077, p_target_id);
    SELECT * INTO room FROM chat_rooms WHERE id = p_room FOR UPDATE;
    SELECT role INTO inviter_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_user_id;
    SELECT role INTO target_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_target_id;
    IF room.id IS NULL OR coalesce(inviter_role, '') <> p_role OR target_role IS NOT NULL THEN
        RETURN NEXT ROW(CASE WHEN target_role IS NOT NULL AND coalesce(inviter_role, '') = p_role THEN 'noop' ELSE 'changed' END,
                        NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    SELECT count(*) INTO pending FROM chat_room_members WHERE room_id = p_room AND role = 'invited';
    IF chat_user_room_count(p_target_id) >= p_max_rooms OR room.members + pending >= p_max_members THEN
        RETURN NEXT ROW('limit_exceeded', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    event_id := chat_room_append(p_room, 'invite', p_target_id, p_target_name, NULL, p_username, at);
    INSERT INTO chat_room_members (room_id, user_id, role, joined_id, since, read_id, read_messages)
    VALUES (p_room, p_target_id, 'invited', NULL, event_id, event_id, room.messages);
    RETURN NEXT chat_room_event_change('ok', p_room, event_id);
END
$fn$;

-- Removes a member or an invitation (p_role: the owner's role as the server saw it).
CREATE OR REPLACE FUNCTION chat_room_kick(
    p_room TEXT, p_user_id INTEGER, p_username TEXT, p_role TEXT, p_target_id INTEGER, p_target_name TEXT
) RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    kicker_role TEXT;
    target_role TEXT;
    event_id BIGINT;
BEGIN
    PERFORM 1 FROM chat_rooms WHERE id = p_room FOR UPDATE;
    SELECT role INTO kicker_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_user_id;
    SELECT role INTO target_role FROM chat_room_members WHERE room_id = p_room AND user_id = p_target_id;
    IF coalesce(kicker_role, '') <> p_role THEN
        RETURN NEXT ROW('changed', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    IF target_role IS NULL OR target_role = 'owner' THEN
        RETURN NEXT ROW('not_member', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    event_id := chat_room_append(p_room, 'kick', p_target_id, p_target_name, NULL, p_username, at);
    DELETE FROM chat_room_members WHERE room_id = p_room AND user_id = p_target_id;
    IF target_role = 'member' THEN
        UPDATE chat_rooms SET members = members - 1 WHERE id = p_room;
    END IF;
    RETURN NEXT chat_room_event_change('ok', p_room, event_id);
END
$fn$;

-- The DM room of a pair, made on first use: a join for the opener (id 1), then for the peer (id 2).
-- p_room is the id to give it if it is made. Status 'ok' when made (two events), 'exists' with the
-- room's id otherwise.
CREATE OR REPLACE FUNCTION chat_dm_open(
    p_room TEXT, p_user_id INTEGER, p_username TEXT, p_peer_id INTEGER, p_peer_name TEXT, p_max_rooms INTEGER
) RETURNS SETOF chat_room_change LANGUAGE plpgsql AS $fn$
DECLARE
    at TIMESTAMP := now() AT TIME ZONE 'UTC';
    pair TEXT := least(p_user_id, p_peer_id) || ':' || greatest(p_user_id, p_peer_id);
    existing TEXT;
    first_id BIGINT;
    second_id BIGINT;
BEGIN
    SELECT id INTO existing FROM chat_rooms WHERE dm_key = pair;
    IF existing IS NOT NULL THEN
        RETURN NEXT ROW('exists', existing, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1667785077, least(p_user_id, p_peer_id));
    PERFORM pg_advisory_xact_lock(1667785077, greatest(p_user_id, p_peer_id));
    SELECT id INTO existing FROM chat_rooms WHERE dm_key = pair;
    IF existing IS NOT NULL THEN
        RETURN NEXT ROW('exists', existing, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    IF chat_user_room_count(p_user_id) >= p_max_rooms OR chat_user_room_count(p_peer_id) >= p_max_rooms THEN
        RETURN NEXT ROW('limit_exceeded', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::chat_room_change;
        RETURN;
    END IF;
    INSERT INTO chat_rooms (id, kind, name, history, dm_key, created_by, created_at, members)
    VALUES (p_room, 'dm', '', 'shared', pair, p_user_id, at, 2);
    PERFORM 1 FROM chat_rooms WHERE id = p_room FOR UPDATE;
    first_id := chat_room_append(p_room, 'join', p_user_id, p_username, NULL, p_username, at);
    second_id := chat_room_append(p_room, 'join', p_peer_id, p_peer_name, NULL, p_username, at);
    INSERT INTO chat_room_members (room_id, user_id, role, joined_id, since, read_id, read_messages)
    VALUES (p_room, p_user_id, 'member', first_id, first_id, second_id, 0),
           (p_room, p_peer_id, 'member', second_id, second_id, second_id, 0);
    RETURN NEXT chat_room_event_change('ok', p_room, first_id);
    RETURN NEXT chat_room_event_change('ok', p_room, second_id);
END
$fn$;

-- Stores one batch of sends, to the lobby and to rooms, in one round trip, in input order (p_rooms:
-- NULL for the lobby). Returns per input row its id (in the lobby, or in its room), timestamp and
-- status: 'new'; 'dup' for a repeat of an earlier send with the same (sender, client_msg_id), with
-- the original's id, room and text; 'denied' when the sender was not a member of the room when the
-- message would have taken its id (with the room's kind and the sender's role, or 'missing').
-- It also returns what the calling server has not delivered yet of what this batch's ids follow:
-- the lobby's rows above p_seen_lobby (at most 1000, else gap_complete is false) and, for each
-- room it names in p_seen_rooms, that room's events above its p_seen_ids (rooms with more than
-- 1000 are listed in rg_incomplete instead), so the server delivers the batch in order at once.
--
-- Locks, always in this order, so that batches and membership changes never wait in a circle: the
-- lobby's advisory lock (if the batch has lobby rows); then the client_msg_ids, claimed in
-- (sender, id) order; then the rooms' rows, in id order. The lobby lock is held to COMMIT by every
-- writer of messages (the seed's too, through a trigger), so lobby ids are commit order; a room's
-- row lock, the same for its ids. NOTIFY: the lobby's trigger announces its last id; each room
-- with new events is announced as 'room:last id'. Input rows are unique by (sender,
-- client_msg_id): the server merges repeats within a batch.
-- Its result columns may change between versions, which CREATE OR REPLACE cannot do: it is made
-- anew (in the schema's one transaction, so other servers see the old or the new, never none).
DROP FUNCTION IF EXISTS chat_store_batch(TEXT[], INTEGER[], TEXT[], TEXT[], TEXT[], BIGINT, TEXT[], BIGINT[]);
CREATE OR REPLACE FUNCTION chat_store_batch(
    p_rooms TEXT[],
    p_sender_ids INTEGER[],
    p_sender_names TEXT[],
    p_texts TEXT[],
    p_client_msg_ids TEXT[],
    p_seen_lobby BIGINT,
    p_seen_rooms TEXT[],
    p_seen_ids BIGINT[],
    OUT ids BIGINT[],
    OUT batch_stamp TEXT,
    OUT ex_ords INTEGER[],
    OUT ex_statuses TEXT[],
    OUT ex_stamps TEXT[],
    OUT ex_rooms TEXT[],
    OUT ex_texts TEXT[],
    OUT ex_denials TEXT[],
    OUT lobby_through BIGINT,
    OUT lobby_prev BIGINT,
    OUT gap_rows JSON,
    OUT gap_complete BOOLEAN,
    OUT gap_skipped_through BIGINT,
    OUT room_list TEXT[],
    OUT room_heads BIGINT[],
    OUT rg_rows JSON,
    OUT rg_incomplete TEXT[],
    OUT rg_skipped_through BIGINT[]
) LANGUAGE plpgsql AS $fn$
DECLARE
    n INTEGER := coalesce(cardinality(p_sender_ids), 0);
    stored_at TIMESTAMP := now() AT TIME ZONE 'UTC';
    stamp TEXT := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS');
    lobby_positions INTEGER[] := ARRAY(SELECT t.ord::INTEGER FROM unnest(p_rooms) WITH ORDINALITY AS t(room, ord)
                                       WHERE t.room IS NULL ORDER BY t.ord);
    lobby_n INTEGER := cardinality(lobby_positions);
    drawn BIGINT[] := '{}';
    lobby_sequence REGCLASS;
    claimed_keys TEXT[] := '{}';
    heads_before BIGINT[];
    -- Each locked room's last id and message count before this batch, by room id: a look-up per
    -- row, where a join of the batch's rows with its rooms was planned as a nested loop (the
    -- cached plan's estimates are one row each), rows times rooms.
    head_of JSONB;
    count_of JSONB;
    -- The ids the previous batch on this connection drew in each room: {room: [from, through]}.
    prev_rooms JSONB;
    assigned_ords INTEGER[];
    assigned_ids BIGINT[];
    gap_count INTEGER;
    prev_drawn TEXT[];
    skip_from BIGINT := 0;
    skip_through BIGINT := 0;
    stamps TEXT[];
    statuses TEXT[];
    orig_rooms TEXT[];
    orig_texts TEXT[];
    denials TEXT[];
    r RECORD;
    i INTEGER;
BEGIN
    -- No NULL in the arrays returned (postgres.js reads a NULL element as the text 'NULL'):
    -- 0 and '' stand for none.
    ids := array_fill(0::BIGINT, ARRAY[n]);
    stamps := array_fill(stamp, ARRAY[n]);
    statuses := array_fill('new'::TEXT, ARRAY[n]);
    orig_rooms := array_fill(''::TEXT, ARRAY[n]);
    orig_texts := array_fill(''::TEXT, ARRAY[n]);
    denials := array_fill(''::TEXT, ARRAY[n]);

    -- The lobby: its lock, and every lobby row's id drawn in input order (a duplicate's is a hole).
    IF lobby_n > 0 THEN
        PERFORM pg_advisory_xact_lock(1667785076, 1);
        -- The sequence looked up once: as an argument of nextval() it was looked up again for every row
        -- (a catalog scan each, a tenth of the database's time at full ingest).
        lobby_sequence := pg_get_serial_sequence('messages', 'id')::REGCLASS;
        drawn := ARRAY(SELECT nextval(lobby_sequence) FROM generate_series(1, lobby_n));
        FOR i IN 1 .. lobby_n LOOP
            ids[lobby_positions[i]] := drawn[i];
        END LOOP;
        lobby_through := drawn[lobby_n];
        -- What a bus carrying this batch says it follows: the last row committed before it.
        lobby_prev := coalesce((SELECT max(id) FROM messages WHERE id < drawn[1]), 0);
    END IF;

    -- client_msg_ids: claimed with one unique-index insert each (a room row's id is filled in
    -- below); only those claimed before need a look-up.
    IF EXISTS (SELECT 1 FROM unnest(p_client_msg_ids) AS c WHERE c IS NOT NULL) THEN
        WITH fresh AS (
            INSERT INTO chat_client_msg_ids (sender_id, client_msg_id, message_id, room_id)
            SELECT t.sender_id, t.client_msg_id, coalesce(ids[t.ord], 0), t.room
            FROM unnest(p_sender_ids, p_client_msg_ids, p_rooms) WITH ORDINALITY AS t(sender_id, client_msg_id, room, ord)
            WHERE t.client_msg_id IS NOT NULL
            ORDER BY t.sender_id, t.client_msg_id
            ON CONFLICT (sender_id, client_msg_id) DO NOTHING
            RETURNING sender_id || ':' || client_msg_id AS key
        )
        SELECT coalesce(array_agg(key), '{}') INTO claimed_keys FROM fresh;
        -- Claimed before this batch: answered with the original. If that is gone, the id passes
        -- to this row. Most batches claim every id they carry, and skip the look-up.
        IF cardinality(claimed_keys) < (SELECT count(*) FROM unnest(p_client_msg_ids) AS c WHERE c IS NOT NULL) THEN
        FOR r IN
            SELECT t.ord, t.sender_id, t.client_msg_id, t.room, c.room_id AS orig_room, c.message_id,
                   coalesce(m.id, e.id) AS orig_id, coalesce(m.timestamp, e.created_at) AS orig_at,
                   coalesce(m.message_text, e.body) AS orig_text
            FROM unnest(p_sender_ids, p_client_msg_ids, p_rooms) WITH ORDINALITY AS t(sender_id, client_msg_id, room, ord)
            JOIN chat_client_msg_ids c ON c.sender_id = t.sender_id AND c.client_msg_id = t.client_msg_id
            LEFT JOIN messages m ON c.room_id IS NULL AND m.id = c.message_id
            LEFT JOIN chat_room_events e ON e.room_id = c.room_id AND e.id = c.message_id AND e.kind = 'message'
            WHERE t.client_msg_id IS NOT NULL AND NOT (t.sender_id || ':' || t.client_msg_id = ANY (claimed_keys))
        LOOP
            IF r.orig_id IS NULL THEN
                UPDATE chat_client_msg_ids SET message_id = coalesce(ids[r.ord], 0), room_id = r.room, created_at = stored_at
                WHERE sender_id = r.sender_id AND client_msg_id = r.client_msg_id;
            ELSE
                statuses[r.ord] := 'dup';
                ids[r.ord] := r.orig_id;
                stamps[r.ord] := to_char(r.orig_at, 'YYYY-MM-DD"T"HH24:MI:SS');
                orig_rooms[r.ord] := coalesce(r.orig_room, '');
                orig_texts[r.ord] := r.orig_text;
            END IF;
        END LOOP;
        END IF;
    END IF;

    IF lobby_n > 0 THEN
        INSERT INTO messages (id, sender_id, sender_username, message_text, timestamp)
        SELECT ids[t.ord], t.sender_id, t.sender_username, t.message_text, stored_at
        FROM unnest(p_rooms, p_sender_ids, p_sender_names, p_texts) WITH ORDINALITY
            AS t(room, sender_id, sender_username, message_text, ord)
        WHERE t.room IS NULL AND statuses[t.ord] = 'new';
        -- The trigger chat_messages_announce NOTIFYs the last id. Under the lock every smaller id
        -- is committed or never will be: the rows the caller has not seen are those below the
        -- first drawn id (no other writer can commit one above it before this batch commits: its
        -- INSERT waits for the lock; and a range check, where testing each row against the drawn
        -- ids cost as much as the rest of the batch's reading).
        -- The lobby ids the previous batch on this connection drew (its rows, or holes): its own
        -- delivery carries them, so they are left out here (at full rate every answer would
        -- otherwise repeat the batch before it). The caller treats this answer's gap as complete
        -- only once it has delivered through gap_skipped_through (else it reads). A session
        -- setting, kept only by a committed batch; a new connection starts without one.
        prev_drawn := string_to_array(nullif(current_setting('chat.prev_lobby_drawn', true), ''), ':');
        IF cardinality(prev_drawn) = 2 THEN
            skip_from := prev_drawn[1]::BIGINT;
            skip_through := prev_drawn[2]::BIGINT;
        END IF;
        PERFORM set_config('chat.prev_lobby_drawn', drawn[1] || ':' || drawn[lobby_n], false);
        -- Rows with texts go back as JSON: postgres.js parses a text array character by character
        -- (a string piece per character, a third of the server's garbage at full ingest).
        SELECT coalesce(json_agg(json_build_array(g.id, g.sender_username, g.message_text,
                                                  to_char(g.timestamp, 'YYYY-MM-DD"T"HH24:MI:SS')) ORDER BY g.id), '[]'::json),
               count(*)
        INTO gap_rows, gap_count
        FROM (
            SELECT m.id, m.sender_username, m.message_text, m.timestamp FROM messages m
            WHERE m.id > p_seen_lobby AND m.id < drawn[1] AND NOT (m.id BETWEEN skip_from AND skip_through)
            ORDER BY m.id LIMIT 1001
        ) g;
        gap_complete := gap_count <= 1000;
        gap_skipped_through := CASE WHEN skip_through > p_seen_lobby THEN skip_through ELSE 0 END;
        IF NOT gap_complete THEN
            gap_rows := '[]'::json;
        END IF;
    END IF;

    room_list := ARRAY(SELECT DISTINCT t.room FROM unnest(p_rooms) AS t(room) WHERE t.room IS NOT NULL ORDER BY 1);
    IF cardinality(room_list) > 0 THEN
    -- The rooms' rows, locked in id order; their heads before this batch.
    SELECT array_agg(c.id ORDER BY c.id), array_agg(c.last_id ORDER BY c.id),
           jsonb_object_agg(c.id, c.last_id), jsonb_object_agg(c.id, c.messages)
    INTO room_list, heads_before, head_of, count_of
    FROM (SELECT id, last_id, messages FROM chat_rooms WHERE id = ANY (room_list) ORDER BY id FOR UPDATE) c;
    room_list := coalesce(room_list, '{}');

    -- Membership, decided now that the rooms are locked: a send is accepted only if its sender is
    -- a member at the point its message takes its id.
    FOR r IN
        SELECT t.ord, t.room, t.sender_id, t.client_msg_id, c.kind, m.role
        FROM unnest(p_rooms, p_sender_ids, p_client_msg_ids) WITH ORDINALITY AS t(room, sender_id, client_msg_id, ord)
        LEFT JOIN chat_rooms c ON c.id = t.room
        LEFT JOIN chat_room_members m ON m.room_id = t.room AND m.user_id = t.sender_id
        WHERE t.room IS NOT NULL AND statuses[t.ord] = 'new' AND (m.role IS NULL OR m.role NOT IN ('owner', 'member'))
    LOOP
        statuses[r.ord] := 'denied';
        denials[r.ord] := CASE WHEN r.kind IS NULL THEN 'missing' ELSE r.kind || ':' || coalesce(r.role, '') END;
        IF r.client_msg_id IS NOT NULL THEN
            DELETE FROM chat_client_msg_ids WHERE sender_id = r.sender_id AND client_msg_id = r.client_msg_id AND message_id = 0;
        END IF;
    END LOOP;

    -- Ids: each room's accepted rows take the next ones, in input order, after its head (locked above).
    WITH accepted AS (
        SELECT t.ord, t.room, t.sender_id, t.sender_name, t.body,
               (head_of ->> t.room)::BIGINT + row_number() OVER w AS id,
               (count_of ->> t.room)::BIGINT + row_number() OVER w AS msg_no
        FROM unnest(p_rooms, p_sender_ids, p_sender_names, p_texts) WITH ORDINALITY
            AS t(room, sender_id, sender_name, body, ord)
        WHERE t.room IS NOT NULL AND statuses[t.ord] = 'new'
        WINDOW w AS (PARTITION BY t.room ORDER BY t.ord)
    ),
    counts AS (SELECT room, count(*) AS added FROM accepted GROUP BY room),
    bumped AS (
        UPDATE chat_rooms c SET last_id = c.last_id + counts.added, messages = c.messages + counts.added
        FROM counts WHERE c.id = counts.room
    ),
    inserted AS (
        INSERT INTO chat_room_events (room_id, id, kind, user_id, username, body, by_username, created_at, msg_no)
        SELECT a.room, a.id, 'message', a.sender_id, a.sender_name, a.body, NULL, stored_at, a.msg_no
        FROM accepted a
        RETURNING room_id, id, user_id, msg_no
    ),
    markers AS (
        -- Sending moves the sender's read marker to their message.
        UPDATE chat_room_members m SET read_id = last.id, read_messages = last.msg_no
        FROM (SELECT DISTINCT ON (room_id, user_id) room_id, user_id, id, msg_no FROM inserted
              ORDER BY room_id, user_id, id DESC) last
        WHERE m.room_id = last.room_id AND m.user_id = last.user_id AND m.read_id < last.id
    )
    SELECT coalesce(array_agg(a.ord::INTEGER), '{}'), coalesce(array_agg(a.id), '{}')
    INTO assigned_ords, assigned_ids
    FROM accepted a;
    FOR i IN 1 .. cardinality(assigned_ords) LOOP
        ids[assigned_ords[i]] := assigned_ids[i];
    END LOOP;
    UPDATE chat_client_msg_ids c SET message_id = ids[t.ord]
    FROM unnest(p_rooms, p_sender_ids, p_client_msg_ids) WITH ORDINALITY AS t(room, sender_id, client_msg_id, ord)
    WHERE t.room IS NOT NULL AND t.client_msg_id IS NOT NULL AND statuses[t.ord] = 'new'
      AND c.sender_id = t.sender_id AND c.client_msg_id = t.client_msg_id;

    SELECT array_agg(c.last_id ORDER BY c.id) INTO room_heads FROM chat_rooms c WHERE c.id = ANY (room_list);
    IF NOT chat_quiet() THEN
        FOR i IN 1 .. cardinality(room_list) LOOP
            IF room_heads[i] > heads_before[i] THEN
                PERFORM pg_notify('chat_rooms', room_list[i] || ':' || room_heads[i]);
            END IF;
        END LOOP;
    END IF;

    -- Each followed room's events the caller has not seen, up to this batch's own, but those the
    -- previous batch on this connection drew (its own delivery carries them: with two batches in
    -- flight, most answers would otherwise repeat the rooms of the batch before), as the lobby's
    -- gap does; the caller treats a room's gap as complete only once it has delivered through
    -- rg_skipped_through (else it reads). A room with nothing else to read is not looked at.
    prev_rooms := coalesce(nullif(current_setting('chat.prev_rooms_drawn', true), ''), '{}')::JSONB;
    SELECT coalesce(json_agg(json_build_array(g.room_id, g.id, g.kind, g.user_id, g.username, g.body, g.by_username,
                                              to_char(g.created_at, 'YYYY-MM-DD"T"HH24:MI:SS')) ORDER BY g.room_id, g.id)
                    FILTER (WHERE g.total <= 1000), '[]'::json),
           coalesce(array_agg(DISTINCT g.room_id) FILTER (WHERE g.total > 1000), '{}')
    INTO rg_rows, rg_incomplete
    FROM (
        SELECT e.*, count(*) OVER (PARTITION BY e.room_id) AS total
        FROM unnest(room_list, heads_before) AS h(room, head)
        JOIN unnest(p_seen_rooms, p_seen_ids) AS s(room, seen) ON s.room = h.room
        CROSS JOIN LATERAL (
            SELECT coalesce((prev_rooms -> h.room ->> 0)::BIGINT, 0) AS skip_from,
                   coalesce((prev_rooms -> h.room ->> 1)::BIGINT, -1) AS skip_through
        ) p
        CROSS JOIN LATERAL (
            SELECT * FROM chat_room_events e WHERE e.room_id = h.room AND e.id > s.seen AND e.id <= h.head
                AND NOT (e.id BETWEEN p.skip_from AND p.skip_through)
            ORDER BY e.id LIMIT 1001
        ) e
        WHERE s.seen < h.head AND NOT (s.seen >= p.skip_from - 1 AND h.head <= p.skip_through)
    ) g;
    rg_skipped_through := ARRAY(
        SELECT CASE WHEN coalesce((prev_rooms -> h.room ->> 1)::BIGINT, 0) > coalesce(s.seen, 0)
                    THEN (prev_rooms -> h.room ->> 1)::BIGINT ELSE 0 END
        FROM unnest(room_list) WITH ORDINALITY AS h(room, ord)
        LEFT JOIN unnest(p_seen_rooms, p_seen_ids) AS s(room, seen) ON s.room = h.room
        ORDER BY h.ord);
    PERFORM set_config('chat.prev_rooms_drawn', coalesce(
        (SELECT jsonb_object_agg(d.room, jsonb_build_array(d.before + 1, d.head))
         FROM unnest(room_list, heads_before, room_heads) AS d(room, before, head) WHERE d.head > d.before), '{}')::TEXT, false);
    END IF;

    -- Every row but the exceptions is new, stored at batch_stamp: only the exceptions (duplicates,
    -- refusals) are listed, which keeps the answer small.
    batch_stamp := stamp;
    SELECT coalesce(array_agg(t.ord::INTEGER ORDER BY t.ord), '{}'), coalesce(array_agg(t.status ORDER BY t.ord), '{}'),
           coalesce(array_agg(stamps[t.ord] ORDER BY t.ord), '{}'), coalesce(array_agg(orig_rooms[t.ord] ORDER BY t.ord), '{}'),
           coalesce(array_agg(orig_texts[t.ord] ORDER BY t.ord), '{}'), coalesce(array_agg(denials[t.ord] ORDER BY t.ord), '{}')
    INTO ex_ords, ex_statuses, ex_stamps, ex_rooms, ex_texts, ex_denials
    FROM unnest(statuses) WITH ORDINALITY AS t(status, ord)
    WHERE t.status <> 'new';
END
$fn$;

-- Every other writer of messages (the seed's server, a script, psql) is put in the same order:
-- before an INSERT draws its first id it takes the lock chat_store_batch() takes, held to
-- COMMIT, and its last id is announced on commit. So ids stay commit order for every writer, and
-- a row the seed's server inserts reaches every server live, and in every server's history, like
-- any other (without this, a row committed after a later id had been delivered would be in no
-- server's live stream nor in-memory history). Statement-level BEFORE triggers run before the
-- statement draws any id from the sequence. chat_store_batch() holds the lock already (taking
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
    IF last_id IS NOT NULL AND NOT chat_quiet() THEN
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
