// The login idle timeout: a connection that neither logs in nor sends anything is closed with
// idle_timeout; logged-in connections are never closed for being quiet; 0 turns it off.

import { assert, assertEquals } from "./support/assert.ts";
import { backends, sanitized, startTestServer } from "./support/helpers.ts";
import { sleep } from "./support/util.ts";

const backend = backends[0];

Deno.test({
  name: "idle: a connection that never logs in and sends nothing is closed with idle_timeout",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backend, { LOGIN_IDLE_TIMEOUT_SEC: "1" });
    await using client = await server.connect();
    const frames = await client.expectClosed(5000);
    assertEquals(frames.length, 1, JSON.stringify(frames));
    assertEquals(frames[0].type, "error");
    assertEquals(frames[0].code, "idle_timeout");
    assertEquals(typeof frames[0].message, "string");
  },
});

Deno.test({
  name: "idle: a logged-in connection that stays quiet is not closed and still receives broadcasts",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backend, { LOGIN_IDLE_TIMEOUT_SEC: "1" });
    await using quiet = await server.connect();
    await quiet.registerAndLogin();
    // The control: a connection opened at the same time that never logs in.
    await using silent = await server.connect();
    await sleep(2500);
    await using talker = await server.connect();
    await talker.registerAndLogin();
    await talker.send({ type: "send_message", message: "are you still there?" });
    const sent = await talker.expect("new_message");
    assertEquals(await quiet.expect("new_message"), sent);
    assert(!quiet.ended, "the logged-in connection was closed");
    const frames = await silent.expectClosed(0);
    assertEquals(frames.map((f) => f.code), ["idle_timeout"]);
  },
});

Deno.test({
  name: "idle: a connection that is not logged in stays open while it keeps sending pings",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backend, { LOGIN_IDLE_TIMEOUT_SEC: "1" });
    await using pinger = await server.connect();
    const until = Date.now() + 2500;
    while (Date.now() < until) {
      assertEquals(await pinger.request({ type: "ping" }), { type: "pong" });
      await sleep(300);
    }
    assert(!pinger.ended, "the pinging connection was closed");
    // Once it stops, the timeout applies again.
    const frames = await pinger.expectClosed(5000);
    assertEquals(frames.map((f) => f.code), ["idle_timeout"]);
  },
});

Deno.test({
  name: "idle: LOGIN_IDLE_TIMEOUT_SEC=0 turns the timeout off",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backend, { LOGIN_IDLE_TIMEOUT_SEC: "0" });
    await using silent = await server.connect();
    await silent.expectNothing(2500);
    assert(!silent.ended, "the connection was closed");
    assertEquals(await silent.request({ type: "ping" }), { type: "pong" });
  },
});
