// Contract v1.2, "reply order": the direct replies to one connection's requests go out in the
// order the requests arrived, whatever the database does in between (a duplicate's original, an
// `unavailable`, a history read), and no request is left unanswered when storing a batch goes wrong.

import { startChatService } from "../lib/app.ts";
import { parseConfig } from "../lib/core/config.ts";
import { type Database, openDatabase, type QueryOptions, type Row } from "../lib/store/db.ts";
import { assert, assertEquals } from "./support/assert.ts";
import {
  backends,
  type Frame,
  sanitized,
  sharedPgliteDatabase,
  startTestServer,
  TestClient,
  testLog,
} from "./support/helpers.ts";
import type { Backend } from "./support/helpers.ts";

/** The frames that answer a request (they carry its request_id), in the order they arrived. */
async function repliesTo(client: TestClient, count: number): Promise<Frame[]> {
  const replies: Frame[] = [];
  while (replies.length < count) {
    const frame = await client.next(10_000);
    if (frame.request_id !== undefined) replies.push(frame);
  }
  return replies;
}

function line(frame: Frame): string {
  return JSON.stringify(frame) + "\n";
}

for (const backend of backends) {
  Deno.test(
    `reply order: a repeated client_msg_id pipelined behind other sends is answered in its place [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      const k = `k-${crypto.randomUUID()}`;
      // All in one write, so they share batches: send(k), send, send(k) again, send, send, history.
      await client.send(
        line({ type: "send_message", message: "first", client_msg_id: k, request_id: 1 }) +
          line({ type: "send_message", message: "second", request_id: 2 }) +
          line({ type: "send_message", message: "first again", client_msg_id: k, request_id: 3 }) +
          line({ type: "send_message", message: "fourth", request_id: 4 }) +
          line({ type: "send_message", message: "fifth", request_id: 5 }) +
          line({ type: "get_history", limit: 5, request_id: 6 }),
      );
      const replies = await repliesTo(client, 6);
      assertEquals(replies.map((r) => r.request_id), [1, 2, 3, 4, 5, 6]);
      assertEquals(replies[2].duplicate, true);
      assertEquals(replies[2].id, replies[0].id);
      const history = replies[5].messages as Frame[];
      assertEquals(history.slice(-4).map((m) => m.message), ["first", "second", "fourth", "fifth"]);
    },
  );

  Deno.test(
    `reply order: an invalid send between two good ones is answered between their copies [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      for (let round = 0; round < 3; round++) {
        await client.send(
          line({ type: "send_message", message: `good ${round}`, request_id: `g${round}` }) +
            line({ type: "send_message", message: " ", request_id: `bad${round}` }) +
            line({ type: "send_message", message: `good again ${round}`, request_id: `h${round}` }),
        );
        const replies = await repliesTo(client, 3);
        assertEquals(replies.map((r) => r.request_id), [`g${round}`, `bad${round}`, `h${round}`]);
        assertEquals(replies[1].code, "invalid_message");
      }
    },
  );

  Deno.test(
    `reply order: a repeat of an earlier batch's message between two new sends keeps its place [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      await using client = await server.connect();
      await client.registerAndLogin();
      const k = `k-${crypto.randomUUID()}`;
      const original = await client.request({ type: "send_message", message: "original", client_msg_id: k });
      assertEquals(original.type, "new_message");
      for (let round = 0; round < 3; round++) {
        await client.send(
          line({ type: "send_message", message: `before ${round}`, request_id: `b${round}` }) +
            line({ type: "send_message", message: "again", client_msg_id: k, request_id: `r${round}` }) +
            line({ type: "send_message", message: `after ${round}`, request_id: `a${round}` }),
        );
        const replies = await repliesTo(client, 3);
        assertEquals(replies.map((r) => r.request_id), [`b${round}`, `r${round}`, `a${round}`]);
        assertEquals(replies[1].id, original.id);
        assertEquals(replies[1].message, "original");
        assert((replies[2].id as number) > (replies[0].id as number));
      }
    },
  );

  Deno.test(
    `reply order: unavailable never overtakes an earlier send's reply, and history after both has the earlier send [${backend.name}]`,
    sanitized,
    async () => {
      const marker = `fail-${crypto.randomUUID()}`;
      await using fixture = await gatedService(backend);
      const { gate, db } = fixture;
      await db.query(
        `CREATE OR REPLACE FUNCTION test_fail_marked() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.message_text LIKE 'fail-%' THEN RAISE EXCEPTION 'refused by the test'; END IF;
         RETURN NEW;
       END $$`,
      );
      await db.query(`DROP TRIGGER IF EXISTS test_fail_marked ON messages`);
      await db.query(
        `CREATE TRIGGER test_fail_marked BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION test_fail_marked()`,
      );
      try {
        await using client = await TestClient.connect(fixture.port);
        const login = await client.registerAndLogin();
        // Another writer's rows, more than a batch's answer carries: this server must read them
        // before it delivers the next send, and that read waits behind the gate, so the next
        // send's delivery (and its reply) waits too.
        gate.close();
        await db.query(
          `INSERT INTO messages (sender_id, sender_username, message_text)
           SELECT $1, $2, 'seed row ' || i FROM generate_series(1, 1001) AS i`,
          [login.user_id, login.username],
        );
        await client.send({ type: "send_message", message: "kept", request_id: 1 });
        await gate.reached;
        // The first batch has committed; its delivery waits. The next one fails.
        await client.send({ type: "send_message", message: marker, request_id: 2 });
        await client.expectNothing(300);
        await client.send({ type: "get_history", limit: 3, request_id: 3 });
        gate.open();
        const replies = await repliesTo(client, 3);
        assertEquals(replies.map((r) => r.request_id), [1, 2, 3]);
        assertEquals(replies[0].type, "new_message");
        assertEquals(replies[1].code, "unavailable");
        const texts = (replies[2].messages as Frame[]).map((m) => m.message);
        assert(texts.includes("kept"), `history misses the earlier send: ${JSON.stringify(texts)}`);
      } finally {
        gate.open();
        await db.query(`DROP TRIGGER IF EXISTS test_fail_marked ON messages`);
      }
    },
  );

  Deno.test(
    `reply order: a batch whose outcome cannot be read answers its senders, and the connection goes on [${backend.name}]`,
    sanitized,
    async () => {
      await using fixture = await gatedService(backend);
      await using client = await TestClient.connect(fixture.port);
      await client.registerAndLogin();
      const k = `k-${crypto.randomUUID()}`;
      fixture.breakStoreResults = true;
      await client.send(
        line({ type: "send_message", message: "lost answer", client_msg_id: k, request_id: 1 }) +
          line({ type: "send_message", message: "lost answer too", request_id: 2 }),
      );
      const replies = await repliesTo(client, 2);
      assertEquals(replies.map((r) => [r.request_id, r.code]), [[1, "internal_error"], [2, "internal_error"]]);
      fixture.breakStoreResults = false;
      // Both were stored all the same: a catch-up delivers them to everyone, the sender included.
      const delivered = [await client.expect("new_message"), await client.expect("new_message")];
      assertEquals(delivered.map((m) => m.message), ["lost answer", "lost answer too"]);
      assertEquals((await client.request({ type: "ping", request_id: 3 })).type, "pong");
      // The first send's client_msg_id is no longer in flight: a resend answers the original instead
      // of waiting forever.
      const resend = await client.request({ type: "send_message", message: "lost answer", client_msg_id: k });
      assertEquals(resend.duplicate, true);
      assertEquals(resend.message, "lost answer");
    },
  );
}

interface Gate {
  close(): void;
  open(): void;
  /** Settles when a read first waits at the closed gate. */
  readonly reached: Promise<void>;
}

interface GatedService extends AsyncDisposable {
  port: number;
  /** The real database, for the test's own statements. */
  db: Database;
  /** Holds back the server's reads of new messages while closed. */
  gate: Gate;
  /** While true, the server's batch stores succeed but answer with no row. */
  breakStoreResults: boolean;
}

/** A real server on a real database whose catch-up reads the test can hold back (and whose store results it can drop). */
async function gatedService(backend: Backend): Promise<GatedService> {
  const real = backend.name === "pglite"
    ? sharedPgliteDatabase()
    : await openDatabase({ databaseUrl: backend.env.DATABASE_URL, dataDir: "", poolSize: 4, log: testLog });
  let closed = false;
  let waiting = Promise.withResolvers<void>();
  let reached = Promise.withResolvers<void>();
  const gate: Gate = {
    close() {
      closed = true;
      reached = Promise.withResolvers<void>();
    },
    open() {
      closed = false;
      waiting.resolve();
      waiting = Promise.withResolvers<void>();
    },
    get reached() {
      return reached.promise;
    },
  };
  const fixture = { breakStoreResults: false };
  const database: Database = {
    ...real,
    kind: real.kind,
    async query<T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]> {
      if (closed && /FROM messages WHERE id > \$1::bigint AND id <= \$2::bigint/.test(text)) {
        reached.resolve();
        await waiting.promise;
      }
      return await real.query<T>(text, params, options);
    },
    async ordered<T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions): Promise<T[]> {
      const rows = await real.ordered<T>(text, params, options);
      return fixture.breakStoreResults && text.includes("chat_store_batch") ? [] : rows;
    },
    listen: (channel, onNotify, onListen) => real.listen(channel, onNotify, onListen),
    schemaTransaction: (work) => real.schemaTransaction(work),
    close: () => real.close(),
  };
  const config = parseConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    HTTP_PORT: "0",
    BCRYPT_COST: "4",
    REGISTER_LIMIT_PER_MIN: "0",
    ...backend.env,
  });
  const service = await startChatService(config, testLog, { database });
  return Object.assign(fixture, {
    port: service.port,
    db: real,
    gate,
    async [Symbol.asyncDispose]() {
      gate.open();
      await service.close();
      if (backend.name !== "pglite") await real.close();
    },
  });
}
