// The client's view of the wire format: frame and message shapes, and checks on what the server
// sends, so the rest of the client only sees well-formed messages. Imports nothing.

export type Frame = Record<string, unknown>;

/** A chat message as broadcast (`new_message`) and as listed by `history_response`. */
export interface ChatMessage {
  readonly id: number;
  readonly sender: string;
  readonly message: string;
  /** UTC, `YYYY-MM-DDTHH:MM:SS`. */
  readonly timestamp: string;
}

export function isFrame(value: unknown): value is Frame {
  return typeof value === "object" && value !== null && !Array.isArray(value);
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

const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,50}$/;
const MIN_PASSWORD_BYTES = 6;
const MAX_PASSWORD_BYTES = 72;

/** Same rule as the server's, checked before sending so people get the hint at once. */
export function isValidUsername(name: string): boolean {
  return USERNAME_PATTERN.test(name);
}

export function isValidPassword(password: string): boolean {
  const bytes = new TextEncoder().encode(password).length;
  return bytes >= MIN_PASSWORD_BYTES && bytes <= MAX_PASSWORD_BYTES && !password.includes("\0");
}

/** Usernames are unique regardless of case, so "Alice" and "alice" are the same person. */
export function sameUser(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
