// The logged-in connections of this server and the broadcast to them.

import type { Session, User } from "./session.ts";

export class Hub {
  readonly #online = new Set<Session>();
  /** Online connection count per username, for list_users. */
  readonly #connectionsByName = new Map<string, number>();
  /** Called when the set of online usernames changes (presence across servers follows it). */
  onUsersChanged: () => void = () => {};

  /** Logs `session` in as `user` (replacing any earlier user of that connection). */
  join(session: Session, user: User): void {
    this.leave(session);
    session.user = user;
    this.#online.add(session);
    const count = this.#connectionsByName.get(user.username) ?? 0;
    this.#connectionsByName.set(user.username, count + 1);
    if (count === 0) this.onUsersChanged();
  }

  /** Logs `session` out; it stops receiving broadcasts. Safe to call more than once. */
  leave(session: Session): void {
    const user = session.user;
    session.user = null;
    if (!user || !this.#online.delete(session)) return;
    const count = (this.#connectionsByName.get(user.username) ?? 1) - 1;
    if (count > 0) {
      this.#connectionsByName.set(user.username, count);
      return;
    }
    this.#connectionsByName.delete(user.username);
    this.onUsersChanged();
  }

  /** The names of the users online on this server now, sorted. */
  usernames(): string[] {
    return [...this.#connectionsByName.keys()].sort();
  }

  /** How many connections are logged in. */
  get loggedIn(): number {
    return this.#online.size;
  }

  /**
   * Queues the same bytes to every logged-in connection, or to a connection in `personal` its
   * own pieces (views of the same bytes around its own lines). Never waits on any recipient.
   */
  broadcast(bytes: Uint8Array, personal?: ReadonlyMap<Session, readonly Uint8Array[]>): void {
    if (!personal) {
      for (const session of this.#online) session.send(bytes);
      return;
    }
    for (const session of this.#online) {
      const pieces = personal.get(session);
      if (!pieces) session.send(bytes);
      else for (const piece of pieces) session.send(piece);
    }
  }
}
