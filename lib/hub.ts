// The logged-in connections and the broadcast to them.

import type { Session, User } from "./session.ts";

export class Hub {
  readonly #online = new Set<Session>();
  /** Online connection count per username, for list_users. */
  readonly #connectionsByName = new Map<string, number>();

  get size(): number {
    return this.#online.size;
  }

  /** Logs `session` in as `user` (replacing any earlier user of that connection). */
  join(session: Session, user: User): void {
    this.leave(session);
    session.user = user;
    this.#online.add(session);
    this.#connectionsByName.set(user.username, (this.#connectionsByName.get(user.username) ?? 0) + 1);
  }

  /** Logs `session` out; it stops receiving broadcasts. Safe to call more than once. */
  leave(session: Session): void {
    const user = session.user;
    if (!user || !this.#online.delete(session)) {
      session.user = null;
      return;
    }
    session.user = null;
    const count = (this.#connectionsByName.get(user.username) ?? 1) - 1;
    if (count <= 0) this.#connectionsByName.delete(user.username);
    else this.#connectionsByName.set(user.username, count);
  }

  /** The names of the users online now, sorted. */
  usernames(): string[] {
    return [...this.#connectionsByName.keys()].sort();
  }

  /**
   * Queues the same bytes to every logged-in connection, or a connection's own bytes from
   * `personal` (its messages with their request_id). Never waits on any recipient.
   */
  broadcast(bytes: Uint8Array, personal?: ReadonlyMap<Session, Uint8Array>): number {
    let delivered = 0;
    for (const session of this.#online) {
      session.send(personal?.get(session) ?? bytes);
      delivered++;
    }
    return delivered;
  }
}
