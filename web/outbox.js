// Sends that must arrive exactly once: each waits in its conversation's outbox with its
// client_msg_id until the server acknowledges it, and is resent with the same id after a
// reconnect (the server answers a repeat with the original). clear() at logout cancels every
// retry timer and forgets every send, so nothing is ever resent as another user.

import { ConnectionLost } from "./connection.js";
import { describeError } from "./format.js";
import { LOBBY } from "./state.js";

/** How long a send refused with `unavailable` waits before it is tried again. */
const RETRY_MS = 2000;

export class Outbox {
  /** Called when a send was acknowledged (its message arrives through the connection as well). */
  onSent = (_entry) => {};
  /** Called when the server refused a send for good: the entry is marked failed. */
  onFailed = (_entry) => {};
  /** Called with a passing problem to show (the database is away). */
  onProblem = (_text) => {};

  #connection;
  #state;
  #timers = new Set();
  /** Bumped by clear(): a reply or timer of an earlier login does nothing. */
  #epoch = 0;

  constructor(connection, state) {
    this.#connection = connection;
    this.#state = state;
  }

  /** Queues `text` for `room` and sends it; returns the pending entry. */
  send(room, text) {
    const entry = this.#state.conversation(room).addPending(newClientMsgId(), text);
    void this.#deliver(entry);
    return entry;
  }

  /** After a reconnect: resends everything still pending, with the same client_msg_ids. */
  resendAll() {
    for (const entry of this.#state.allPending()) if (entry.status === "pending") void this.#deliver(entry);
  }

  /** Logout: cancels every retry; replies still on their way are ignored. */
  clear() {
    this.#epoch++;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #isCurrent(entry, epoch) {
    return epoch === this.#epoch && this.#state.conversations.get(entry.room)?.pending.get(entry.clientMsgId) === entry;
  }

  async #deliver(entry) {
    const epoch = this.#epoch;
    if (!this.#connection.isOpen || !this.#isCurrent(entry, epoch)) return;
    const frame = { type: "send_message", message: entry.text, client_msg_id: entry.clientMsgId };
    if (entry.room !== LOBBY) frame.room = entry.room;
    let reply;
    try {
      reply = await this.#connection.request(frame);
    } catch (err) {
      if (err instanceof ConnectionLost) return; // resent after the reconnect
      throw err;
    }
    if (!this.#isCurrent(entry, epoch)) return;
    if (reply.type === "new_message") {
      this.#state.conversations.get(entry.room)?.pending.delete(entry.clientMsgId);
      this.onSent(entry);
      return;
    }
    if (reply.code === "unavailable") {
      this.onProblem(describeError(reply));
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        void this.#deliver(entry);
      }, RETRY_MS);
      this.#timers.add(timer);
      return;
    }
    entry.status = "failed";
    entry.error = describeError(reply);
    this.onFailed(entry);
  }
}

/** A UUID; crypto.randomUUID needs a secure context, which a LAN address over http is not. */
export function newClientMsgId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
