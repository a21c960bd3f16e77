// chat_store_batch() (schema.sql) answered directly, on the embedded database and on PostgreSQL:
// what a room's gap holds when two batches are on their way on one connection. The second batch's
// caller has not delivered the first's rows yet, so it asks from before them; the answer leaves
// them out (the first batch's own delivery carries them) and says so, and keeps every row another
// writer stored.

import "./support/pglite_timers.ts";
import { assertEquals } from "./support/assert.ts";
import { sanitized } from "./support/client.ts";
import { scratchBackends, scratchDatabase, withOpen } from "./support/scratch_db.ts";
import type { Database } from "../lib/store/db.ts";
import { Logger } from "../lib/core/log.ts";
import { applySchema } from "../lib/store/schema.ts";

interface Answer extends Record<string, unknown> {
  ids: (number | string)[];
  rg_rows: [string, number, string, number | null, string, string | null, string | null, string][];
  rg_skipped_through: (number | string)[];
}

/** One batch of messages to room `r1` from user 1, by a caller that has delivered the room through `seen`. */
async function storeBatch(db: Database, texts: string[], seen: number): Promise<Answer> {
  const rows = await db.ordered<Answer>(
    `SELECT * FROM chat_store_batch($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], 0, $6::text[], $7::bigint[])`,
    [texts.map(() => "r1"), texts.map(() => 1), texts.map(() => "u1"), texts, texts.map(() => null), ["r1"], [seen]],
  );
  return rows[0];
}

/** The gap's rows as [id, kind, body]. */
function gapOf(answer: Answer): [number, string, string | null][] {
  return answer.rg_rows.map(([, id, kind, , , body]) => [Number(id), kind, body]);
}

for (const backend of scratchBackends) {
  Deno.test({
    name:
      `store batch: a room's gap leaves out what the previous batch on the connection drew, says so, and keeps another writer's rows [${backend}]`,
    ...sanitized,
    async fn() {
      await using scratch = await scratchDatabase(backend);
      await withOpen(scratch, async (db) => {
        await applySchema(db, new Logger("error"));
        await db.query(`INSERT INTO users (id, username, password_hash) VALUES (1, 'u1', 'x'), (2, 'u2', 'x')`);
        await db.query(`INSERT INTO chat_rooms (id, kind, name) VALUES ('r1', 'public', 'one')`);
        await db.query(
          `INSERT INTO chat_room_members (room_id, user_id, role, since) VALUES ('r1', 1, 'member', 0), ('r1', 2, 'member', 0)`,
        );
        // Another writer's event first (id 1): the first batch on the connection skips nothing.
        await db.query(`SELECT chat_room_append('r1', 'join', 2, 'u2', NULL, NULL, now()::timestamp)`);
        const first = await storeBatch(db, ["a", "b"], 0);
        assertEquals(first.ids.map(Number), [2, 3]);
        assertEquals(gapOf(first), [[1, "join", null]]);
        assertEquals(first.rg_skipped_through.map(Number), [0]);

        // Another writer's event between the two batches (id 4), then a batch whose caller has
        // delivered nothing yet: the gap has both others' events, not the first batch's 2 and 3.
        await db.query(`SELECT chat_room_append('r1', 'leave', 2, 'u2', NULL, NULL, now()::timestamp)`);
        const second = await storeBatch(db, ["c"], 0);
        assertEquals(second.ids.map(Number), [5]);
        assertEquals(gapOf(second), [[1, "join", null], [4, "leave", null]]);
        assertEquals(second.rg_skipped_through.map(Number), [3], "the caller must have delivered through 3");

        // A caller that has delivered everything before it: nothing to read, nothing skipped.
        const third = await storeBatch(db, ["d"], 5);
        assertEquals(third.ids.map(Number), [6]);
        assertEquals(gapOf(third), []);
        assertEquals(third.rg_skipped_through.map(Number), [0]);
      });
    },
  });
}
