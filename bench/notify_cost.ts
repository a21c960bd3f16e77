// What NOTIFY costs sends to parallel rooms: PostgreSQL takes one cluster-wide lock at the commit
// of every transaction that NOTIFYs, so commits to different rooms queue there. K connections
// each store batches of 10 messages into a room of their own with chat_store_batch(), as the
// servers do, for a few seconds; the same with chat.quiet = on (no NOTIFY: the NATS bus's way),
// in alternating rounds. Prints batches/s for each and their ratio.
//
//   deno task bench:notify    (DATABASE_URL: a role that may CREATE DATABASE; default postgres@127.0.0.1)

import postgres from "postgres";
import { Logger } from "../lib/core/log.ts";
import { openDatabase } from "../lib/store/db.ts";
import { applySchema } from "../lib/store/schema.ts";

const ADMIN_URL = Deno.env.get("DATABASE_URL") || "postgres://postgres@127.0.0.1:5432/postgres";
const COMMITTERS = [1, 2, 4, 8];
const ROUND_MS = 2500;
const ROUNDS = 2;
const BATCH = 10;
const STORE_SQL = `SELECT lobby_through FROM chat_store_batch($1::text[], $2::int[], $3::text[], $4::text[],
  $5::text[], 0, '{}'::text[], '{}'::bigint[])`;

const name = `chat_notify_${Deno.pid}`;
const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
await admin.unsafe(`CREATE DATABASE ${name}`);
const url = new URL(ADMIN_URL);
url.pathname = `/${name}`;
try {
  const log = new Logger("warn");
  const db = await openDatabase({ databaseUrl: url.toString(), dataDir: "", poolSize: 1, log });
  await applySchema(db, log);
  await db.close();
  const setup = postgres(url.toString(), { max: 1, onnotice: () => {} });
  const rooms: { room: string; user: number; username: string }[] = [];
  for (let i = 0; i < Math.max(...COMMITTERS); i++) {
    const username = `notify_${i}`;
    const [user] = await setup`INSERT INTO users (username, password_hash) VALUES (${username}, 'x') RETURNING id`;
    const room = `r_notifycost${String(i).padStart(8, "0")}`;
    await setup`SELECT * FROM chat_room_create(${room}, 'private', ${room}, 'shared', ${user.id}, ${username}, 10)`;
    rooms.push({ room, user: user.id, username });
  }
  await setup.end();

  // deno-lint-ignore no-console
  console.log(
    `committers  NOTIFY batches/s  quiet batches/s  NOTIFY/quiet   (${BATCH} messages a batch, ${ROUNDS} rounds)`,
  );
  for (const k of COMMITTERS) {
    const totals = { notify: 0, quiet: 0 };
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ["notify", "quiet"] as const) {
        totals[mode] += await run(url.toString(), rooms.slice(0, k), mode);
      }
    }
    const notify = totals.notify / ROUNDS;
    const quiet = totals.quiet / ROUNDS;
    // deno-lint-ignore no-console
    console.log(
      `${String(k).padStart(10)}  ${notify.toFixed(0).padStart(16)}  ${quiet.toFixed(0).padStart(15)}  ${
        (notify / quiet).toFixed(2).padStart(12)
      }`,
    );
  }
} finally {
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

/** Batches/s of `rooms.length` connections, each storing into its own room, for ROUND_MS. */
async function run(
  databaseUrl: string,
  rooms: { room: string; user: number; username: string }[],
  mode: "notify" | "quiet",
): Promise<number> {
  const connections = rooms.map(() =>
    postgres(databaseUrl, {
      max: 1,
      onnotice: () => {},
      connection: mode === "quiet" ? { "chat.quiet": "on" } : {},
    })
  );
  let batches = 0;
  const deadline = performance.now() + ROUND_MS;
  const started = performance.now();
  await Promise.all(rooms.map(async ({ room, user, username }, i) => {
    const params = [
      Array(BATCH).fill(room),
      Array(BATCH).fill(user),
      Array(BATCH).fill(username),
      Array.from({ length: BATCH }, (_, n) => `message ${n} ${"x".repeat(80)}`),
      Array(BATCH).fill(null),
    ];
    // Bounded by time and count.
    for (let n = 0; n < 1_000_000 && performance.now() < deadline; n++) {
      await connections[i].unsafe(STORE_SQL, params as never[], { prepare: true });
      batches++;
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(connections.map((c) => c.end()));
  return batches / seconds;
}
