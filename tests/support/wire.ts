// Helpers for the contract tests: a raw TCP client that sees the server's exact bytes, and
// database look-ups that check what was (or was not) stored.

import { fail } from "./assert.ts";
import { sleep, Wakeup } from "./util.ts";
import type { Frame, TestClient, TestServer } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Keys of a frame, sorted, for exact-shape assertions. */
export function keysOf(frame: Frame): string[] {
  return Object.keys(frame).sort();
}

/** A frame as one JSON line, in bytes. */
export function line(frame: Frame): Uint8Array {
  return encoder.encode(JSON.stringify(frame) + "\n");
}

/** Several frames as one buffer, to be sent in a single write. */
export function lines(frames: Frame[]): Uint8Array {
  return encoder.encode(frames.map((f) => JSON.stringify(f) + "\n").join(""));
}

/** A TCP client that keeps the server's bytes exactly as received; every wait has a timeout. */
export class RawClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #received: Uint8Array = new Uint8Array(0);
  #ended = false;
  readonly #wakeup = new Wakeup();
  readonly #readLoop: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#readLoop = this.#read();
  }

  static async connect(port: number): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RawClient(conn);
  }

  get ended(): boolean {
    return this.#ended;
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buffer);
        if (n === null) break;
        const next = new Uint8Array(this.#received.length + n);
        next.set(this.#received);
        next.set(buffer.subarray(0, n), this.#received.length);
        this.#received = next;
        this.#wakeup.wake();
      }
    } catch {
      // Closed by us or reset by the server: both end the stream.
    } finally {
      this.#ended = true;
      this.#wakeup.wake();
    }
  }

  /** Writes bytes or text exactly as given; false if the server had already closed. */
  async write(data: Uint8Array | string): Promise<boolean> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    try {
      let offset = 0;
      while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.BrokenPipe || err instanceof Deno.errors.ConnectionReset) return false;
      throw err;
    }
  }

  /** The next line's bytes, "\n" included. */
  async nextLine(ms = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + ms;
    while (true) {
      const end = this.#received.indexOf(0x0a);
      if (end !== -1) {
        const out = this.#received.slice(0, end + 1);
        this.#received = this.#received.slice(end + 1);
        return out;
      }
      if (this.#ended) fail("connection closed before a complete line");
      if (Date.now() >= deadline) fail(`no complete line within ${ms} ms`);
      await this.#wakeup.wait(deadline - Date.now());
    }
  }

  /** The next line, parsed. */
  async next(ms = 5000): Promise<Frame> {
    return JSON.parse(decoder.decode(await this.nextLine(ms)));
  }

  /** Waits for the server to close; returns the bytes still unread. */
  async expectClosed(ms = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + ms;
    while (!this.#ended) {
      if (Date.now() >= deadline) fail(`connection still open after ${ms} ms`);
      await this.#wakeup.wait(deadline - Date.now());
    }
    const rest = this.#received;
    this.#received = new Uint8Array(0);
    return rest;
  }

  /** Asserts that no byte arrives for `ms`. */
  async expectNothing(ms = 300): Promise<void> {
    await sleep(ms);
    if (this.#received.length > 0) fail(`unexpected bytes: ${JSON.stringify(decoder.decode(this.#received))}`);
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
    await this.#readLoop;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** How many stored messages have exactly this text. */
export async function storedCount(server: TestServer, text: string): Promise<number> {
  const rows = await server.service.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM messages WHERE message_text = $1::text",
    [text],
  );
  return Number(rows[0].n);
}

/** Every stored message id in (after, before), oldest first: what history must agree with. */
export async function storedIdsBetween(server: TestServer, after: number, before: number): Promise<number[]> {
  const rows = await server.service.db.query<{ id: number }>(
    "SELECT id FROM messages WHERE id > $1::bigint AND id < $2::bigint ORDER BY id",
    [after, before],
  );
  return rows.map((r) => Number(r.id));
}

/** Sends a message and returns the sender's own new_message copy. */
export async function sendAndConfirm(client: TestClient, message: string): Promise<Frame> {
  await client.send({ type: "send_message", message });
  return await client.waitFor((f) => f.type === "new_message" && f.message === message);
}

/** A message marker unique to one test, so its frames can be told from other tests' frames. */
export function marker(prefix = "m"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}
