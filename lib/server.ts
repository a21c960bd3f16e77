// The TCP listener: accepts connections within the limits, keeps the registry of connections,
// closes idle unauthenticated ones, and shuts down in order.

import { ClientConnection, type ConnectionHost } from "./connection.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { ChatError } from "./errors.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import type { MessageService } from "./messages.ts";
import { encodeLine, errorReply } from "./protocol.ts";
import { TokenBuckets } from "./rate_limit.ts";
import type { Session } from "./session.ts";

export interface ServerOptions {
  host: string;
  port: number;
  maxLineBytes: number;
  maxOutboundBytes: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  loginIdleTimeoutSec: number;
}

/** How long shutdown waits, in all, for in-flight sends and for output to drain (main.ts exits by 10 s). */
const SHUTDOWN_GRACE_MS = 8000;

export class ChatServer implements ConnectionHost {
  readonly log: Logger;
  readonly maxLineBytes: number;
  readonly maxOutboundBytes: number;
  readonly #options: ServerOptions;
  readonly #dispatcher: Dispatcher;
  readonly #hub: Hub;
  readonly #messages: MessageService;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<ClientConnection>();
  readonly #connectionsPerIp = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();
  #nextId = 1;
  readonly #refusalLogs = new TokenBuckets(0.1, 1);
  #refusedSinceLog = 0;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  #idleCheckMs = 0;
  /** performance.now() as of the last idle check: connections stamp their activity with it, for free. */
  clock = performance.now();
  #acceptLoop: Promise<void>;
  #closing: Promise<void> | undefined;
  #connectionsClosed: () => void = () => {};

  constructor(options: ServerOptions, dispatcher: Dispatcher, hub: Hub, messages: MessageService, log: Logger) {
    this.#options = options;
    this.#dispatcher = dispatcher;
    this.#hub = hub;
    this.#messages = messages;
    this.log = log;
    this.maxLineBytes = options.maxLineBytes;
    this.maxOutboundBytes = options.maxOutboundBytes;
    this.#listener = Deno.listen({ hostname: options.host, port: options.port, transport: "tcp" });
    this.#acceptLoop = this.#accept();
    if (options.loginIdleTimeoutSec > 0) {
      this.#idleCheckMs = Math.min(1000, options.loginIdleTimeoutSec * 250);
      this.#idleTimer = setInterval(() => this.#closeIdle(), this.#idleCheckMs);
    }
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  handleLine(session: Session, line: Uint8Array): Promise<void> | void {
    return this.#dispatcher.handleLine(session, line);
  }

  closed(connection: ClientConnection, reason: string): void {
    if (!this.#connections.delete(connection)) return;
    this.#hub.leave(connection);
    const left = (this.#connectionsPerIp.get(connection.remoteAddress) ?? 1) - 1;
    if (left <= 0) this.#connectionsPerIp.delete(connection.remoteAddress);
    else this.#connectionsPerIp.set(connection.remoteAddress, left);
    if (reason !== "too_many_connections") {
      this.log.info("client disconnected", { session: connection.id, address: connection.remoteAddress, reason });
    }
    if (this.#connections.size === 0) this.#connectionsClosed();
  }

  async #accept(): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closing) return;
        // Out of file descriptors and the like: log, breathe, and keep serving.
        this.log.error("accept failed", { error: err instanceof Error ? err.message : String(err) });
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const connection = new ClientConnection(this.#nextId++, conn, this);
    const address = connection.remoteAddress;
    const fromAddress = this.#connectionsPerIp.get(address) ?? 0;
    const refusal = this.#connections.size >= this.#options.maxConnections
      ? "Server is at its connection limit"
      : fromAddress >= this.#options.maxConnectionsPerIp
      ? "Too many connections from your address"
      : undefined;
    this.#connections.add(connection);
    this.#connectionsPerIp.set(address, fromAddress + 1);
    if (refusal) {
      // A flood must not flood the log: one line per address every 10 s, with the count refused.
      this.#refusedSinceLog++;
      if (this.#refusalLogs.take(address) === 0) {
        this.log.warn("connection refused", { address, reason: refusal, refused: this.#refusedSinceLog });
        this.#refusedSinceLog = 0;
      }
      connection.close("too_many_connections", encodeLine(errorReply(new ChatError("too_many_connections", refusal))));
      return;
    }
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
    } catch {
      // The peer may already be gone; the read loop will notice.
    }
    this.log.info("client connected", { session: connection.id, address });
    const running = connection.run();
    this.#running.add(running);
    running.finally(() => this.#running.delete(running));
  }

  #closeIdle(): void {
    this.clock = performance.now();
    // Activity stamps lag by up to one check: allow for it, so that no connection is closed early.
    const deadline = this.clock - this.#options.loginIdleTimeoutSec * 1000 - this.#idleCheckMs;
    for (const connection of this.#connections) {
      if (connection.user === null && connection.lastActivity < deadline && !connection.closed) {
        const error = new ChatError("idle_timeout", "Closed after no login and no request in time");
        connection.close("idle_timeout", encodeLine(errorReply(error)));
      }
    }
  }

  /**
   * Stops accepting, lets in-flight sends commit and broadcast, lets output drain (bounded), then
   * closes every connection. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    if (this.#idleTimer !== undefined) clearInterval(this.#idleTimer);
    // In-flight sends finish; new requests are refused rather than half-served.
    this.#dispatcher.stopAccepting();
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#acceptLoop;
    const deadline = performance.now() + SHUTDOWN_GRACE_MS;
    await withTimeout(this.#messages.drained(), deadline);
    const allClosed = new Promise<void>((resolve) => this.#connectionsClosed = resolve);
    for (const connection of this.#connections) connection.close("server_shutdown");
    if (this.#connections.size > 0) await withTimeout(allClosed, deadline);
    await withTimeout(Promise.allSettled([...this.#running]).then(() => {}), deadline);
  }
}

/** Waits for `promise`, but not past `deadline` (a performance.now() time). */
async function withTimeout(promise: Promise<void>, deadline: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ms = Math.max(0, deadline - performance.now());
  try {
    await Promise.race([promise, new Promise<void>((resolve) => timer = setTimeout(resolve, ms))]);
  } finally {
    clearTimeout(timer);
  }
}
