// Full-text search in PostgreSQL's own text search: GIN indexes over the lobby's and the rooms'
// message texts with the 'simple' configuration (whole words in any letter case, no stemming, so
// every language works alike), queried with websearch_to_tsquery ("quoted phrases", -exclusions,
// or). The indexes are built after start-up, without blocking writes on a server database
// (CREATE INDEX CONCURRENTLY); until then a search still answers, by scanning.

import type { Logger } from "../core/log.ts";
import { type Database, databaseErrorFields } from "./db.ts";

/** One match: a lobby message (`room` "lobby") or a room's message. */
export interface SearchHit extends Record<string, unknown> {
  room: string;
  id: number;
  sender: string;
  message: string;
  timestamp: string;
  /** The message's time in microseconds since the epoch: the order key, with room and id. */
  micros: string;
}

/** Where a search looks: the lobby, and rooms each from an id on (history:"joined" rooms from the latest join). */
export interface SearchScope {
  lobby: boolean;
  rooms: { room: string; fromId: number }[];
}

/** Where a page starts: the last hit of the page before (results are newest first). */
export interface SearchCursor {
  micros: string;
  room: string;
  id: number;
}

const INDEXES: { name: string; sql: string }[] = [
  {
    name: "messages_text_search",
    sql: `ON messages USING gin (to_tsvector('simple', message_text))`,
  },
  {
    name: "chat_room_events_text_search",
    sql: `ON chat_room_events USING gin (to_tsvector('simple', body)) WHERE kind = 'message'`,
  },
];

/** The search indexes' names (their pending lists are emptied in the background: search_upkeep.ts). */
export const SEARCH_INDEXES: string[] = INDEXES.map((index) => index.name);

/** A build of an index takes long on a big table: it must not be cut short as a user query would. */
const BUILD_TIMEOUT_MS = 6 * 3600_000;
// The order of results is (time, room, id) descending; the lobby counts as room "" there. Each
// part sorts its matches on the stored columns and keeps `limit`; only the rows kept are
// formatted (formatting every match of a common word cost more than finding them).
const QUERY = `WITH q AS (SELECT websearch_to_tsquery('simple', $1::text) AS q)`;
/** The cursor's time ($2, microseconds since the epoch) as a stored timestamp. */
const CURSOR_AT = `('epoch'::timestamp + $2::bigint * interval '1 microsecond')`;
const LOBBY_HITS =
  `SELECT 'lobby'::text AS room, ''::text AS room_key, m.id::bigint AS id, m.sender_username::text AS sender,
    m.message_text AS message, m.timestamp AS at
  FROM messages m, q WHERE $6::boolean AND to_tsvector('simple', m.message_text) @@ q.q
    AND ($2::bigint IS NULL OR (m.timestamp, '', m.id) < (${CURSOR_AT}, $3::text, $4::bigint))
  ORDER BY m.timestamp DESC, m.id DESC LIMIT $5`;
const ROOM_HITS = `SELECT e.room_id AS room, e.room_id AS room_key, e.id, e.username AS sender, e.body AS message,
    e.created_at AS at
  FROM chat_room_events e JOIN unnest($7::text[], $8::bigint[]) AS s(room, from_id) ON e.room_id = s.room, q
  WHERE e.kind = 'message' AND e.id >= s.from_id AND to_tsvector('simple', e.body) @@ q.q
    AND ($2::bigint IS NULL OR (e.created_at, e.room_id, e.id) < (${CURSOR_AT}, $3::text, $4::bigint))
  ORDER BY e.created_at DESC, e.room_id DESC, e.id DESC LIMIT $5`;
const SEARCH_SQL = `${QUERY}
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
        for (const index of INDEXES) await this.#db.query(`CREATE INDEX IF NOT EXISTS ${index.name} ${index.sql}`);
        return;
      }
      for (const index of INDEXES) await this.#build(index);
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
