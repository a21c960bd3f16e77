// The outbound bound: a client that stops reading is cut off once its backlog passes
// MAX_OUTBOUND_BYTES, and no other client waits for it or loses a message.

import { assert, assertEquals, fail } from "./support/assert.ts";
import { backends, type Frame, sanitized, startTestServer, type TestClient, uniqueName } from "./support/helpers.ts";

const MAX_OUTBOUND_BYTES = 65536;
/** Long messages fill the non-reader's socket buffers (a few MB on loopback) in fewer rounds. */
const MESSAGE_CHARS = 4000;
/** Messages per burst: one burst (~48 KB) stays under the bound for a client that reads. */
const BURST = 12;
const MAX_BURSTS = 600;
const FLOOD_MS = 30_000;

const encoder = new TextEncoder();

for (const backend of backends) {
  Deno.test({
    name: `outbound: a client that stops reading is disconnected and a reading client misses nothing [${backend.name}]`,
    ...sanitized,
    async fn() {
      await using server = await startTestServer(backend, {
        RATE_LIMIT_PER_SEC: "0",
        MAX_OUTBOUND_BYTES: String(MAX_OUTBOUND_BYTES),
      });
      await using sender = await server.connect();
      await using reader = await server.connect();
      const senderName = String((await sender.registerAndLogin()).username);
      const readerName = String((await reader.registerAndLogin()).username);
      const slowName = uniqueName("slow");
      assertEquals(
        (await reader.request({ type: "register", username: slowName, password: "secret123" })).status,
        "success",
      );
      await using slow = await RawClient.loginAs(server.port, slowName, "secret123");
      const connections = () => server.service.registry.connectionCount;
      assertEquals(connections(), 3);

      const received: Frame[] = [];
      let sent = 0;
      let ownSent = 0;
      let burstsAfterCut = -1;
      const started = Date.now();
      for (let burst = 0; burst < MAX_BURSTS && burstsAfterCut < 3; burst++) {
        if (Date.now() - started > FLOOD_MS) fail(`the non-reader was not disconnected within ${FLOOD_MS} ms`);
        let lines = "";
        for (let i = 0; i < BURST; i++) lines += JSON.stringify({ type: "send_message", message: text(sent++) }) + "\n";
        await sender.send(lines);
        let expected = BURST;
        if (burst % 10 === 5) {
          // The reader's own send round trip works while the non-reader's backlog grows.
          await reader.send({ type: "send_message", message: `own ${ownSent}`, request_id: `own-${ownSent}` });
          ownSent++;
          expected++;
        }
        for (let i = 0; i < expected; i++) {
          const frame = await reader.expect("new_message", 10_000);
          received.push(frame);
        }
        for (let i = 0; i < expected; i++) await sender.expect("new_message", 10_000);
        if (burstsAfterCut >= 0) burstsAfterCut++;
        else if (connections() === 2) burstsAfterCut = 0;
      }
      assert(burstsAfterCut >= 0, `the non-reader was not disconnected after ${sent} messages`);

      // Every message, in the order sent, ids rising: no gap, nothing reordered.
      const fromSender = received.filter((f) => f.sender === senderName).map((f) => f.message);
      assertEquals(fromSender.length, sent);
      for (let i = 0; i < sent; i++) {
        if (fromSender[i] !== text(i)) fail(`message ${i} missing or out of order`);
      }
      const ids = received.map((f) => Number(f.id));
      for (let i = 1; i < ids.length; i++) {
        assert(ids[i] > ids[i - 1], `ids out of order at ${i}: ${ids[i - 1]}, ${ids[i]}`);
      }
      const own = received.filter((f) => f.sender === readerName);
      assertEquals(own.map((f) => f.request_id), Array.from({ length: ownSent }, (_, i) => `own-${i}`));

      // The server closed the non-reader: once its buffered bytes are read, the stream ends.
      assert(await slow.endsWithin(10_000), "the non-reader's connection was not closed by the server");
      assert(!sender.ended && !reader.ended, "a reading client was disconnected");
      const online = await reader.request({ type: "list_users" });
      assertEquals(online.type, "users_response");
      assert(!(online.users as string[]).includes(slowName), "the non-reader is still listed online");
      assertEquals(await reader.request({ type: "ping" }), { type: "pong" });
    },
  });
}

// A broadcast batch is queued to every recipient as one buffer; one larger than
// MAX_OUTBOUND_BYTES must not make a client that keeps up look like a slow consumer.
Deno.test({
  name: "outbound: a reading client is not disconnected when one burst of messages exceeds MAX_OUTBOUND_BYTES",
  ...sanitized,
  async fn() {
    await using server = await startTestServer(backends[0], {
      RATE_LIMIT_PER_SEC: "0",
      MAX_OUTBOUND_BYTES: String(MAX_OUTBOUND_BYTES),
    });
    await using sender = await server.connect();
    await using reader = await server.connect();
    await sender.registerAndLogin();
    await reader.registerAndLogin();
    // 40 × 4000 characters in one write: ~160 KB of broadcasts in one batch, to clients that read.
    const count = 40;
    let lines = "";
    for (let i = 0; i < count; i++) lines += JSON.stringify({ type: "send_message", message: text(i) }) + "\n";
    await sender.send(lines);
    await expectMessages(reader, count);
    await expectMessages(sender, count);
    assert(!reader.ended && !sender.ended, "a reading client was disconnected");
  },
});

async function expectMessages(client: TestClient, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const frame = await client.next(10_000);
    assertEquals(frame.type, "new_message", `frame ${i}: ${JSON.stringify(frame)}`);
    assertEquals(frame.message, text(i));
  }
}

function text(seq: number): string {
  const head = `m${seq}:`;
  return head + "x".repeat(MESSAGE_CHARS - head.length);
}

/** A raw socket that logs in and then never reads unless asked to. */
class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  static async loginAs(port: number, username: string, password: string): Promise<RawClient> {
    const client = new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
    try {
      await client.conn.write(encoder.encode(JSON.stringify({ type: "login", username, password }) + "\n"));
      const reply = await client.#readLine(5000);
      assertEquals(JSON.parse(reply).status, "success", reply);
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  /** Reads (and drops) everything until the stream ends or is reset; false if it is still open after `ms`. */
  async endsWithin(ms: number): Promise<boolean> {
    const buffer = new Uint8Array(256 * 1024);
    const timer = setTimeout(() => this.close(), ms);
    try {
      while ((await this.conn.read(buffer)) !== null) {
        // Discard the backlog the server had already handed to the kernel.
      }
      return !this.#closed;
    } catch (err) {
      if (this.#closed) return false;
      if (err instanceof Deno.errors.ConnectionReset) return true;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  async #readLine(ms: number): Promise<string> {
    const buffer = new Uint8Array(4096);
    let text = "";
    const timer = setTimeout(() => this.close(), ms);
    try {
      while (!text.includes("\n")) {
        const n = await this.conn.read(buffer);
        if (n === null) fail("connection closed before a reply");
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
    } finally {
      clearTimeout(timer);
    }
    return text.slice(0, text.indexOf("\n"));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.conn.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
