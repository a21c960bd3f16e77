// A database that goes silent (a network partition: connections stay open, nothing answers)
// rather than away. Needs TEST_DATABASE_URL: the server reaches PostgreSQL through a proxy that
// holds every byte while stalled. A batch the database does not confirm in time is answered
// unavailable, and the pool is replaced, so the server recovers once the database answers again.
// Whether such a batch was committed after all is the database's to say: if it was, everyone
// receives it once, in order (the sender can resend it with its client_msg_id and get it back).

import { assert, assertEquals } from "./support/assert.ts";
import { type Backend, postgresUrl, sanitized, startTestServer } from "./support/helpers.ts";
import { proxiedUrl, startProxy, targetOf } from "./support/proxy.ts";
import { marker, storedCount } from "./support/wire.ts";

Deno.test({
  name: "db stall: sends get unavailable while the database is silent, and work again once it answers",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: proxiedUrl(postgresUrl!, proxy) } };
    await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0", DB_POOL_SIZE: "2" }, {
      commitTimeoutMs: 1000,
    });
    await using alice = await server.connect();
    await using bob = await server.connect();
    await alice.registerAndLogin();
    await bob.registerAndLogin();
    const seenByBob: unknown[] = [];

    await alice.send({ type: "send_message", message: "before the stall", request_id: "before" });
    const before = await alice.expect("new_message");
    seenByBob.push((await bob.expect("new_message")).message);

    proxy.stall();
    const during = marker("during the stall");
    await alice.send({ type: "send_message", message: during, request_id: "during" });
    const refused = await alice.expect("error", 10_000);
    assertEquals([refused.code, refused.request_id], ["unavailable", "during"]);
    // The server itself keeps answering while its database is silent.
    assertEquals((await bob.request({ type: "ping" })).type, "pong");

    proxy.resume();
    // The first send after the partition heals may still meet a connection that dies with it.
    let after: Record<string, unknown> | undefined;
    for (let attempt = 0; attempt < 5 && !after; attempt++) {
      await alice.send({ type: "send_message", message: `after the stall ${attempt}`, request_id: "after" });
      const reply = await alice.next(10_000);
      if (reply.type === "new_message") after = reply;
      else assertEquals(reply.code, "unavailable");
    }
    assert(after, "sends did not recover after the database answered again");
    assert((after.id as number) > (before.id as number));
    // Everything bob receives up to the recovered message: a committed "during" comes before it.
    const bobsIds = [before.id as number];
    while (bobsIds.at(-1) !== after.id) {
      const frame = await bob.next(10_000);
      if (frame.type !== "new_message") continue;
      seenByBob.push(frame.message);
      bobsIds.push(frame.id as number);
    }
    // The refused message reaches others exactly when the database committed it after all.
    const stored = await storedCount(server, during);
    assertEquals(seenByBob.filter((m) => m === during).length, stored, `stored ${stored} time(s)`);
    assertEquals(bobsIds, [...bobsIds].sort((a, b) => a - b), "in id order");
  },
});

Deno.test({
  name: "db stall: a pooled connection that died silently is replaced, and sends work again",
  ignore: postgresUrl === undefined,
  ...sanitized,
  async fn() {
    await using proxy = startProxy(targetOf(postgresUrl!));
    const backend: Backend = { name: "postgres", env: { DATABASE_URL: proxiedUrl(postgresUrl!, proxy) } };
    // One pooled connection: without replacing it, every later batch would wait behind it for good.
    await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0", DB_POOL_SIZE: "1" }, {
      commitTimeoutMs: 1000,
    });
    await using alice = await server.connect();
    await alice.registerAndLogin();
    await alice.send({ type: "send_message", message: "before" });
    await alice.expect("new_message");

    proxy.silenceExisting();
    await alice.send({ type: "send_message", message: "into the void", request_id: 1 });
    assertEquals((await alice.expect("error", 10_000)).code, "unavailable");

    await alice.send({ type: "send_message", message: "after", request_id: 2 });
    const after = await alice.expect("new_message", 10_000);
    assertEquals([after.message, after.request_id], ["after", 2]);
  },
});
