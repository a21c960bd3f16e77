// Messages typed but not yet acknowledged, each with the client_msg_id it keeps for every resend,
// so that the server can tell a resend from a new message and store it once (exactly-once send).
// Pure: the session decides when to send and resend.

import type { Frame } from "../lib/wire/protocol.ts";

export interface Outgoing {
  /** Sent with every attempt of this message, unchanged. */
  readonly clientMsgId: string;
  readonly text: string;
  /** The conversation: "lobby", or a room's id (protocol v2). */
  readonly room: string;
}

export class Outbox {
  /** Oldest first (Map keeps insertion order). */
  readonly #pending = new Map<string, Outgoing>();

  /** Adds a message with a new client_msg_id (a UUID fits the protocol's 1–64 `[A-Za-z0-9_.:-]`). */
  add(text: string, clientMsgId: string = crypto.randomUUID(), room = "lobby"): Outgoing {
    const outgoing = { clientMsgId, text, room };
    this.#pending.set(clientMsgId, outgoing);
    return outgoing;
  }

  /** Unacknowledged messages, in the order they were typed. */
  get pending(): Outgoing[] {
    return [...this.#pending.values()];
  }

  has(outgoing: Outgoing): boolean {
    return this.#pending.get(outgoing.clientMsgId) === outgoing;
  }

  /** Acknowledged or given up: not sent again. */
  settle(outgoing: Outgoing): void {
    if (this.has(outgoing)) this.#pending.delete(outgoing.clientMsgId);
  }

  /**
   * The pending message that `frame` acknowledges, if any: a `new_message` carrying its
   * client_msg_id, which only the sender's own copy (or a `"duplicate":true` reply) carries.
   */
  acknowledged(frame: Frame): Outgoing | undefined {
    if (frame.type !== "new_message" || typeof frame.client_msg_id !== "string") return undefined;
    return this.#pending.get(frame.client_msg_id);
  }
}

/** The send_message frame for `outgoing`: the same on the first send and on every resend. */
export function sendFrame(outgoing: Outgoing): Frame {
  const frame: Frame = { type: "send_message", message: outgoing.text, client_msg_id: outgoing.clientMsgId };
  if (outgoing.room !== "lobby") frame.room = outgoing.room;
  return frame;
}
