// The logged-in connections of this server: by user, by protocol version, and the lobby's
// broadcast to them (v1 connections get v1's frames, v2 connections the same with "room":"lobby").

import type { Session, User } from "./session.ts";

interface OnlineUser {
  user: User;
  /** An array, not a Set: most users have one connection, and a Set costs ~0.1 KB more each. */
  sessions: Session[];
}

export class Hub {
  readonly #online = new Set<Session>();
  readonly #users = new Map<number, OnlineUser>();
  /** Logged-in connections that said hello with protocol 2. */
  #v2 = 0;
  /** Called when the set of online usernames changes (presence across servers follows it). */
  onUsersChanged: () => void = () => {};
  /** Called when a user's first connection logs in on this server, and when their last one leaves. */
  onUserOnline: (user: User) => void = () => {};
  onUserOffline: (user: User) => void = () => {};

  /** Logs `session` in as `user` (replacing any earlier user of that connection). */
  join(session: Session, user: User): void {
    this.leave(session);
    session.user = user;
    this.#online.add(session);
    if (session.protocol === 2) this.#v2++;
    let online = this.#users.get(user.id);
    if (!online) {
      online = { user, sessions: [session] };
      this.#users.set(user.id, online);
      this.onUserOnline(user);
      this.onUsersChanged();
      return;
    }
    online.sessions.push(session);
  }

  /** Logs `session` out; it stops receiving broadcasts. Safe to call more than once. */
  leave(session: Session): void {
    const user = session.user;
    session.user = null;
    if (!user || !this.#online.delete(session)) return;
    if (session.protocol === 2) this.#v2--;
    const online = this.#users.get(user.id);
    if (!online) return;
    const at = online.sessions.indexOf(session);
    if (at !== -1) online.sessions.splice(at, 1);
    if (online.sessions.length > 0) return;
    this.#users.delete(user.id);
    this.onUserOffline(online.user);
    this.onUsersChanged();
  }

  /** Sets a connection's protocol version (hello), keeping the count of v2 connections true. */
  setProtocol(session: Session, protocol: 1 | 2): void {
    if (session.protocol === protocol) return;
    if (this.#online.has(session)) this.#v2 += protocol === 2 ? 1 : -1;
    session.protocol = protocol;
  }

  /** The names of the users online on this server now, sorted. */
  usernames(): string[] {
    return [...this.#users.values()].map((u) => u.user.username).sort();
  }

  /** How many connections are logged in. */
  get loggedIn(): number {
    return this.#online.size;
  }

  /** How many logged-in connections speak protocol 2. */
  get loggedInV2(): number {
    return this.#v2;
  }

  isOnline(session: Session): boolean {
    return this.#online.has(session);
  }

  /** The user's logged-in connections on this server, if any. */
  sessionsOf(userId: number): readonly Session[] | undefined {
    return this.#users.get(userId)?.sessions;
  }

  /** Whether the user has a logged-in connection on this server. */
  hasUser(userId: number): boolean {
    return this.#users.has(userId);
  }

  /** The users logged in on this server. */
  users(): IterableIterator<number> {
    return this.#users.keys();
  }

  /**
   * Queues the lobby's bytes to every logged-in connection (`v2` to protocol-2 ones), or to a
   * connection in `personal` its own pieces (views of the same bytes around its own lines). Never
   * waits on any recipient.
   */
  broadcast(v1: Uint8Array, v2: Uint8Array, personal?: ReadonlyMap<Session, readonly Uint8Array[]>): void {
    if (!personal) {
      for (const session of this.#online) session.send(session.protocol === 2 ? v2 : v1);
      return;
    }
    for (const session of this.#online) {
      const pieces = personal.get(session);
      if (!pieces) session.send(session.protocol === 2 ? v2 : v1);
      else for (const piece of pieces) session.send(piece);
    }
  }
}
