// The registry every connection joins, whatever its transport (TCP, TLS, WebSocket): limits per
// server and per address, the idle timeout for connections not logged in, and the graceful stop.

import type { Dispatcher } from "../chat/dispatcher.ts";
import { ChatError } from "../core/errors.ts";
import type { Hub } from "../chat/hub.ts";
import type { Logger } from "../core/log.ts";
import type { MessageService } from "../chat/messages.ts";
import type { Metrics } from "../core/metrics.ts";
import { encodeLine, errorReply } from "../wire/protocol.ts";
import type { CloseReason, Session } from "../chat/session.ts";
import { RefusalLog } from "./refusal_log.ts";
import { QuietCollector } from "../core/quiet_gc.ts";
import { settledWithin } from "../core/settled_within.ts";
import { type Connection, type ConnectionHost, type Transport, TRANSPORTS } from "./transport.ts";

export interface RegistryOptions {
  maxLineBytes: number;
  maxOutboundBytes: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  loginIdleTimeoutSec: number;
  /** The graceful stop's deadline: half of it goes to in-flight sends and draining output. */
  shutdownTimeoutSec: number;
}

/** Why a connection is refused, and the frame that says so (encoded once, sent to every one refused). */
interface Refusal {
  reason: string;
  frame: Uint8Array;
}

function refusal(reason: string): Refusal {
  return { reason, frame: encodeLine(errorReply(new ChatError("too_many_connections", reason))) };
}

const SHUTTING_DOWN = refusal("Server is shutting down");
const SERVER_FULL = refusal("Server is at its connection limit");
const ADDRESS_FULL = refusal("Too many connections from your address");

/**
 * The share of SHUTDOWN_TIMEOUT_SEC that shutdown waits, in all, for in-flight sends and for output
 * to drain; the rest is for closing the listeners, presence and the database.
 */
const SHUTDOWN_GRACE_SHARE = 0.5;
/** How often the coarse clock ticks (and idle connections are looked for), at most. */
const CLOCK_TICK_MS = 1000;

export class ConnectionRegistry implements ConnectionHost {
  readonly log: Logger;
  readonly maxLineBytes: number;
  readonly maxOutboundBytes: number;
  readonly #options: RegistryOptions;
  readonly #dispatcher: Dispatcher;
  readonly #hub: Hub;
  readonly #messages: MessageService;
  readonly #metrics: Metrics;
  readonly #connections = new Set<Connection>();
  readonly #connectionsPerIp = new Map<string, number>();
  readonly #connectionsByTransport = new Map<Transport, number>(TRANSPORTS.map((t) => [t, 0]));
  /** Read loops running (a count, not a set of promises: nothing per connection). */
  #reading = 0;
  #readingEnded: (() => void) | undefined;
  #nextId = 1;
  readonly #refusals: RefusalLog;
  readonly #quietGc = new QuietCollector();
  /** A request came in since the last tick. */
  #busy = false;
  readonly #clockTimer: ReturnType<typeof setInterval>;
  readonly #clockTickMs: number;
  /** performance.now() as of the last tick: connections stamp their activity with it, for free. */
  clock = performance.now();
  /** Run when the graceful stop begins, before connections close (the listeners stop accepting). */
  readonly #onStop: (() => Promise<void>)[] = [];
  #stopping: Promise<void> | undefined;
  #connectionsClosed: () => void = () => {};

  constructor(
    options: RegistryOptions,
    dispatcher: Dispatcher,
    hub: Hub,
    messages: MessageService,
    log: Logger,
    metrics: Metrics,
  ) {
    this.#options = options;
    this.#dispatcher = dispatcher;
    this.#hub = hub;
    this.#messages = messages;
    this.#metrics = metrics;
    this.log = log;
    this.#refusals = new RefusalLog(log);
    this.maxLineBytes = options.maxLineBytes;
    this.maxOutboundBytes = options.maxOutboundBytes;
    // The clock ticks even with the idle timeout off, so that activity stamps stay true.
    this.#clockTickMs = options.loginIdleTimeoutSec > 0
      ? Math.min(CLOCK_TICK_MS, options.loginIdleTimeoutSec * 250)
      : CLOCK_TICK_MS;
    this.#clockTimer = setInterval(() => this.#tick(), this.#clockTickMs);
    metrics.addGauge(
      "chat_connections",
      "Open connections by transport",
      () => TRANSPORTS.map((transport) => [{ transport }, this.#connectionsByTransport.get(transport) ?? 0] as const),
    );
    metrics.addGauge("chat_logged_in_connections", "Connections logged in", () => hub.loggedIn);
    metrics.addGauge(
      "chat_quiet_collections",
      "Garbage collections run after a burst, once the server went quiet (lib/core/quiet_gc.ts)",
      () => this.#quietGc.collections,
    );
  }

  /** Addresses the refusal log keeps state for (bounded whatever the number of addresses refused). */
  get trackedRefusalAddresses(): number {
    return this.#refusals.trackedAddresses;
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** False once the graceful stop has begun. */
  get accepting(): boolean {
    return this.#stopping === undefined;
  }

  /** An id for a new connection of any transport. */
  nextConnectionId(): number {
    return this.#nextId++;
  }

  handleLine(session: Session, line: Uint8Array): Promise<void> | void {
    this.#busy = true;
    return this.#dispatcher.handleLine(session, line);
  }

  settled(session: Session): Promise<void> | undefined {
    return this.#dispatcher.settled(session);
  }

  connectionClosed(connection: Connection, reason: CloseReason, detail?: string): void {
    if (!this.#connections.delete(connection)) return;
    this.#hub.leave(connection);
    const left = (this.#connectionsPerIp.get(connection.remoteAddress) ?? 1) - 1;
    if (left <= 0) this.#connectionsPerIp.delete(connection.remoteAddress);
    else this.#connectionsPerIp.set(connection.remoteAddress, left);
    const transport = connection.transport;
    this.#connectionsByTransport.set(transport, (this.#connectionsByTransport.get(transport) ?? 1) - 1);
    if (reason !== "too_many_connections") {
      this.log.info("client disconnected", {
        session: connection.id,
        address: connection.remoteAddress,
        transport,
        reason,
        error: detail,
      });
    }
    if (this.#connections.size === 0) this.#connectionsClosed();
  }

  wrote(): void {
    this.#metrics.socketWrites.inc();
  }

  slowConsumer(connection: Connection, backlogBytes: number): void {
    this.#metrics.slowConsumers.inc();
    this.log.warn("slow consumer disconnected", {
      session: connection.id,
      address: connection.remoteAddress,
      transport: connection.transport,
      username: connection.user?.username,
      backlog_bytes: backlogBytes,
    });
  }

  /**
   * Registers a new connection of any transport, within the limits. Returns false (and closes it
   * with too_many_connections) when it is over one, or when the server is stopping.
   */
  admit(connection: Connection): boolean {
    const address = connection.remoteAddress;
    const fromAddress = this.#connectionsPerIp.get(address) ?? 0;
    const refusal = !this.accepting
      ? SHUTTING_DOWN
      : this.#connections.size >= this.#options.maxConnections
      ? SERVER_FULL
      : fromAddress >= this.#options.maxConnectionsPerIp
      ? ADDRESS_FULL
      : undefined;
    // A refused connection counts until its last frame is written (shutdown waits for it too).
    this.#connections.add(connection);
    this.#connectionsPerIp.set(address, fromAddress + 1);
    const transport = connection.transport;
    this.#connectionsByTransport.set(transport, (this.#connectionsByTransport.get(transport) ?? 0) + 1);
    if (refusal) {
      this.#metrics.connectionsRefused.inc();
      this.#refusals.refused(address, refusal.reason, this.clock);
      // A flood is made of these: the frame was encoded once, for all.
      connection.close("too_many_connections", refusal.frame);
      return false;
    }
    this.log.info("client connected", { session: connection.id, address, transport });
    return true;
  }

  /** `stop` runs when the graceful stop begins: a listener stops accepting there. */
  onStop(stop: () => Promise<void>): void {
    this.#onStop.push(stop);
  }

  readStarted(): void {
    this.#reading++;
  }

  readEnded(): void {
    if (--this.#reading === 0) this.#readingEnded?.();
  }

  #tick(): void {
    this.clock = performance.now();
    this.#refusals.tick(this.clock);
    this.#quietGc.tick(this.#busy, this.clock);
    this.#busy = false;
    if (this.#options.loginIdleTimeoutSec > 0) this.#closeIdle();
  }

  #closeIdle(): void {
    // Activity stamps lag by up to one tick: allow for it, so that no connection is closed early.
    const deadline = this.clock - this.#options.loginIdleTimeoutSec * 1000 - this.#clockTickMs;
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
    this.#stopping ??= this.#stopGracefully();
    return this.#stopping;
  }

  async #stopGracefully(): Promise<void> {
    clearInterval(this.#clockTimer);
    // In-flight sends finish; new requests are refused rather than half-served.
    this.#dispatcher.stopAccepting();
    await Promise.all(this.#onStop.map((stop) => stop()));
    const deadline = performance.now() + this.#options.shutdownTimeoutSec * 1000 * SHUTDOWN_GRACE_SHARE;
    await withTimeout(this.#messages.drained(), deadline);
    const allClosed = new Promise<void>((resolve) => this.#connectionsClosed = resolve);
    for (const connection of this.#connections) connection.close("server_shutdown");
    if (this.#connections.size > 0) await withTimeout(allClosed, deadline);
    if (this.#reading > 0) await withTimeout(new Promise<void>((resolve) => this.#readingEnded = resolve), deadline);
  }
}

/** Waits for `promise`, but not past `deadline` (a performance.now() time). */
function withTimeout(promise: Promise<void>, deadline: number): Promise<void> {
  return settledWithin(promise, deadline - performance.now());
}
