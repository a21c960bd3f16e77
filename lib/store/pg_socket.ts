// The TCP transport under postgres.js: a Node-style socket over Deno.connect, given to postgres.js
// through its `socket` option. Deno's node:net costs about as much CPU per small write as the
// rest of a message's handling (a quarter of the server's time in the fan-out bench); Deno's own
// TCP writes cost a fraction of that.
//
// What postgres.js asks of it (src/connection.js): the socket is handed over at once and written
// to before it is connected (writes wait); 'data' gets Buffers; a failure emits 'error', then
// 'close' with hadError = true; end() and destroy() emit 'close' once; readyState is 'open' while
// usable and 'closed' once 'close' is emitted (which waits for a write postgres.js had pending).

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";

const READ_BUFFER_BYTES = 64 * 1024;
/** How long 'close' waits for a write postgres.js had pending (see #emitLater). */
const CLOSE_EVENT_DELAY_MS = 20;

type WriteCallback = (err?: Error | null) => void;

export class DenoPgSocket extends EventEmitter {
  /** "closing" from when it is shut until 'close' is emitted (postgres.js waits for that). */
  readyState: "opening" | "open" | "closing" | "closed" = "opening";
  /** Shut: nothing is read or written any more. */
  #shut = false;
  #conn: Deno.TcpConn | undefined;
  #queue: Uint8Array[] = [];
  #callbacks: WriteCallback[] = [];
  #writing = false;
  #ending = false;
  #closeEmitted = false;
  #onWriteAfterClose: (() => void) | undefined;

  constructor(hostname: string, port: number) {
    super();
    void this.#open(hostname, port);
  }

  write(data: Uint8Array, callback?: WriteCallback): boolean {
    if (this.#shut) {
      callback?.(new Error("write after close"));
      this.#onWriteAfterClose?.();
      return false;
    }
    this.#queue.push(data);
    if (callback) this.#callbacks.push(callback);
    if (this.#conn && !this.#writing) void this.#flush();
    return true;
  }

  /** Writes `data` (if any), then closes. */
  end(data?: Uint8Array): this {
    if (data) this.write(data);
    this.#ending = true;
    if (!this.#writing && this.#queue.length === 0) this.#close();
    return this;
  }

  destroy(): this {
    this.#close();
    return this;
  }

  setKeepAlive(): this {
    // Deno.connect sockets get keep-alive when they open.
    return this;
  }

  // Flow control is only used by COPY streams, which the server does not use.
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }

  async #open(hostname: string, port: number): Promise<void> {
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname, port, transport: "tcp" });
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (this.#shut) {
      conn.close();
      return;
    }
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
    } catch {
      // The peer may already be gone; the read loop will tell.
    }
    this.#conn = conn;
    this.readyState = "open";
    if (this.#queue.length > 0) void this.#flush();
    await this.#read(conn);
  }

  async #read(conn: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    try {
      while (true) {
        const n = await conn.read(buffer);
        if (n === null) break;
        // Copied: postgres.js keeps incomplete messages across reads, and the buffer is reused.
        this.emit("data", Buffer.from(buffer.subarray(0, n)));
      }
      this.#close();
    } catch (err) {
      if (!this.#shut) this.#fail(err);
    }
  }

  async #flush(): Promise<void> {
    const conn = this.#conn!;
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && this.readyState === "open") {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : Buffer.concat(this.#queue);
        const callbacks = this.#callbacks;
        this.#queue = [];
        this.#callbacks = [];
        let offset = 0;
        while (offset < chunk.length) offset += await conn.write(chunk.subarray(offset));
        for (const callback of callbacks) callback();
      }
    } catch (err) {
      if (!this.#shut) this.#fail(err);
      return;
    } finally {
      this.#writing = false;
    }
    if (this.#ending) this.#close();
  }

  #fail(err: unknown): void {
    if (this.#shut) return;
    this.#shutDown();
    this.#emitLater(err instanceof Error ? err : new Error(String(err)));
  }

  /** Closes without an error (the peer's end, end(), destroy()). */
  #close(): void {
    if (this.#shut) return;
    this.#shutDown();
    this.#emitLater(undefined);
  }

  #shutDown(): void {
    this.#shut = true;
    this.readyState = "closing";
    const error = new Error("socket closed");
    for (const callback of this.#callbacks) callback(error);
    this.#queue = [];
    this.#callbacks = [];
    try {
      this.#conn?.close();
    } catch {
      // Already closed by the peer.
    }
  }

  /**
   * Emits 'error' (if any) and 'close' once postgres.js has no write pending. postgres.js (3.4.9)
   * sends small writes from a setImmediate, and on 'close' clears that immediate without
   * forgetting it (nor the bytes it held): a connection whose socket closed with such a write
   * pending never writes again (its next startup message waits for ever: CONNECT_TIMEOUT on every
   * query). So 'close' waits for that write to arrive (it is dropped here), or for
   * CLOSE_EVENT_DELAY_MS without one, which is longer than any immediate takes to run.
   */
  #emitLater(error: Error | undefined): void {
    const emit = () => {
      if (this.#closeEmitted) return;
      this.#closeEmitted = true;
      clearTimeout(timer);
      this.readyState = "closed";
      // An 'error' nobody listens for throws; postgres.js stops listening once it has let go of
      // the socket (a pool that was ended), and a throw here would be an uncaught exception.
      if (error && this.listenerCount("error") > 0) this.emit("error", error);
      this.emit("close", error !== undefined);
    };
    const timer = setTimeout(emit, CLOSE_EVENT_DELAY_MS);
    // After the write that arrives: postgres.js forgets its immediate once that write returns.
    this.#onWriteAfterClose = () => queueMicrotask(emit);
  }
}

/**
 * The host and port of a plain-TCP PostgreSQL URL, or undefined when the URL needs what this
 * transport does not do (TLS, a Unix socket, several hosts): postgres.js then uses node:net.
 */
export function plainTcpTarget(url: string): { hostname: string; port: number } | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const params = parsed.searchParams;
  const sslmode = params.get("sslmode") ?? "";
  if (params.has("ssl") || (sslmode !== "" && sslmode !== "disable") || params.has("host")) return undefined;
  if (!parsed.hostname || parsed.hostname.includes(",")) return undefined;
  const hostname = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname;
  return { hostname, port: parsed.port ? Number(parsed.port) : 5432 };
}
