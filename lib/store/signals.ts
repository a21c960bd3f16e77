// Small pushes that are not stored but must reach other servers: typing notices and read-marker
// moves. On a PostgreSQL server they travel by NOTIFY (every server, this one included, gets them
// from there); the embedded database serves one server, which hands them over directly.

import type { Logger } from "../core/log.ts";
import { type Database, databaseErrorFields } from "./db.ts";

const CHANNEL = "chat_signals";
const NOTIFY_SQL = `SELECT pg_notify('${CHANNEL}', $1::text)`;
/** NOTIFY's payload limit is 8000 bytes; a signal is far smaller, but never send one that is not. */
const MAX_PAYLOAD_CHARS = 2000;

/** A user's read marker moved (from connection `session` of server `server`). */
export interface ReadSignal {
  kind: "read";
  server: string;
  session: number;
  userId: number;
  room: string;
  id: number;
  unread: number;
}

/** A user started or stopped typing in a room. */
export interface TypingSignal {
  kind: "typing";
  userId: number;
  username: string;
  room: string;
  state: "start" | "stop";
}

export type Signal = ReadSignal | TypingSignal;

export class Signals {
  readonly #db: Database;
  readonly #log: Logger;
  #onSignal: (signal: Signal) => void = () => {};

  constructor(db: Database, log: Logger) {
    this.#db = db;
    this.#log = log;
  }

  /** Subscribes `onSignal` to every server's signals. */
  async start(onSignal: (signal: Signal) => void): Promise<void> {
    this.#onSignal = onSignal;
    if (this.#db.kind !== "postgres") return;
    await this.#db.listen(CHANNEL, (payload) => this.#received(payload), () => {});
  }

  /** Sends `signal` to every server (this one included). Lost when the database is away: a signal is not kept. */
  send(signal: Signal): void {
    if (this.#db.kind !== "postgres") {
      this.#onSignal(signal);
      return;
    }
    const payload = JSON.stringify(signal);
    if (payload.length > MAX_PAYLOAD_CHARS) return;
    this.#db.query(NOTIFY_SQL, [payload]).catch((err) => {
      this.#log.debug("signal not sent", databaseErrorFields(err));
    });
  }

  #received(payload: string): void {
    let signal: Signal;
    try {
      signal = JSON.parse(payload);
    } catch {
      return;
    }
    this.#onSignal(signal);
  }
}
