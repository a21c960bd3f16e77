// A logged-in session that outlives its connections: connects, registers and logs in, shows
// history, and when the connection drops reconnects with backoff, logs in again and catches up
// on what it missed, so every message is delivered exactly once and in id order. Sends are
// exactly-once across a drop too.

import { backoffDelay, type BackoffPolicy, DEFAULT_BACKOFF } from "./backoff.ts";
import { Connection } from "./connection.ts";
import { ConnectFailed, ConnectionLost, type LossCause, NotConnected, ServerRefusal, SessionEnded } from "./errors.ts";
import { Sequencer } from "./sequencer.ts";
import { CATCH_UP_PAGE, catchUp, historyOn, initialSync, type MessageOrigin } from "./sync.ts";
import type { Frame } from "../lib/protocol.ts";
import { type ChatMessage, historyMessages, sameUser, toChatMessage } from "./wire.ts";

/** "if_free": register first, and an existing account of that name is fine (then just log in). */
export type RegisterMode = "no" | "if_free" | "new";

export interface SessionOptions {
  readonly hostname: string;
  readonly port: number;
  readonly username: string;
  readonly password: string;
  readonly register: RegisterMode;
  /** How many of the newest messages to deliver at start; 0: only what is sent from now on. */
  readonly initialHistory: number;
  /** Reconnect attempts after a drop before giving up (Infinity: keep trying). */
  readonly maxReconnectAttempts: number;
  readonly backoff?: BackoffPolicy;
}

export type { MessageOrigin } from "./sync.ts";

export type SessionEvent =
  | { kind: "message"; message: ChatMessage; origin: MessageOrigin }
  /** The connection dropped or a reconnect attempt failed (`cause`); the next try is in `retryInMs`. */
  | { kind: "lost"; cause: Error; attempt: number; retryInMs: number }
  | { kind: "reconnected"; missed: number }
  /** After a reconnect the server's newest message is older than the last one seen: a new database. */
  | { kind: "history_reset" }
  /** Gave up or was refused on a reconnect; not emitted for close() or logout(). */
  | { kind: "ended"; error: SessionEnded };

/** Receives every event in order. MUST NOT throw. */
export type SessionListener = (event: SessionEvent) => void;

/** A ping this often finds a dead peer that TCP would notice only much later. */
const HEARTBEAT_MS = 30_000;
const HEARTBEAT_TIMEOUT_MS = 10_000;
/** How often one message is sent again after drops that left its fate unknown. */
const MAX_RESENDS = 3;
/** Refusals on a reconnect that waiting can cure; any other refusal ends the session. */
const RETRYABLE_CODES = new Set([
  "too_many_attempts",
  "unavailable",
  "internal_error",
  "too_many_connections",
  "idle_timeout",
]);

export class ChatSession {
  readonly options: SessionOptions;
  readonly #listener: SessionListener;
  readonly #sequencer = new Sequencer();
  #username: string;
  /** The connection ready for requests, if any. */
  #conn: Connection | undefined;
  /** The connection being set up, so close() can abort it. */
  #connecting: Connection | undefined;
  /** Frames from older connections are ignored. */
  #generation = 0;
  #ready = ChatSession.#readyPromise();
  #ended: SessionEnded | undefined;
  readonly #endedSignal = Promise.withResolvers<SessionEnded>();
  #cancelSleep: (() => void) | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  /** Sends go one at a time, so a resend can never be confused with a later message. */
  #sending: Promise<unknown> = Promise.resolve();

  private constructor(options: SessionOptions, listener: SessionListener) {
    this.options = options;
    this.#listener = listener;
    this.#username = options.username;
  }

  /**
   * Connects, registers if asked, logs in and delivers the initial history. Rejects with
   * ConnectFailed, ServerRefusal (e.g. invalid_credentials) or ConnectionLost; nothing is left open then.
   */
  static async open(options: SessionOptions, listener: SessionListener): Promise<ChatSession> {
    const session = new ChatSession(options, listener);
    await session.#establish(true);
    return session;
  }

  /** The username as the server stores it. */
  get username(): string {
    return this.#username;
  }

  get connected(): boolean {
    return this.#conn !== undefined;
  }

  /** Settles when the session is over: closed, logged out, refused or given up. */
  get ended(): Promise<SessionEnded> {
    return this.#endedSignal.promise;
  }

  isOwn(message: ChatMessage): boolean {
    return sameUser(message.sender, this.#username);
  }

  /**
   * Sends a message and resolves with it as stored (its id and timestamp) once its broadcast
   * came back. Waits for a reconnect when offline. Rejects with ServerRefusal when refused, or
   * SessionEnded. After a drop mid-send it looks the message up before sending it again.
   */
  send(text: string): Promise<ChatMessage> {
    const result = this.#sending.then(() => this.#sendOnce(text));
    this.#sending = result.catch(() => undefined);
    return result;
  }

  /** `get_history`; throws NotConnected while offline, ServerRefusal or ConnectionLost. */
  async history(query: { limit: number; before?: number; after?: number }): Promise<ChatMessage[]> {
    return historyMessages(await this.#request({ type: "get_history", ...query }));
  }

  async users(): Promise<string[]> {
    const reply = await this.#request({ type: "list_users" });
    return Array.isArray(reply.users) ? reply.users.filter((u): u is string => typeof u === "string") : [];
  }

  /** Tells the server (when connected) and ends the session. */
  async logout(): Promise<void> {
    const conn = this.#conn;
    if (conn) await conn.request({ type: "logout" }, HEARTBEAT_TIMEOUT_MS).catch(() => undefined);
    this.close();
  }

  close(): void {
    this.#end(new SessionEnded("closed"));
  }

  async #request(frame: Frame): Promise<Frame> {
    if (this.#ended) throw this.#ended;
    const conn = this.#conn;
    if (!conn) throw new NotConnected();
    const reply = await conn.request(frame);
    if (reply.type === "error") throw ServerRefusal.fromFrame(reply);
    return reply;
  }

  /** Connects and logs in; then the initial history (first time) or the catch-up. Returns how many were missed. */
  async #establish(first: boolean): Promise<number> {
    const generation = ++this.#generation;
    const { hostname, port, password } = this.options;
    const conn = await Connection.open(hostname, port, (frame) => this.#onFrame(generation, frame));
    this.#connecting = conn;
    try {
      if (this.#ended) throw this.#ended;
      if (first && this.options.register !== "no") await this.#register(conn);
      const login = await conn.request({ type: "login", username: this.options.username, password });
      if (login.status !== "success") throw ServerRefusal.fromFrame(login);
      if (typeof login.username === "string") this.#username = login.username;
      // From here every broadcast reaches this connection: hold them until history is merged.
      this.#sequencer.hold();
      const deliver = (message: ChatMessage, origin: MessageOrigin) => this.#deliver(message, origin);
      const missed = first
        ? await initialSync(conn, this.#sequencer, this.options.initialHistory, deliver)
        : await catchUp(conn, this.#sequencer, deliver, () => this.#listener({ kind: "history_reset" }));
      if (this.#ended) throw this.#ended;
      this.#connecting = undefined;
      this.#conn = conn;
      this.#ready.resolve(conn);
      this.#startHeartbeat(conn);
      void conn.closed.then((cause) => this.#onLost(conn, cause));
      return missed;
    } catch (err) {
      this.#connecting = undefined;
      conn.close();
      throw err;
    }
  }

  async #register(conn: Connection): Promise<void> {
    const reply = await conn.request({
      type: "register",
      username: this.options.username,
      password: this.options.password,
    });
    if (reply.status === "success") return;
    const refusal = ServerRefusal.fromFrame(reply);
    if (refusal.code === "username_taken" && this.options.register === "if_free") return;
    throw refusal;
  }

  #onFrame(generation: number, frame: Frame): void {
    if (generation !== this.#generation || this.#ended || frame.type !== "new_message") return;
    const message = toChatMessage(frame);
    if (!message) return;
    for (const ready of this.#sequencer.live(message)) this.#deliver(ready, "live");
  }

  #deliver(message: ChatMessage, origin: MessageOrigin): void {
    this.#listener({ kind: "message", message, origin });
  }

  #onLost(conn: Connection, cause: LossCause): void {
    if (this.#conn !== conn) return;
    this.#conn = undefined;
    this.#stopHeartbeat();
    this.#ready = ChatSession.#readyPromise();
    if (!this.#ended) void this.#reconnect(new ConnectionLost(cause));
  }

  async #reconnect(firstCause: Error): Promise<void> {
    let cause = firstCause;
    const policy = this.options.backoff ?? DEFAULT_BACKOFF;
    for (let attempt = 0; attempt < this.options.maxReconnectAttempts; attempt++) {
      let delay = backoffDelay(attempt, Math.random, policy);
      if (cause instanceof ServerRefusal && cause.retryAfterMs !== undefined) {
        delay = Math.max(delay, cause.retryAfterMs);
      }
      this.#listener({ kind: "lost", cause, attempt, retryInMs: delay });
      if (!await this.#sleep(delay)) return;
      try {
        const missed = await this.#establish(false);
        this.#listener({ kind: "reconnected", missed });
        return;
      } catch (err) {
        if (this.#ended) return;
        if (!isRetryable(err)) {
          this.#end(new SessionEnded("refused", err));
          return;
        }
        cause = err as Error;
      }
    }
    this.#end(new SessionEnded("gave_up", cause));
  }

  async #sendOnce(text: string): Promise<ChatMessage> {
    for (let resend = 0;; resend++) {
      const conn = await this.#whenReady();
      // Our message will get a larger id than any delivered so far.
      const since = this.#sequencer.lastId ?? 0;
      try {
        const reply = await conn.request({ type: "send_message", message: text });
        const message = reply.type === "new_message" ? toChatMessage(reply) : undefined;
        if (message) return message;
        throw ServerRefusal.fromFrame(reply);
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        // The server names this line as the reason it closed: sending it again would do the same.
        if (err.loss.kind === "closed" && err.loss.serverError?.code === "line_too_long") throw err.loss.serverError;
        // Stored or not? The drop left it unknown: look before sending again.
        const stored = await this.#findOwn(text, since);
        if (stored) return stored;
        if (resend >= MAX_RESENDS) throw err;
      }
    }
  }

  /** Our own message with this text after `since`, if the server stored it. */
  async #findOwn(text: string, since: number): Promise<ChatMessage | undefined> {
    let after = since;
    // Bounded by the messages after `since`: each page moves `after` forward or ends the search.
    while (true) {
      const conn = await this.#whenReady();
      let page: ChatMessage[];
      try {
        page = await historyOn(conn, { limit: CATCH_UP_PAGE, after });
      } catch (err) {
        if (err instanceof ConnectionLost) continue;
        throw err;
      }
      const found = page.find((m) => m.message === text && this.isOwn(m));
      if (found) return found;
      const last = page.at(-1)?.id ?? after;
      if (last <= after) return undefined;
      after = last;
    }
  }

  #whenReady(): Promise<Connection> {
    if (this.#ended) return Promise.reject(this.#ended);
    return this.#ready.promise;
  }

  /** Resolves true after `ms`, or false at once if the session ends meanwhile. */
  #sleep(ms: number): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#cancelSleep = undefined;
        resolve(true);
      }, ms);
      this.#cancelSleep = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
  }

  #startHeartbeat(conn: Connection): void {
    this.#stopHeartbeat();
    // A ping without a pong in time closes the connection, which starts a reconnect.
    this.#heartbeat = setInterval(() => {
      conn.request({ type: "ping" }, HEARTBEAT_TIMEOUT_MS).catch(() => undefined);
    }, HEARTBEAT_MS);
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #end(error: SessionEnded): void {
    if (this.#ended) return;
    this.#ended = error;
    this.#stopHeartbeat();
    this.#cancelSleep?.();
    const conn = this.#conn;
    this.#conn = undefined;
    conn?.close();
    this.#connecting?.close();
    this.#ready.reject(error);
    this.#endedSignal.resolve(error);
    if (error.reason !== "closed") this.#listener({ kind: "ended", error });
  }

  static #readyPromise(): PromiseWithResolvers<Connection> {
    const ready = Promise.withResolvers<Connection>();
    // Nobody may be waiting when the session ends.
    ready.promise.catch(() => undefined);
    return ready;
  }
}

function isRetryable(err: unknown): boolean {
  if (err instanceof ConnectFailed || err instanceof ConnectionLost) return true;
  return err instanceof ServerRefusal && RETRYABLE_CODES.has(err.code);
}
