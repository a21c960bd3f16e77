// How a room's event reads in the terminal: a message like a lobby message, a membership change as
// a sentence; prefixed with its room's name when it is not the current conversation.

import { renderMessage } from "./format.ts";
import type { RoomEvent } from "./rooms.ts";

export interface RoomRenderOptions {
  own: boolean;
  color: boolean;
  now: Date;
  /** The room's name, when it is not the current conversation. */
  where: string | undefined;
}

/** "10:30 bob: hi", "[#design] 10:30 bob: hi", "-- bob joined", "[#design] -- alice invited bob". */
export function renderRoomEvent(event: RoomEvent, options: RoomRenderOptions): string {
  const prefix = options.where === undefined ? "" : `[${options.where}] `;
  if (event.kind === "message") {
    const message = { id: event.id, sender: event.user, message: event.message ?? "", timestamp: event.timestamp };
    return prefix + renderMessage(message, options);
  }
  return `${prefix}-- ${membershipSentence(event)}`;
}

/** A membership event in words. */
export function membershipSentence(event: RoomEvent): string {
  const by = event.by ?? "someone";
  switch (event.kind) {
    case "join":
      return `${event.user} joined`;
    case "leave":
      return `${event.user} left`;
    case "invite":
      return `${by} invited ${event.user}`;
    case "kick":
      return `${by} removed ${event.user}`;
    default:
      return `${event.user}: ${event.kind}`;
  }
}
