// Graceful shutdown in-process: close() with clients connected, sends in flight or a client that
// never reads resolves, closes every connection and leaks nothing (the sanitizers check). The
// server process and its signals are in shutdown_process_test.ts.

import { assert, assertEquals, fail } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, uniqueName } from "./support/helpers.ts";

/** Well past the server's own bounds (5 s for in-flight sends, 2 s for a last write). */
const CLOSE_WAIT_MS = 15_000;

for (const backend of backends) {
  Deno.test({
    name: `shutdown: close() with clients connected and sends in flight resolves and closes them all [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, { RATE_LIMIT_PER_SEC: "0" });
      await using alice = await server.connect();
      await using bob = await server.connect();
      await using anonymous = await server.connect();
      await alice.registerAndLogin();
      await bob.registerAndLogin();
      assertEquals(await anonymous.request({ type: "ping" }), { type: "pong" });
      let burst = "";
      for (let i = 0; i < 50; i++) burst += JSON.stringify({ type: "send_message", message: `in flight ${i}` }) + "\n";
      await alice.send(burst);
      const first = await alice.expect("new_message");

      await closeWithin(server.close());
      const ids = (frames: Frame[]) => frames.filter((f) => f.type === "new_message").map((f) => f.id);
      const aliceSaw = [first.id, ...ids(await alice.expectClosed())];
      const bobSaw = ids(await bob.expectClosed());
      assertEquals(await anonymous.expectClosed(), []);
      // Whatever was broadcast before the connections closed went out in full, the same to both.
      assertEquals(bobSaw, aliceSaw);
      await assertRefused(server.port);
    },
  });
}

Deno.test({
  name: "shutdown: close() does not wait forever on a logged-in client that never reads",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], { RATE_LIMIT_PER_SEC: "0" });
    await using sender = await server.connect();
    await sender.registerAndLogin();
    const name = uniqueName("stuck");
    assertEquals((await sender.request({ type: "register", username: name, password: "secret123" })).status, "success");
    const stuck = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      const login = JSON.stringify({ type: "login", username: name, password: "secret123" }) + "\n";
      await stuck.write(new TextEncoder().encode(login));
      const reply = new Uint8Array(4096);
      const n = await stuck.read(reply);
      const loginReply = new TextDecoder().decode(reply.subarray(0, n ?? 0));
      assertEquals(JSON.parse(loginReply).status, "success", loginReply);
      // About 2 MB of broadcasts the stuck client never reads: its socket buffers fill up.
      const text = "y".repeat(4000);
      for (let round = 0; round < 10; round++) {
        let burst = "";
        for (let i = 0; i < 50; i++) burst += JSON.stringify({ type: "send_message", message: text }) + "\n";
        await sender.send(burst);
        for (let i = 0; i < 50; i++) await sender.expect("new_message", 10_000);
      }
      await closeWithin(server.close());
      await sender.expectClosed();
    } finally {
      stuck.close();
    }
  },
});

async function closeWithin(closing: Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => timer = setTimeout(() => resolve("timeout"), CLOSE_WAIT_MS));
  try {
    if ((await Promise.race([closing, timeout])) === "timeout") fail(`close() did not resolve in ${CLOSE_WAIT_MS} ms`);
  } finally {
    clearTimeout(timer);
  }
}

async function assertRefused(port: number): Promise<void> {
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (err) {
    assert(err instanceof Deno.errors.ConnectionRefused, `expected ConnectionRefused, got ${err}`);
    return;
  }
  conn.close();
  fail("the server still accepts connections after close()");
}
