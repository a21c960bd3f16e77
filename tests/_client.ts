// The test client side, with no database: a real TCP client, unique names, sanitizer options.
// Re-exported by _helpers.ts; process-only test files import this module directly.

import { assertEquals, fail } from "./_assert.ts";
import { forEachLine } from "../lib/framing.ts";
import type { Frame } from "../lib/protocol.ts";
import { sleep } from "./_util.ts";

export type { Frame } from "../lib/protocol.ts";
export { sanitized } from "./_util.ts";

let nameCounter = 0;
/** A username no other test uses: prefix + random + counter, within 50 characters. */
export function uniqueName(prefix = "u"): string {
  return `${prefix.slice(0, 20)}_${crypto.randomUUID().slice(0, 8)}${nameCounter++}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A real TCP client that reads frames in the background; every wait has a timeout. */
export class TestClient implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  readonly #frames: Frame[] = [];
  #waiter: (() => void) | undefined;
  #ended = false;
  #readLoop: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#readLoop = this.#read();
  }

  static async connect(port: number, hostname = "127.0.0.1"): Promise<TestClient> {
    return new TestClient(await Deno.connect({ hostname, port }));
  }

  /** True once the server closed the connection (or it failed). */
  get ended(): boolean {
    return this.#ended;
  }

  async #read(): Promise<void> {
    try {
      await forEachLine(this.conn, 64 * 1024 * 1024, (line) => {
        this.#frames.push(JSON.parse(decoder.decode(line)));
        this.#waiter?.();
      });
    } catch {
      // Closed by us or reset by the server: both end the stream.
    } finally {
      this.#ended = true;
      this.#waiter?.();
    }
  }

  /** Sends an object as one JSON line, or a string / bytes exactly as given. */
  async send(frame: Frame | string | Uint8Array): Promise<void> {
    const bytes = frame instanceof Uint8Array
      ? frame
      : encoder.encode(typeof frame === "string" ? frame : JSON.stringify(frame) + "\n");
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** The next frame, whatever it is. */
  async next(ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => this.#frames.length > 0 ? 0 : -1, ms);
    if (frame === undefined) fail(`no frame within ${ms} ms${this.#ended ? " (connection closed)" : ""}`);
    return frame;
  }

  /** The next frame, which must be of `type`. */
  async expect(type: string, ms = 5000): Promise<Frame> {
    const frame = await this.next(ms);
    assertEquals(frame.type, type, `expected a ${type} frame, got ${JSON.stringify(frame)}`);
    return frame;
  }

  /** The first frame matching `predicate`, skipping (and dropping) the others before it. */
  async waitFor(predicate: (frame: Frame) => boolean, ms = 5000): Promise<Frame> {
    const frame = await this.#take(() => {
      const index = this.#frames.findIndex(predicate);
      if (index === -1) this.#frames.length = 0;
      return index;
    }, ms);
    if (frame === undefined) fail(`no matching frame within ${ms} ms`);
    return frame;
  }

  /** Sends a request and returns the next frame. */
  async request(frame: Frame, ms = 5000): Promise<Frame> {
    await this.send(frame);
    return await this.next(ms);
  }

  /** Registers and logs in a new user (or the given one); returns the login reply. */
  async registerAndLogin(username = uniqueName(), password = "secret123"): Promise<Frame> {
    const registered = await this.request({ type: "register", username, password });
    assertEquals(registered.status, "success", JSON.stringify(registered));
    const login = await this.request({ type: "login", username, password });
    assertEquals(login.status, "success", JSON.stringify(login));
    return login;
  }

  /** Waits until the server closes the connection; frames still unread are returned. */
  async expectClosed(ms = 5000): Promise<Frame[]> {
    const deadline = Date.now() + ms;
    while (!this.#ended) {
      if (Date.now() > deadline) fail(`connection still open after ${ms} ms`);
      await this.#wait(deadline - Date.now());
    }
    return this.#frames.splice(0);
  }

  /** Asserts that nothing arrives for `ms`. */
  async expectNothing(ms = 300): Promise<void> {
    await sleep(ms);
    if (this.#frames.length > 0) fail(`unexpected frame: ${JSON.stringify(this.#frames[0])}`);
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

  async #take(find: () => number, ms: number): Promise<Frame | undefined> {
    const deadline = Date.now() + ms;
    while (true) {
      const index = find();
      if (index >= 0) return this.#frames.splice(index, 1)[0];
      if (this.#ended || Date.now() >= deadline) return undefined;
      await this.#wait(deadline - Date.now());
    }
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#waiter = () => {
        this.#waiter = undefined;
        done();
      };
    });
  }
}
