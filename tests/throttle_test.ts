// Contract v1.2: login throttling counts an attempt when it starts (concurrent guesses get no more
// tries than sequential ones), a refused attempt is not counted (no lock-out for hours),
// registration is throttled per address, and password work is shared fairly between addresses.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, uniqueName } from "./support/helpers.ts";
import { NodeLineClient } from "./support/node_line_client.ts";
import { sleep } from "./support/util.ts";

for (const backend of backends) {
  Deno.test(
    `throttle: twenty concurrent wrong-password logins for one user: five are tried, the rest throttled [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      const username = uniqueName("target");
      await using setup = await server.connect();
      await setup.request({ type: "register", username, password: "secret123" });
      const clients = await Promise.all(Array.from({ length: 20 }, () => server.connect()));
      try {
        const replies = await Promise.all(
          clients.map((c) => c.request({ type: "login", username, password: "wrong-password" }, 10_000)),
        );
        const codes = replies.map((r) => r.code);
        assertEquals(codes.filter((c) => c === "invalid_credentials").length, 5, codes.join(","));
        assertEquals(codes.filter((c) => c === "too_many_attempts").length, 15, codes.join(","));
        // Throttled while the bucket refills: one token every 12 s, so the wait is at most that.
        for (const reply of replies.filter((r) => r.code === "too_many_attempts")) {
          const wait = reply.retry_after_ms as number;
          assert(wait > 0 && wait <= 12_000, `retry_after_ms ${wait}`);
        }
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    },
  );

  Deno.test(
    `throttle: a burst of 50 failures does not lock a user out for longer than one refill [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend);
      const username = uniqueName("burst");
      await using setup = await server.connect();
      await setup.request({ type: "register", username, password: "secret123" });
      // Fifty guesses at once, then one more: it is told to wait for one token's refill, not fifty.
      const guessers = await Promise.all(Array.from({ length: 50 }, () => server.connect()));
      try {
        await Promise.all(
          guessers.map((g) => g.request({ type: "login", username, password: "wrong-password" }, 10_000)),
        );
      } finally {
        await Promise.all(guessers.map((g) => g.close()));
      }
      await using late = await server.connect();
      const reply: Frame = await late.request({ type: "login", username, password: "wrong-password" });
      assertEquals(reply.code, "too_many_attempts");
      assert((reply.retry_after_ms as number) <= 12_000, `retry_after_ms ${reply.retry_after_ms}`);
    },
  );

  Deno.test(
    `throttle: registrations past the burst from one address are refused; another address still registers [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend, { REGISTER_LIMIT_BURST: "3", REGISTER_LIMIT_PER_MIN: "6" });
      await using a = await NodeLineClient.connect(server.port, "127.0.0.2");
      const replies: Frame[] = [];
      for (let i = 0; i < 4; i++) {
        replies.push(await a.request({ type: "register", username: uniqueName("reg"), password: "secret123" }));
      }
      assertEquals(replies.map((r) => r.status), ["success", "success", "success", "error"]);
      assertEquals(replies[3].type, "register_response");
      assertEquals(replies[3].code, "too_many_attempts");
      const wait = replies[3].retry_after_ms as number;
      assert(wait > 0 && wait <= 10_000, `retry_after_ms ${wait} (one registration every 10 s)`);
      await using b = await NodeLineClient.connect(server.port, "127.0.0.3");
      const other = await b.request({ type: "register", username: uniqueName("reg"), password: "secret123" });
      assertEquals(other.status, "success");
    },
  );

  Deno.test(
    `throttle: REGISTER_LIMIT_PER_MIN=0 turns the registration limit off [${backend.name}]`,
    sanitized,
    async () => {
      await using server = await startTestServer(backend, { REGISTER_LIMIT_BURST: "1", REGISTER_LIMIT_PER_MIN: "0" });
      await using a = await NodeLineClient.connect(server.port, "127.0.0.4");
      for (let i = 0; i < 5; i++) {
        const reply = await a.request({ type: "register", username: uniqueName("free"), password: "secret123" });
        assertEquals(reply.status, "success");
      }
    },
  );
}

Deno.test("throttle: one address's queue of hashes does not hold up another address's login", sanitized, async () => {
  // Hashes take long enough here to queue: 40 registrations at once from one address, then a
  // login from another.
  await using server = await startTestServer(backends[0], { BCRYPT_COST: "10" });
  const username = uniqueName("bystander");
  await using setup = await server.connect();
  await setup.request({ type: "register", username, password: "secret123" });
  const flooders = await Promise.all(
    Array.from({ length: 40 }, () => NodeLineClient.connect(server.port, "127.0.0.5")),
  );
  await using bystander = await NodeLineClient.connect(server.port, "127.0.0.6");
  const order: string[] = [];
  try {
    const registrations = flooders.map(async (client, c) => {
      const reply = await client.request(
        { type: "register", username: uniqueName(`f${c}`), password: "secret123" },
        30_000,
      );
      order.push(`register:${reply.status}`);
    });
    // Let the flood queue up first.
    await sleep(200);
    order.push("login sent");
    const login = await bystander.request({ type: "login", username, password: "secret123" }, 30_000);
    order.push("login");
    assertEquals(login.status, "success");
    await Promise.all(registrations);
  } finally {
    for (const client of flooders) await client[Symbol.asyncDispose]();
  }
  // First come, first served, the login would wait for every hash queued before it; shared
  // fairly, for the one running and at most one more.
  const queued = order.length - order.indexOf("login sent") - 2;
  const during = order.indexOf("login") - order.indexOf("login sent") - 1;
  assert(queued > 10, `the flood had only ${queued} registrations left to queue: it was not a queue`);
  // The one running and one more, and on a loaded machine the few that finish while the login's
  // own database queries run, before it joins the line.
  assert(during <= 4, `${during} of the flood's ${queued} queued registrations finished while the login waited`);
});

Deno.test(
  "throttle: hashing never blocks the event loop: a ping is answered while registrations hash",
  sanitized,
  async () => {
    // Cost 12 (a quarter of a second a hash here), one registration from each of four addresses so
    // that they hash at once: were a hash computed on the event loop, the ping sent meanwhile would
    // be answered only after one of them.
    await using server = await startTestServer(backends[0], { BCRYPT_COST: "12" });
    const registrants = await Promise.all(
      Array.from({ length: 4 }, (_, c) => NodeLineClient.connect(server.port, `127.0.0.${20 + c}`)),
    );
    await using bystander = await NodeLineClient.connect(server.port, "127.0.0.30");
    const order: string[] = [];
    try {
      const registrations = registrants.map(async (client) => {
        const reply = await client.request(
          { type: "register", username: uniqueName("hash"), password: "secret123" },
          30_000,
        );
        order.push(`register:${reply.status}`);
      });
      await sleep(20);
      const pong = await bystander.request({ type: "ping" }, 30_000);
      order.push(pong.type as string);
      await Promise.all(registrations);
    } finally {
      for (const client of registrants) await client[Symbol.asyncDispose]();
    }
    assertEquals(order, ["pong", ...Array(4).fill("register:success")]);
  },
);
