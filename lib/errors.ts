// The one typed error of the protocol: a stable `code` and a message safe to show the client.
// Imports nothing from lib/.

/** Every machine-readable error code of the contract (docs/protocol.md). */
export type ErrorCode =
  | "bad_request"
  | "line_too_long"
  | "unknown_type"
  | "username_taken"
  | "invalid_username"
  | "invalid_password"
  | "invalid_credentials"
  | "too_many_attempts"
  | "not_authenticated"
  | "sender_mismatch"
  | "invalid_message"
  | "rate_limited"
  | "invalid_limit"
  | "unavailable"
  | "too_many_connections"
  | "idle_timeout"
  | "internal_error";

export interface ChatErrorOptions {
  /** The connection is closed after the error frame is written. */
  closesConnection?: boolean;
  /** Sent to the client as `retry_after_ms`. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class ChatError extends Error {
  override readonly name = "ChatError";
  readonly code: ErrorCode;
  readonly closesConnection: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: ChatErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.closesConnection = options.closesConnection ?? false;
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
