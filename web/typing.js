// "… is typing": the notices this page sends (a start at most every few seconds while the user
// types, a stop when the text is sent or cleared) and those it receives (each lapses after 6 s
// unless repeated, as the contract says). Timers are owned here and cleared by clear().

/** A start is repeated this often while typing goes on (the server throttles to one per 3 s). */
export const START_EVERY_MS = 3000;
/** A received start lapses after this long unless repeated (contract v2, "typing"). */
export const LAPSE_MS = 6000;

/** Decides when to send typing notices; `send(room, state)` sends one. */
export class TypingSender {
  #send;
  #now;
  /** The room a start was sent for, and when. */
  #room = null;
  #startedAt = 0;

  constructor(send, now = () => Date.now()) {
    this.#send = send;
    this.#now = now;
  }

  /** The text in `room`'s message field changed. */
  input(room, text) {
    if (text.trim() === "") return this.stop();
    if (this.#room !== null && this.#room !== room) this.stop();
    const now = this.#now();
    if (this.#room === room && now - this.#startedAt < START_EVERY_MS) return;
    this.#room = room;
    this.#startedAt = now;
    this.#send(room, "start");
  }

  /** The text was sent or cleared, or another conversation was opened: a stop, if a start was sent. */
  stop() {
    if (this.#room === null) return;
    const room = this.#room;
    this.#room = null;
    this.#send(room, "stop");
  }

  /** Forgets the start sent (logout): nothing is sent. */
  clear() {
    this.#room = null;
  }
}

/** Who is typing where, from typing pushes; `onChange(room)` is called when a room's list changes. */
export class TypingNotices {
  #onChange;
  /** room → (username → lapse timer). */
  #typing = new Map();

  constructor(onChange) {
    this.#onChange = onChange;
  }

  /** A typing push: {room, user, state}. */
  apply(frame) {
    if (typeof frame.room !== "string" || typeof frame.user !== "string") return;
    if (frame.state === "start") this.#start(frame.room, frame.user);
    else this.stopped(frame.room, frame.user);
  }

  /** `user` is no longer typing in `room` (a stop, or their message arrived). */
  stopped(room, user) {
    const users = this.#typing.get(room);
    if (!users?.has(user)) return;
    clearTimeout(users.get(user));
    users.delete(user);
    if (users.size === 0) this.#typing.delete(room);
    this.#onChange(room);
  }

  /** Who is typing in `room`, sorted. */
  who(room) {
    return [...(this.#typing.get(room)?.keys() ?? [])].sort();
  }

  /** Forgets every notice and its timer (logout). */
  clear() {
    for (const users of this.#typing.values()) for (const timer of users.values()) clearTimeout(timer);
    this.#typing.clear();
  }

  #start(room, user) {
    let users = this.#typing.get(room);
    if (!users) {
      users = new Map();
      this.#typing.set(room, users);
    }
    clearTimeout(users.get(user));
    users.set(user, setTimeout(() => this.stopped(room, user), LAPSE_MS));
    this.#onChange(room);
  }
}
