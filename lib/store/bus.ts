// The delivery bus between servers: how a server learns of what other servers committed. Two
// transports behind one interface, and the stream (message_stream.ts) does not know which:
// - PostgreSQL's LISTEN/NOTIFY (notify_bus.ts, the default): the database announces ids; the
//   server reads the rows back.
// - NATS core publish/subscribe (nats_bus.ts, with NATS_URL): each server publishes its committed
//   rows after COMMIT; others deliver them without reading back. Membership events are still
//   announced by NOTIFY (rare, and needed in commit order by servers that do not follow the room).
// Either way PostgreSQL stores and orders everything; a bus only carries what is committed, and
// whatever it misses is found by id and repaired from the database.

import type { FeedRow } from "./feed.ts";

/** What a bus hands to the stream. */
export interface BusListener {
  /** A feed ("lobby" or a room id) has rows committed through `id` (ids only: read them back). */
  committed(feed: string, id: number): void;
  /** Another server's rows of a feed: all the committed rows in (prev, last row's id]. */
  rows(feed: string, prev: number, rows: FeedRow[]): void;
  /** A membership event about `userId` (their server may have to follow the room). */
  membership(room: string, id: number, userId: number): void;
  /** A signal (typing, read marker) from any server. */
  signal(payload: string): void;
  /** The bus may have missed something (it (re)connected, or was cut off): catch up. */
  suspect(): void;
}

export interface BusState {
  /** "notify", or "nats". */
  kind: string;
  /** False while the bus is away (the server still serves, catching up from the database). */
  up: boolean;
  reconnects: number;
}

export interface Bus {
  readonly state: BusState;
  start(listener: BusListener): Promise<void>;
  /**
   * Announces an own batch's rows of a feed after its COMMIT: all the committed rows in (prev,
   * last]. The NOTIFY bus has nothing to do (the database announced them).
   */
  publish(feed: string, prev: number, rows: FeedRow[]): void;
  /**
   * A membership event about `userId` that this server committed, in a room it does not follow:
   * handed to this server's listener in commit order. A server database's NOTIFY does it (both
   * buses LISTEN for membership events); the embedded database, which runs one transaction at a
   * time, has it handed over at once.
   */
  membership(room: string, id: number, userId: number): void;
  /**
   * Resolves once every membership event committed before the call has been handed to the
   * listener (a NOTIFY round trip; bounded, for a listener that is away).
   */
  noticeBarrier(): Promise<void>;
  /** Sends a signal to every server, this one included. Lost when the bus is away. */
  signal(payload: string): void;
  /** Starts or stops carrying a room's events to this server. */
  follow(room: string): void;
  unfollow(room: string): void;
  close(): Promise<void>;
}
