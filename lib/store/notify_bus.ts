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

/**
 * LISTENs for what the database announces: the lobby's commits (chat_messages) and rooms' commits
 * and membership events (chat_rooms: 'room:id', or 'room:id:user' for a membership event), in
 * commit order. Every (re)LISTEN is followed by a catch-up.
 */
export async function listenForCommits(db: Database, listener: BusListener): Promise<void> {
  const onListen = () => listener.suspect();
  await db.listen(ROOMS_CHANNEL, (payload) => {
    const [room, id, user] = payload.split(":");
    if (user === undefined) listener.committed(room, Number(id));
    else listener.membership(room, Number(id), Number(user));
  }, onListen);
  await db.listen(LOBBY_CHANNEL, (payload) => listener.committed("lobby", Number(payload)), onListen);
}

export class NotifyBus implements Bus {
  readonly #db: Database;
  readonly #log: Logger;
  #listener: BusListener | undefined;
  readonly state: BusState = { kind: "notify", up: true, reconnects: 0 };

  constructor(db: Database, log: Logger) {
    this.#db = db;
    this.#log = log;
  }

  async start(listener: BusListener): Promise<void> {
    this.#listener = listener;
    await listenForCommits(this.#db, listener);
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

  follow(): void {
    // Every room's announcements come on one channel.
  }

  unfollow(): void {}

  async close(): Promise<void> {}
}
