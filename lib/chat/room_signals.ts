// Typing notices and read-marker moves: not stored, pushed to v2 connections on every server.
// Typing goes to the room's other members (throttled silently: at most one start a room every
// few seconds); a read-marker move to the user's other connections.

import { TokenBuckets } from "../core/rate_limit.ts";
import type { ReadSignal, Signal, Signals, TypingSignal } from "../store/signals.ts";
import { encodeLine } from "../wire/protocol.ts";
import { LOBBY } from "../wire/room_fields.ts";
import type { Hub } from "./hub.ts";
import type { RoomDelivery } from "./room_delivery.ts";
import type { Session, User } from "./session.ts";

/** A "start" repeated within this time is not sent again (clients let a start lapse after 6 s). */
const START_EVERY_SEC = 3;
/** Typing signals of one user, all rooms together: a burst, then so many a second. */
const TYPING_PER_SEC = 2;
const TYPING_BURST = 6;

export class RoomSignals {
  readonly #hub: Hub;
  readonly #rooms: RoomDelivery;
  readonly #signals: Signals;
  readonly #serverId: string;
  readonly #starts = new TokenBuckets(1 / START_EVERY_SEC, 1);
  readonly #typing = new TokenBuckets(TYPING_PER_SEC, TYPING_BURST);

  constructor(hub: Hub, rooms: RoomDelivery, signals: Signals, serverId: string) {
    this.#hub = hub;
    this.#rooms = rooms;
    this.#signals = signals;
    this.#serverId = serverId;
  }

  start(): Promise<void> {
    return this.#signals.start((signal) => this.#received(signal));
  }

  /** `user` started or stopped typing in `room` (which they may post in): sent on unless throttled. */
  typing(user: User, room: string, state: "start" | "stop"): void {
    const key = `${user.id}:${room}`;
    if (state === "start" && this.#starts.take(key) > 0) return;
    if (state === "stop") this.#starts.reset(key);
    if (this.#typing.take(String(user.id)) > 0) return;
    this.#signals.send({ kind: "typing", userId: user.id, username: user.username, room, state });
  }

  /** `session`'s user moved their marker in `room`: their other connections are told. */
  readMoved(session: Session, user: User, room: string, id: number, unread: number): void {
    this.#signals.send({
      kind: "read",
      server: this.#serverId,
      session: session.id,
      userId: user.id,
      room,
      id,
      unread,
    });
  }

  #received(signal: Signal): void {
    if (signal.kind === "read") this.#read(signal);
    else if (signal.kind === "typing") this.#typed(signal);
  }

  #read(signal: ReadSignal): void {
    const sessions = this.#hub.sessionsOf(signal.userId);
    if (!sessions) return;
    const bytes = encodeLine({ type: "read", room: signal.room, id: signal.id, unread: signal.unread });
    for (const session of sessions) {
      if (session.protocol !== 2) continue;
      if (signal.server === this.#serverId && session.id === signal.session) continue;
      session.send(bytes);
    }
  }

  #typed(signal: TypingSignal): void {
    const bytes = encodeLine({ type: "typing", room: signal.room, user: signal.username, state: signal.state });
    const recipients = signal.room === LOBBY ? this.#hub.users() : this.#rooms.localMembers(signal.room)?.values();
    for (const userId of recipients ?? []) {
      if (userId === signal.userId) continue;
      for (const session of this.#hub.sessionsOf(userId) ?? []) if (session.protocol === 2) session.send(bytes);
    }
  }
}
