// The one typed error of the protocol: a stable `code` and a message safe to show the client.

/** Every machine-readable error code of the contract (docs/protocol.md). */
export const ERROR_CODES = [
  "bad_request",
  "line_too_long",
  "unknown_type",
  "username_taken",
  "invalid_username",
  "invalid_password",
  "invalid_credentials",
  "too_many_attempts",
  "not_authenticated",
  "sender_mismatch",
  "invalid_message",
  "rate_limited",
  "invalid_limit",
  "unavailable",
  "too_many_connections",
  "idle_timeout",
  "internal_error",
  // v2: rooms and direct messages
  "room_not_found",
  "not_member",
  "not_allowed",
  "name_taken",
  "invalid_room_name",
  "user_not_found",
  "limit_exceeded",
] as const;

export type ErrorCode = typeof ERROR_CODES[number];

export interface ChatErrorOptions {
  /** Sent to the client as `retry_after_ms`. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class ChatError extends Error {
  override readonly name = "ChatError";
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: ChatErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** The database could not be reached or failed; the request may be retried. */
export function unavailable(cause?: unknown): ChatError {
  return new ChatError(
    "unavailable",
    "The service is temporarily unavailable, please try again",
    { cause },
  );
}
