// The client's view of chat messages: checks on what the server sends, so the rest of the client
// only sees well-formed messages. Frames and field rules are lib/wire/protocol.ts's, shared with the server.

import { type Frame, isFrame } from "../lib/wire/protocol.ts";

/** A chat message as broadcast (`new_message`) and as listed by `history_response`. */
export interface ChatMessage {
  readonly id: number;
  readonly sender: string;
  readonly message: string;
  /** UTC, `YYYY-MM-DDTHH:MM:SS`. */
  readonly timestamp: string;
}

/** The message in a `new_message` frame or a history entry; undefined when a field is missing or mistyped. */
export function toChatMessage(value: unknown): ChatMessage | undefined {
  if (!isFrame(value)) return undefined;
  const { id, sender, message, timestamp } = value;
  if (typeof id !== "number" || !Number.isSafeInteger(id)) return undefined;
  if (typeof sender !== "string" || typeof message !== "string" || typeof timestamp !== "string") return undefined;
  return { id, sender, message, timestamp };
}

/** The messages of a `history_response`, oldest first, skipping malformed entries. */
export function historyMessages(frame: Frame): ChatMessage[] {
  const list = frame.messages;
  if (!Array.isArray(list)) return [];
  const messages: ChatMessage[] = [];
  for (const entry of list) {
    const message = toChatMessage(entry);
    if (message) messages.push(message);
  }
  return messages;
}

/** Usernames are unique regardless of case, so "Alice" and "alice" are the same person. */
export function sameUser(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
