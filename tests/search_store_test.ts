// The search store's pages against a plain sort of every match, on both backends: a part (the
// lobby, the rooms) is answered from a walk of its newest messages when a page is among them, and
// from the GIN index when not; either way every page must be exactly the next slice of all the
// matches in (time, room, id) order, whatever the clocks did (ids and times out of step, equal
// times across the lobby and rooms, rows with no time) and wherever the cursor falls.

import "./support/pglite_timers.ts";
import { assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { scratchBackends, scratchDatabase, withOpen } from "./support/scratch_db.ts";
import type { Database } from "../lib/store/db.ts";
import { Logger } from "../lib/core/log.ts";
import { applySchema } from "../lib/store/schema.ts";
import { type SearchCursor, type SearchScope, SearchStore } from "../lib/store/search.ts";

/** More lobby rows than one walk tests, so that some words end in the walk and some in the index. */
const LOBBY_ROWS = 1400;
const ROOM_ROWS = 700;
const PAGE = 20;

interface Row {
  room: string;
  id: number;
  text: string;
  /** Microseconds since the epoch; null: a lobby row with no timestamp. */
  micros: number | null;
}

/**
 * The words of row `i`: "every" in all, "often" in every third, "seldom" in every 97th (too few
 * for a walk to find a page), "tie" in the rows of equal times.
 */
function textOf(i: number, tie: boolean): string {
  const words = ["every", `n${i}`];
  if (i % 3 === 0) words.push("often");
  if (i % 97 === 0) words.push("seldom");
  if (tie) words.push("tie");
  return words.join(" ");
}

/** Times mostly rising with the id, but skewed back for some (another server's clock), and in equal groups. */
function microsOf(i: number): { micros: number; tie: boolean } {
  const base = Date.UTC(2026, 0, 1) * 1000 + i * 1_000_000;
  if (i % 10 === 7) return { micros: base - 25_000_000, tie: false };
  if (i % 50 < 4) return { micros: Date.UTC(2026, 0, 1) * 1000 + (i - (i % 50)) * 1_000_000, tie: true };
  return { micros: base, tie: false };
}

const timestampOf = (micros: number) => new Date(micros / 1000).toISOString().replace("Z", "");

async function fill(db: Database): Promise<Row[]> {
  await applySchema(db, new Logger("error"));
  await db.query(`INSERT INTO users (id, username, password_hash) VALUES (1, 'u1', 'x')`);
  await db.query(`INSERT INTO chat_rooms (id, kind, name) VALUES ('ra', 'public', 'a'), ('rb', 'public', 'b')`);
  const rows: Row[] = [];
  const lobby: { text: string; at: string | null }[] = [];
  for (let i = 1; i <= LOBBY_ROWS; i++) {
    // Two rows with no time, among the newest: they sort first, on the first page.
    const none = i === LOBBY_ROWS - 5 || i === LOBBY_ROWS - 40;
    const { micros, tie } = microsOf(i);
    lobby.push({ text: textOf(i, tie), at: none ? null : timestampOf(micros) });
    rows.push({ room: "lobby", id: i, text: textOf(i, tie), micros: none ? null : micros });
  }
  await db.query(
    `INSERT INTO messages (id, sender_id, sender_username, message_text, timestamp)
      SELECT g, 1, 'u1', t, a FROM unnest($1::text[], $2::timestamp[]) WITH ORDINALITY AS x(t, a, g)`,
    [lobby.map((r) => r.text), lobby.map((r) => r.at)],
  );
  for (const room of ["ra", "rb"]) {
    const events: { id: number; kind: string; text: string | null; at: string }[] = [];
    for (let n = 1; n <= ROOM_ROWS; n++) {
      // Every room row shares its time with a lobby row (the same i), so ties cross the parts.
      const i = room === "ra" ? 2 * n : 2 * n + 1;
      const { micros, tie } = microsOf(i);
      const kind = n % 11 === 0 ? "join" : "message";
      events.push({ id: n, kind, text: kind === "message" ? textOf(i, tie) : null, at: timestampOf(micros) });
      if (kind === "message") rows.push({ room, id: n, text: textOf(i, tie), micros });
    }
    await db.query(
      `INSERT INTO chat_room_events (room_id, id, kind, user_id, username, body, created_at, msg_no)
        SELECT $1, i, k, 1, 'u1', t, a, i FROM unnest($2::bigint[], $3::text[], $4::text[], $5::timestamp[])
          AS x(i, k, t, a)`,
      [room, events.map((e) => e.id), events.map((e) => e.kind), events.map((e) => e.text), events.map((e) => e.at)],
    );
    await db.query(`UPDATE chat_rooms SET last_id = $2, messages = $2 WHERE id = $1`, [room, ROOM_ROWS]);
  }
  return rows;
}

/** Every match of `words` (all of them, none of `without`) in `scope`, in the contract's order. */
function expected(rows: Row[], words: string[], without: string[], scope: SearchScope): string[] {
  const inScope = (row: Row) =>
    row.room === "lobby" ? scope.lobby : scope.rooms.some((r) => r.room === row.room && row.id >= r.fromId);
  const key = (row: Row) => (row.room === "lobby" ? "" : row.room);
  return rows
    .filter((row) => inScope(row))
    .filter((row) => {
      const have = new Set(row.text.split(" "));
      return words.every((w) => have.has(w)) && without.every((w) => !have.has(w));
    })
    .sort((a, b) =>
      // Newest first; no time sorts first; then room key, then id, both descending.
      (a.micros === null ? Infinity : a.micros) !== (b.micros === null ? Infinity : b.micros)
        ? (b.micros === null ? Infinity : b.micros) - (a.micros === null ? Infinity : a.micros)
        : key(a) !== key(b)
        ? (key(b) > key(a) ? 1 : -1)
        : b.id - a.id
    )
    .map((row) => `${row.room}:${row.id}`);
}

/**
 * The pages the store gives, `size` at a time, as the chat layer asks for them (one more than
 * shown), up to `upTo` results.
 */
async function allPages(
  store: SearchStore,
  query: string,
  scope: SearchScope,
  size = PAGE,
  upTo = Infinity,
): Promise<string[]> {
  const seen: string[] = [];
  let cursor: SearchCursor | undefined;
  for (let page = 0; page < 200; page++) {
    const hits = await store.search(query, scope, size + 1, cursor);
    const shown = hits.slice(0, size);
    seen.push(...shown.map((hit) => `${hit.room}:${hit.id}`));
    if (hits.length <= size || seen.length >= upTo) return seen;
    const last = shown.at(-1)!;
    cursor = { micros: last.micros, room: last.room, id: last.id };
  }
  throw new Error("more than 200 pages");
}

for (const backend of scratchBackends) {
  Deno.test({
    name:
      `search store: every page, from the newest-first walk or from the index, is the next slice of all matches in (time, room, id) order, with clocks out of step, equal times and rows with no time [${backend}]`,
    ...sanitized,
    async fn() {
      await using scratch = await scratchDatabase(backend);
      await withOpen(scratch, async (db) => {
        const rows = await fill(db);
        const store = new SearchStore(db, new Logger("error"));
        await store.buildIndexes();
        const scopes: [string, SearchScope][] = [
          ["lobby", { lobby: true, rooms: [] }],
          ["everything", { lobby: true, rooms: [{ room: "ra", fromId: 0 }, { room: "rb", fromId: 0 }] }],
          ["a room from its 400th event", { lobby: false, rooms: [{ room: "rb", fromId: 400 }] }],
        ];
        const queries: [string, string[], string[]][] = [
          ["every", ["every"], []],
          ["often", ["often"], []],
          ["seldom", ["seldom"], []],
          ["tie", ["tie"], []],
          ["every -often", ["every"], ["often"]],
          ["n700", ["n700"], []],
          ["absent", ["absent"], []],
        ];
        for (const [label, scope] of scopes) {
          for (const [query, words, without] of queries) {
            assertEquals(
              await allPages(store, query, scope),
              expected(rows, words, without, scope),
              `${query} in ${label}`,
            );
          }
        }
        // One result a page: pages end on the rows with no time too (the newest), and go on after them.
        for (const [label, scope] of scopes.slice(0, 2)) {
          assertEquals(
            await allPages(store, "every", scope, 1, 45),
            expected(rows, ["every"], [], scope).slice(0, 45),
            `every, one a page, in ${label}`,
          );
        }
        // A word too rare for the walk, after a cursor on a row with no time: the index's part.
        assertEquals(
          await allPages(store, "n1395 or n1360 or n3 or n5", scopes[0][1], 1),
          ["lobby:1395", "lobby:1360", "lobby:5", "lobby:3"],
        );
      });
    },
  });
}
