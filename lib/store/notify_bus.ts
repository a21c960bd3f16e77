// The default bus: PostgreSQL's LISTEN/NOTIFY. The database announces every commit (schema.sql:
// the lobby's last id on chat_messages, 'room:id[:user]' on chat_rooms) and the servers read the
// rows back. Nothing to run but PostgreSQL; the embedded database serves one server and has none.

import type { Logger } from "../core/log.ts";
import type { Bus, BusListener, BusState } from "./bus.ts";
import { type Database, databaseErrorFields } from "./db.ts";

export const LOBBY_CHANNEL = "chat_messages";
const ROOMS_CHANNEL = "chat_rooms";
const SIGNALS_CHANNEL = "chat_signals";
const SIGNAL_SQL = `SELECT pg_notify('${SIGNALS_CHANNEL}', $1::text)`;
/** NOTIFY's payload limit is 8000 bytes; a signal is far smaller, but never send one that is not. */
const MAX_SIGNAL_CHARS = 2000;

/** How long a barrier waits for its own notice (the listener may be reconnecting). */
const BARRIER_WAIT_MS = 2000;
/** A barrier's notice on chat_rooms: '~' and a token of the server that sent it (room ids never start so). */
const BARRIER_PREFIX = "~";

/**
 * NOTIFY round trips. PostgreSQL delivers notices in commit order, so once a notice this server
 * sent comes back, every notice of a transaction that committed before it was sent has come too.
 */
export class NoticeBarriers {
  readonly #db: Database;
  readonly #token = crypto.randomUUID().slice(0, 8);
  #next = 0;
  readonly #waiting = new Map<string, () => void>();
  #closed = false;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Resolves once every notice of what committed before the call has been handed on (at most
   * BARRIER_WAIT_MS: a listener that is reconnecting catches up by itself afterwards).
   */
  wait(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const payload = `${BARRIER_PREFIX}${this.#token}.${this.#next++}`;
    return new Promise((resolve) => {
      // The embedded database runs one transaction at a time and hands notices over at once: a
      // turn of the event loop lets the continuations of what committed before run.
      const embedded = this.#db.kind === "embedded";
      const timer = setTimeout(settle, embedded ? 0 : BARRIER_WAIT_MS);
      const waiting = this.#waiting;
      function settle() {
        clearTimeout(timer);
        waiting.delete(payload);
        resolve();
      }
      waiting.set(payload, settle);
      // On the server's own control connection: never one of the users' pool slots, which a
      // barrier sent as the database goes away would otherwise hold until its query timed out.
      if (!embedded) {
        this.#db.query(`SELECT pg_notify('${ROOMS_CHANNEL}', $1::text)`, [payload], {
          lane: "control",
          timeoutMs: BARRIER_WAIT_MS,
        }).catch(settle);
      }
    });
  }

  /** Whether `payload` is a barrier's notice (this server's or another's); settles its wait if it is ours. */
  reached(payload: string): boolean {
    if (!payload.startsWith(BARRIER_PREFIX)) return false;
    this.#waiting.get(payload)?.();
    return true;
  }

  /** Settles every wait, and every later one at once (the server stops). */
  close(): void {
    this.#closed = true;
    for (const settle of [...this.#waiting.values()]) settle();
  }
}

/**
 * LISTENs for what the database announces: the lobby's commits (chat_messages) and rooms' commits
 * and membership events (chat_rooms: 'room:id', or 'room:id:user' for a membership event), in
 * commit order. Every (re)LISTEN is followed by a catch-up.
 */
export async function listenForCommits(db: Database, listener: BusListener, barriers: NoticeBarriers): Promise<void> {
  const onListen = () => listener.suspect();
  await db.listen(ROOMS_CHANNEL, (payload) => {
    if (barriers.reached(payload)) return;
    const [room, id, user] = payload.split(":");
    if (user === undefined) listener.committed(room, Number(id));
    else listener.membership(room, Number(id), Number(user));
  }, onListen);
  await db.listen(LOBBY_CHANNEL, (payload) => listener.committed("lobby", Number(payload)), onListen);
}

export class NotifyBus implements Bus {
  readonly #db: Database;
  readonly #log: Logger;
  readonly #barriers: NoticeBarriers;
  #listener: BusListener | undefined;
  readonly state: BusState = { kind: "notify", up: true, reconnects: 0 };

  constructor(db: Database, log: Logger) {
    this.#db = db;
    this.#log = log;
    this.#barriers = new NoticeBarriers(db);
  }

  async start(listener: BusListener): Promise<void> {
    this.#listener = listener;
    await listenForCommits(this.#db, listener, this.#barriers);
    await this.#db.listen(SIGNALS_CHANNEL, (payload) => listener.signal(payload), () => listener.suspect());
  }

  publish(): void {
    // The database announced the commit itself.
  }

  membership(room: string, id: number, userId: number): void {
    // A server database announces it; the embedded one runs one transaction at a time, so the
    // order these calls come in is commit order.
    if (this.#db.kind === "embedded") this.#listener?.membership(room, id, userId);
  }

  signal(payload: string): void {
    if (this.#db.kind === "embedded") {
      this.#listener?.signal(payload);
      return;
    }
    if (payload.length > MAX_SIGNAL_CHARS) return;
    this.#db.query(SIGNAL_SQL, [payload]).catch((err) => this.#log.debug("signal not sent", databaseErrorFields(err)));
  }

  noticeBarrier(): Promise<void> {
    return this.#barriers.wait();
  }

  follow(): void {
    // Every room's announcements come on one channel.
  }

  unfollow(): void {}

  close(): Promise<void> {
    this.#barriers.close();
    return Promise.resolve();
  }
}
