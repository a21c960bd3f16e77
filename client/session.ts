// A logged-in session that outlives its connections: connects, registers and logs in, shows
// history, and when the connection drops reconnects with backoff, logs in again and catches up
// on what it missed, so every message is delivered exactly once and in id order. Sends are
// exactly-once across a drop or an `unavailable` too: each message keeps its client_msg_id and is
// sent again with it until acknowledged. With `rooms`, it speaks protocol v2 (hello): rooms' and
// DMs' events come too, each room's once and in order, caught up after a reconnect like the lobby.

import { backoffDelay, type BackoffPolicy, DEFAULT_BACKOFF } from "./backoff.ts";
import { Connection } from "./connection.ts";
import { ConnectFailed, ConnectionLost, type LossCause, NotConnected, ServerRefusal, SessionEnded } from "./errors.ts";
import { Outbox, type Outgoing, sendFrame } from "./outbox.ts";
import { Sequencer } from "./sequencer.ts";
import { CATCH_UP_PAGE, catchUp, historyOn, initialSync, type MessageOrigin } from "./sync.ts";
import type { Frame } from "../lib/wire/protocol.ts";
import { type ChatMessage, historyMessages, sameUser, toChatMessage } from "./wire.ts";
import { LOBBY, type RoomEvent, RoomFeeds, toRoomEvent } from "./rooms.ts";

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
  /** Speak protocol v2 (rooms, DMs); a server without it is spoken to in v1. */
  readonly rooms?: boolean;
}

export type { MessageOrigin } from "./sync.ts";

export type SessionEvent =
  | { kind: "message"; message: ChatMessage; origin: MessageOrigin }
  /** A room's or DM's event (protocol v2): a message, or a membership change. */
  | { kind: "room_event"; event: RoomEvent; origin: MessageOrigin }
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
/** How often one message is sent again after `unavailable` (the database is away for a moment). */
const MAX_UNAVAILABLE_RESENDS = 5;
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
  /** Wakes every pending #sleep when the session ends. */
  readonly #wakeSleepers = new Set<() => void>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  /** Sends go one at a time, in the order typed, so a resend never overtakes a later message. */
  #sending: Promise<unknown> = Promise.resolve();
  readonly #outbox = new Outbox();
  readonly #rooms = new RoomFeeds();
  /** The server speaks protocol v2 on this session's connections. */
  #v2 = false;
  /**
   * True once the server echoed a client_msg_id: it deduplicates resends (protocol v1.1). Until
   * then a send whose fate a drop left unknown is looked up in history before it is sent again.
   */
  #serverDeduplicates = false;

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

  /** Rooms and DMs are available (protocol v2). */
  get roomsEnabled(): boolean {
    return this.#v2;
  }

  /** Settles when the session is over: closed, logged out, refused or given up. */
  get ended(): Promise<SessionEnded> {
    return this.#endedSignal.promise;
  }

  isOwn(message: ChatMessage): boolean {
    return sameUser(message.sender, this.#username);
  }

  /**
   * Sends a message with a new client_msg_id and resolves with it as stored (its id and
   * timestamp) once the server acknowledged it: its own broadcast came back, or a
   * `"duplicate":true` reply naming the original. Waits for a reconnect when offline, and sends
   * again with the same client_msg_id after a drop or `unavailable`. Rejects with ServerRefusal
   * when refused, or SessionEnded.
   */
  send(text: string, room: string = LOBBY): Promise<ChatMessage> {
    const outgoing = this.#outbox.add(text, undefined, room);
    const result = this.#sending.then(() => this.#sendUntilAcknowledged(outgoing))
      .finally(() => this.#outbox.settle(outgoing));
    this.#sending = result.catch(() => undefined);
    return result;
  }

  /** Messages typed and not yet acknowledged, oldest first. */
  get unacknowledged(): readonly Outgoing[] {
    return this.#outbox.pending;
  }

  /** `get_history`; throws NotConnected while offline, ServerRefusal or ConnectionLost. */
  async history(query: { limit: number; before?: number; after?: number }): Promise<ChatMessage[]> {
    return historyMessages(await this.#request({ type: "get_history", ...query }));
  }

  /** A room's history, its events oldest first (v2). */
  async roomHistory(room: string, query: { limit: number; before?: number; after?: number }): Promise<RoomEvent[]> {
    const reply = await this.#request({ type: "get_history", room, ...query });
    return roomEvents(reply, room);
  }

  /** Any other request (the rooms' requests of v2); a refusal throws ServerRefusal. */
  request(frame: Frame): Promise<Frame> {
    return this.#request(frame);
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
      this.#rooms.hold();
      if (this.options.rooms) this.#v2 = (await conn.request({ type: "hello", protocol: 2 })).type === "hello_response";
      const deliver = (message: ChatMessage, origin: MessageOrigin) => this.#deliver(message, origin);
      let missed = first
        ? await initialSync(conn, this.#sequencer, this.options.initialHistory, deliver)
        : await catchUp(conn, this.#sequencer, deliver, () => this.#listener({ kind: "history_reset" }));
      if (!first) missed += await this.#catchUpRooms(conn);
      for (const event of this.#rooms.release()) this.#listener({ kind: "room_event", event, origin: "live" });
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

  /** After a reconnect: each room's events after the last one delivered. Returns how many. */
  async #catchUpRooms(conn: Connection): Promise<number> {
    let missed = 0;
    for (const [room, last] of [...this.#rooms.positions]) {
      let after = last;
      // Bounded: each page moves `after` forward or ends the room's catch-up.
      while (true) {
        const reply = await conn.request({ type: "get_history", room, after, limit: CATCH_UP_PAGE });
        // Left or kicked meanwhile: nothing more of it is ours.
        if (reply.type !== "history_response") break;
        const events = this.#rooms.page(roomEvents(reply, room));
        for (const event of events) this.#listener({ kind: "room_event", event, origin: "missed" });
        missed += events.length;
        const newest = roomEvents(reply, room).at(-1)?.id ?? after;
        if (newest <= after) break;
        after = newest;
      }
    }
    return missed;
  }

  #onFrame(generation: number, frame: Frame): void {
    if (generation !== this.#generation || this.#ended) return;
    const room = typeof frame.room === "string" && frame.room !== LOBBY ? frame.room : undefined;
    if (room !== undefined) {
      if (this.#outbox.acknowledged(frame)) this.#serverDeduplicates = true;
      const event = toRoomEvent(frame);
      if (!event) return;
      for (const ready of this.#rooms.live(event)) this.#listener({ kind: "room_event", event: ready, origin: "live" });
      return;
    }
    if (frame.type !== "new_message") return;
    if (this.#outbox.acknowledged(frame)) this.#serverDeduplicates = true;
    // A duplicate reply names a message delivered before (or in the catch-up): the sequencer,
    // which drops ids already delivered, shows it once.
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

  async #sendUntilAcknowledged(outgoing: Outgoing): Promise<ChatMessage> {
    let drops = 0;
    let unavailable = 0;
    while (true) {
      const conn = await this.#whenReady();
      // Our message will get a larger id than any delivered so far.
      const since = this.#sequencer.lastId ?? 0;
      let reply: Frame;
      try {
        reply = await conn.request(sendFrame(outgoing));
      } catch (err) {
        if (!(err instanceof ConnectionLost)) throw err;
        // The server names this line as the reason it closed: sending it again would do the same.
        if (err.loss.kind === "closed" && err.loss.serverError?.code === "line_too_long") throw err.loss.serverError;
        if (++drops > MAX_RESENDS) throw err;
        const stored = await this.#storedBefore(outgoing, since);
        if (stored) return stored;
        continue;
      }
      const message = reply.type === "new_message" ? toChatMessage(reply) : undefined;
      if (message) {
        if (reply.client_msg_id === outgoing.clientMsgId) this.#serverDeduplicates = true;
        return message;
      }
      const refusal = ServerRefusal.fromFrame(reply);
      // Stored or not, `unavailable` leaves unknown: the same client_msg_id makes sending again safe.
      if (refusal.code !== "unavailable" || ++unavailable > MAX_UNAVAILABLE_RESENDS) throw refusal;
      if (!await this.#sleep(refusal.retryAfterMs ?? backoffDelay(unavailable - 1))) {
        throw this.#ended ?? new SessionEnded("closed");
      }
      const stored = await this.#storedBefore(outgoing, since);
      if (stored) return stored;
    }
  }

  /**
   * Before sending again: a server that deduplicates answers a resend with the original, so
   * there is nothing to look up; with one that does not, our own message in history is the ack.
   */
  async #storedBefore(outgoing: Outgoing, since: number): Promise<ChatMessage | undefined> {
    return this.#serverDeduplicates ? undefined : await this.#findOwn(outgoing.text, since);
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
      const wake = () => {
        clearTimeout(timer);
        this.#wakeSleepers.delete(wake);
        resolve(false);
      };
      const timer = setTimeout(() => {
        this.#wakeSleepers.delete(wake);
        resolve(true);
      }, ms);
      this.#wakeSleepers.add(wake);
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
    for (const wake of [...this.#wakeSleepers]) wake();
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

/** The events of a room's `history_response`, oldest first, skipping malformed entries. */
function roomEvents(reply: Frame, room: string): RoomEvent[] {
  const list = Array.isArray(reply.messages) ? reply.messages : [];
  return list.map((item) => toRoomEvent(item, room)).filter((e): e is RoomEvent => e !== undefined);
}

function isRetryable(err: unknown): boolean {
  if (err instanceof ConnectFailed || err instanceof ConnectionLost) return true;
  return err instanceof ServerRefusal && RETRYABLE_CODES.has(err.code);
}
