// The line protocol's listeners: plain TCP on PORT, and TLS on TLS_PORT when configured. Each
// accepted socket becomes a LineConnection admitted to the registry.

import type { Logger } from "../core/log.ts";
import { LineConnection } from "./line_connection.ts";
import type { ConnectionRegistry } from "./registry.ts";
import type { TlsFiles } from "./tls.ts";
import type { Transport } from "./transport.ts";

export interface LineListenerOptions {
  host: string;
  port: number;
  /** A TLS listener on this port too (undefined = none; 0 = ephemeral). */
  tlsPort?: number;
  tls?: TlsFiles;
}

/** How long to wait after a failed accept (out of file descriptors, say) before the next. */
const ACCEPT_RETRY_MS = 100;
/**
 * Accepts in a row before the loop lets the event loop turn. accept() settles at once while
 * connections wait in the listen backlog, so under a flood the loop would otherwise take the whole
 * backlog (128 and more) in one go and hold up every other client's reads and writes meanwhile.
 */
const ACCEPTS_PER_TURN = 16;

export class LineListeners {
  readonly #registry: ConnectionRegistry;
  readonly #log: Logger;
  readonly #listener: Deno.TcpListener;
  readonly #tlsListener: Deno.TlsListener | undefined;
  readonly #acceptLoops: Promise<void>[] = [];
  #closed = false;

  /** Listens at once; closing happens when the registry's graceful stop begins. */
  constructor(options: LineListenerOptions, registry: ConnectionRegistry, log: Logger) {
    this.#registry = registry;
    this.#log = log;
    this.#listener = Deno.listen({ hostname: options.host, port: options.port, transport: "tcp" });
    if (options.tlsPort !== undefined && options.tls) {
      try {
        this.#tlsListener = Deno.listenTls({ hostname: options.host, port: options.tlsPort, ...options.tls });
      } catch (err) {
        this.#listener.close();
        throw err;
      }
    }
    this.#acceptLoops.push(this.#accept(this.#listener, "tcp"));
    if (this.#tlsListener) this.#acceptLoops.push(this.#accept(this.#tlsListener, "tls"));
    registry.onStop(() => this.close());
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** The TLS line-protocol port, if one is open. */
  get tlsPort(): number | undefined {
    return this.#tlsListener ? (this.#tlsListener.addr as Deno.NetAddr).port : undefined;
  }

  /** Stops accepting; settles once the accept loops have ended. Safe to call more than once. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const listener of [this.#listener, this.#tlsListener]) {
      try {
        listener?.close();
      } catch {
        // Already closed.
      }
    }
    await Promise.all(this.#acceptLoops);
  }

  async #accept(listener: Deno.Listener, transport: Transport): Promise<void> {
    for (let accepted = 1;; accepted++) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#closed) return;
        // Out of file descriptors and the like: log, breathe, and keep serving.
        this.#log.error("accept failed", { transport, error: err instanceof Error ? err.message : String(err) });
        await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      this.#admit(conn, transport);
      // A zero timer, unlike a microtask (or setImmediate), waits for the event loop to poll I/O.
      if (accepted % ACCEPTS_PER_TURN === 0) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  #admit(conn: Deno.Conn, transport: Transport): void {
    const registry = this.#registry;
    const connection = new LineConnection(registry.nextConnectionId(), conn, registry, transport);
    if (!registry.admit(connection)) return;
    if (transport === "tcp") {
      try {
        (conn as Deno.TcpConn).setNoDelay(true);
        (conn as Deno.TcpConn).setKeepAlive(true);
      } catch {
        // The peer may already be gone; the read loop will notice.
      }
    }
    connection.run();
  }
}
