// The test client side, with no database: a real TCP client, unique names, sanitizer options.
// Re-exported by _helpers.ts; process-only test files import this module directly.

import { forEachLine } from "../../lib/wire/framing.ts";
import type { Frame } from "../../lib/wire/protocol.ts";
import { FrameInbox } from "./inbox.ts";

export type { Frame } from "../../lib/wire/protocol.ts";
export { sanitized } from "./util.ts";
export { uniqueName } from "./inbox.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A real TCP client that reads frames in the background; every wait has a timeout. */
export class TestClient extends FrameInbox implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #readLoop: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    super();
    this.conn = conn;
    this.#readLoop = this.#read();
  }

  static async connect(port: number, hostname = "127.0.0.1"): Promise<TestClient> {
    return new TestClient(await Deno.connect({ hostname, port }));
  }

  async #read(): Promise<void> {
    try {
      await forEachLine(this.conn, 64 * 1024 * 1024, (line) => this.push(JSON.parse(decoder.decode(line))));
    } catch {
      // Closed by us or reset by the server: both end the stream.
    } finally {
      this.end();
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

  /** Waits until the server closes the connection; frames still unread are returned. */
  expectClosed(ms = 5000): Promise<Frame[]> {
    return this.untilEnded(ms, "connection");
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
