// Full-text search in PostgreSQL's own text search: GIN indexes over the lobby's and the rooms'
// message texts with the 'simple' configuration (whole words in any letter case, no stemming, so
// every language works alike), queried with websearch_to_tsquery ("quoted phrases", -exclusions,
// or), and B-trees in the order of results, for a search's walk of the newest messages. The
// indexes are built after start-up, without blocking writes on a server database (CREATE INDEX
// CONCURRENTLY); until then a search still answers, by scanning.

import type { Logger } from "../core/log.ts";
import { type Database, databaseErrorFields } from "./db.ts";

/** One match: a lobby message (`room` "lobby") or a room's message. */
export interface SearchHit extends Record<string, unknown> {
  room: string;
  id: number;
  sender: string;
  message: string;
  /** Null for a lobby row with no time (the seed's schema allows it), as in get_history. */
  timestamp: string | null;
  /** The message's time in microseconds since the epoch (null: no time): the order key, with room and id. */
  micros: string | null;
}

/** Where a search looks: the lobby, and rooms each from an id on (history:"joined" rooms from the latest join). */
export interface SearchScope {
  lobby: boolean;
  rooms: { room: string; fromId: number }[];
}

/** Where a page starts: the last hit of the page before (results are newest first). */
export interface SearchCursor {
  /** Null: a lobby row with no time (those sort first, by id). */
  micros: string | null;
  room: string;
  id: number;
}

/**
 * The search's indexes: the texts' words (GIN), and the order of results (B-tree) that a search's
 * walk of the newest messages follows. The B-trees come first: they build in seconds where the GIN
 * indexes take minutes on a big table, and without them every walk would sort its whole table.
 */
export const SEARCH_INDEX_DEFINITIONS: { name: string; sql: string; words: boolean }[] = [
  { name: "messages_search_order", sql: `ON messages (timestamp, id)`, words: false },
  {
    name: "chat_room_events_search_order",
    sql: `ON chat_room_events (created_at, room_id, id) WHERE kind = 'message'`,
    words: false,
  },
  { name: "messages_text_search", sql: `ON messages USING gin (to_tsvector('simple', message_text))`, words: true },
  {
    name: "chat_room_events_text_search",
    sql: `ON chat_room_events USING gin (to_tsvector('simple', body)) WHERE kind = 'message'`,
    words: true,
  },
];
/** The GIN indexes' names (their pending lists are emptied in the background: search_upkeep.ts). */
export const SEARCH_WORD_INDEXES: string[] = SEARCH_INDEX_DEFINITIONS.flatMap((index) =>
  index.words ? [index.name] : []
);

/** A build of an index takes long on a big table: it must not be cut short as a user query would. */
const BUILD_TIMEOUT_MS = 6 * 3600_000;
// The order of results is (time, room, id) descending; the lobby counts as room "" there.
//
// Each part (the lobby, the rooms) first walks its newest WALK_ROWS messages after the cursor, in
// that order, on a B-tree of the order's columns, and tests each one. The matches found there are
// the part's first matches overall (a prefix of the order, filtered, is a prefix of the matches),
// so the part is done when the walk found a page or walked the whole part. Otherwise the GIN
// index looks up the part's matches: a common word ends in the walk (the index would have fetched
// and sorted every one of its matches: 150–190 ms for the commonest word of 1,000,000 messages), a
// rare one in the index, where it has few matches; a word with no match in the walk's first
// WALK_HEAD rows goes to the index without the rest of the walk. Only the rows kept are formatted.
const QUERY = `WITH q AS (SELECT websearch_to_tsquery('simple', $1::text) AS q)`;
/** The cursor's time ($2, microseconds since the epoch) as a stored timestamp; no cursor: after everything. */
const CURSOR_AT = `CASE WHEN $2::bigint IS NULL THEN 'infinity'::timestamp
    ELSE 'epoch'::timestamp + $2::bigint * interval '1 microsecond' END`;
/** How many of a part's newest messages are tested one by one before its index is used. */
const WALK_ROWS = 500;
/** How many of them are tested before the walk is given up for the index when none matches. */
const WALK_HEAD = 100;
/** After no cursor, or a cursor on a lobby row with no time: a row with no time needs an id below the cursor's. */
const BELOW_CURSOR_ID = `m.id < coalesce($4::bigint, ${Number.MAX_SAFE_INTEGER})`;
/**
 * The lobby's rows after the cursor, newest first: those with no timestamp first (they sort first
 * descending, by id; only while the cursor is not past them), then a range of the B-tree. A lobby
 * row after a room's hit at the same time comes after it, since the lobby's room key "" is lowest.
 */
const LOBBY_AFTER_CURSOR = `(
    (SELECT m.* FROM messages m WHERE $6::boolean AND $2::bigint IS NULL AND m.timestamp IS NULL
        AND ${BELOW_CURSOR_ID}
      ORDER BY m.id DESC LIMIT ${WALK_ROWS})
    UNION ALL
    (SELECT m.* FROM messages m WHERE $6::boolean AND (m.timestamp, m.id) < (${CURSOR_AT},
        CASE WHEN $2::bigint IS NULL THEN 0 WHEN $3::text = '' THEN $4::bigint ELSE ${Number.MAX_SAFE_INTEGER} END)
      ORDER BY m.timestamp DESC, m.id DESC LIMIT ${WALK_ROWS}))`;
/** The lobby's walk: rows `from`…`from + rows` after the cursor, each with whether it matches. */
const lobbyWalk = (from: number, rows: number) =>
  `SELECT m.id, m.sender_username, m.message_text, m.timestamp,
    to_tsvector('simple', m.message_text) @@ q.q AS hit
  FROM (SELECT * FROM ${LOBBY_AFTER_CURSOR} m ORDER BY m.timestamp DESC, m.id DESC OFFSET ${from} LIMIT ${rows}) m, q`;
/** Every room's messages after the cursor, newest first; `hit` only for the rooms in scope. */
const roomWalk = (from: number, rows: number) =>
  `SELECT e.room_id, e.id, e.username, e.body, e.created_at,
    s.room IS NOT NULL AND to_tsvector('simple', e.body) @@ q.q AS hit
  FROM (SELECT e.* FROM chat_room_events e
      WHERE cardinality($7::text[]) > 0 AND e.kind = 'message'
        AND (e.created_at, e.room_id, e.id) < (${CURSOR_AT}, coalesce($3::text, ''), coalesce($4::bigint, 0))
      ORDER BY e.created_at DESC, e.room_id DESC, e.id DESC OFFSET ${from} LIMIT ${rows}) e
    LEFT JOIN unnest($7::text[], $8::bigint[]) AS s(room, from_id) ON s.room = e.room_id AND e.id >= s.from_id, q`;
/**
 * Whether a part's walk settled it (a page found, or nothing left to walk), computed once per part.
 * The walk's first WALK_HEAD rows decide whether to go on: with no match among them the word is
 * rare, and the index answers it at once; the rest of the walk is read only when needed.
 */
const walked = (part: string) =>
  `SELECT head_settled, head_settled OR (head_hits > 0
      AND (SELECT count(*) < ${WALK_ROWS - WALK_HEAD} OR count(*) FILTER (WHERE hit) + head_hits >= $5
        FROM ${part}_tail)) AS settled
  FROM (SELECT count(*) < ${WALK_HEAD} OR count(*) FILTER (WHERE hit) >= $5 AS head_settled,
      count(*) FILTER (WHERE hit) AS head_hits FROM ${part}_head) head`;
const settled = (part: string) => `(SELECT settled FROM ${part}_walked)`;
/** The walk's matches of a part it settled (a one-time filter: a part it did not settle reads none). */
const walkHits = (part: string, columns: string) =>
  `(SELECT ${columns} FROM ${part}_head WHERE hit AND ${settled(part)})
    UNION ALL (SELECT ${columns} FROM ${part}_tail
      WHERE hit AND ${settled(part)} AND NOT (SELECT head_settled FROM ${part}_walked))`;
/**
 * The index's matches of a part its walk did not settle. The matches are found first (OFFSET 0
 * keeps the planner from walking the B-tree in order instead, testing every row), then sorted.
 */
const LOBBY_INDEXED = `SELECT * FROM (
    SELECT m.id, m.sender_username, m.message_text, m.timestamp FROM messages m, q
    WHERE $6::boolean AND NOT ${settled("lobby")} AND to_tsvector('simple', m.message_text) @@ q.q
      AND ($2::bigint IS NULL AND (m.timestamp IS NOT NULL OR ${BELOW_CURSOR_ID})
        OR (m.timestamp, '', m.id) < (${CURSOR_AT}, $3::text, $4::bigint))
    OFFSET 0) m
  ORDER BY m.timestamp DESC, m.id DESC LIMIT $5`;
const ROOMS_INDEXED = `SELECT * FROM (
    SELECT e.room_id, e.id, e.username, e.body, e.created_at
    FROM chat_room_events e JOIN unnest($7::text[], $8::bigint[]) AS s(room, from_id) ON e.room_id = s.room, q
    WHERE NOT ${settled("room")} AND e.kind = 'message' AND e.id >= s.from_id
      AND to_tsvector('simple', e.body) @@ q.q
      AND ($2::bigint IS NULL OR (e.created_at, e.room_id, e.id) < (${CURSOR_AT}, $3::text, $4::bigint))
    OFFSET 0) e
  ORDER BY e.created_at DESC, e.room_id DESC, e.id DESC LIMIT $5`;
const LOBBY_HITS = `SELECT 'lobby'::text AS room, ''::text AS room_key, m.id::bigint AS id,
    m.sender_username::text AS sender, m.message_text AS message, m.timestamp AS at
  FROM (${walkHits("lobby", "id, sender_username, message_text, timestamp")} UNION ALL (${LOBBY_INDEXED})) m`;
const ROOM_HITS = `SELECT e.room_id AS room, e.room_id AS room_key, e.id, e.username AS sender, e.body AS message,
    e.created_at AS at
  FROM (${walkHits("room", "room_id, id, username, body, created_at")} UNION ALL (${ROOMS_INDEXED})) e`;
/** The search (exported for the bench's SQL arm): $1 query … $8 the rooms' first ids. */
export const SEARCH_SQL = `${QUERY},
  lobby_head AS MATERIALIZED (${lobbyWalk(0, WALK_HEAD)}),
  lobby_tail AS MATERIALIZED (${lobbyWalk(WALK_HEAD, WALK_ROWS - WALK_HEAD)}),
  room_head AS MATERIALIZED (${roomWalk(0, WALK_HEAD)}),
  room_tail AS MATERIALIZED (${roomWalk(WALK_HEAD, WALK_ROWS - WALK_HEAD)}),
  lobby_walked AS MATERIALIZED (${walked("lobby")}),
  room_walked AS MATERIALIZED (${walked("room")})
  SELECT room, id, sender, message, to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS') AS timestamp,
    (extract(epoch FROM at) * 1000000)::bigint::text AS micros
  FROM ((${LOBBY_HITS}) UNION ALL (${ROOM_HITS})) hits, q
  WHERE numnode(q.q) > 0 AND querytree(q.q) <> 'T'
  ORDER BY at DESC, room_key DESC, id DESC LIMIT $5`;

export class SearchStore {
  readonly #db: Database;
  readonly #log: Logger;

  constructor(db: Database, log: Logger) {
    this.#db = db;
    this.#log = log;
  }

  /**
   * The newest `limit` messages matching `query` in `scope`, after `cursor`, newest first. A query
   * with no word to look for (only punctuation, or only exclusions) matches nothing.
   */
  async search(
    query: string,
    scope: SearchScope,
    limit: number,
    cursor: SearchCursor | undefined,
  ): Promise<SearchHit[]> {
    const rows = await this.#db.query<SearchHit>(SEARCH_SQL, [
      query,
      cursor?.micros ?? null,
      cursor?.room === "lobby" ? "" : cursor?.room ?? null,
      cursor?.id ?? null,
      limit,
      scope.lobby,
      scope.rooms.map((r) => r.room),
      scope.rooms.map((r) => r.fromId),
    ]);
    for (const row of rows) row.id = Number(row.id);
    return rows;
  }

  /**
   * Builds the search indexes that are missing (or left invalid by a build that failed), one
   * server at a time; in the background, after start-up. Never rejects.
   */
  async buildIndexes(): Promise<void> {
    try {
      if (this.#db.kind === "embedded") {
        // One connection, one server: a plain build, done once.
        for (const index of SEARCH_INDEX_DEFINITIONS) {
          await this.#db.query(`CREATE INDEX IF NOT EXISTS ${index.name} ${index.sql}`);
        }
        return;
      }
      for (const index of SEARCH_INDEX_DEFINITIONS) await this.#build(index);
    } catch (err) {
      this.#log.warn(
        "building the search indexes failed; searches scan until a restart builds them",
        databaseErrorFields(err),
      );
    }
  }

  async #build(index: { name: string; sql: string }): Promise<void> {
    const state = await this.#db.query<{ valid: boolean | null; building: boolean }>(
      `SELECT (SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace) AS valid,
              EXISTS (SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid
                WHERE c.relname = $1) AS building`,
      [index.name],
    );
    const { valid, building } = state[0];
    if (valid === true || building) return;
    const started = performance.now();
    // A build that failed leaves an invalid index behind: it is dropped and built again.
    if (valid === false) await this.#db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index.name}`);
    // Two servers starting at once: the second finds the first's index and skips it.
    await this.#db.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${index.name} ${index.sql}`, [], {
      timeoutMs: BUILD_TIMEOUT_MS,
    });
    this.#log.info("search index ready", { index: index.name, ms: Math.round(performance.now() - started) });
  }
}
