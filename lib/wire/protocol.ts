// The wire format: decoding and validating frames, and encoding replies as single lines.

import { ChatError } from "../core/errors.ts";

/** A decoded request: a JSON object. Fields are read through the helpers below, never trusted. */
export type Frame = Record<string, unknown>;
export type RequestId = string | number;
export type Reply = Record<string, unknown>;

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Decodes one line into an object frame; bad_request for invalid UTF-8, invalid JSON or a non-object. */
export function decodeFrame(line: Uint8Array): Frame {
  let text: string;
  try {
    text = utf8Decoder.decode(line);
  } catch {
    throw new ChatError("bad_request", "Frame is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ChatError("bad_request", "Frame is not valid JSON");
  }
  if (!isFrame(value)) throw new ChatError("bad_request", "Frame must be a JSON object");
  return value;
}

/** A JSON object, as every frame (request, reply or broadcast) is. */
export function isFrame(value: unknown): value is Frame {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The frame's own `request_id`, if it has a valid one (a string or a finite number). */
export function requestIdOf(frame: Frame): RequestId | undefined {
  if (!Object.hasOwn(frame, "request_id")) return undefined;
  const id = frame.request_id;
  if (typeof id === "string" && id.length <= 256) return id;
  if (typeof id === "number" && Number.isFinite(id)) return id;
  return undefined;
}

/** Throws bad_request when `request_id` is present but not a string (≤ 256 chars) or a number. */
export function checkRequestId(frame: Frame): void {
  if (Object.hasOwn(frame, "request_id") && requestIdOf(frame) === undefined) {
    throw new ChatError("bad_request", "request_id must be a string of at most 256 characters or a number");
  }
}

/** The frame's own field, so that inherited names such as `__proto__` or `toString` never count. */
export function field(frame: Frame, name: string): unknown {
  return Object.hasOwn(frame, name) ? frame[name] : undefined;
}

export function encodeLine(reply: Reply): Uint8Array {
  return utf8Encoder.encode(JSON.stringify(reply) + "\n");
}

/**
 * The contract's error frame, with `request_id` echoed when given. register and login answer
 * errors with their own `responseType` and `"status":"error"`.
 */
export function errorReply(
  err: ChatError,
  requestId?: RequestId,
  responseType?: "register_response" | "login_response",
): Reply {
  const reply: Reply = responseType
    ? { type: responseType, status: "error", code: err.code, message: err.message }
    : { type: "error", code: err.code, message: err.message };
  if (err.retryAfterMs !== undefined) reply.retry_after_ms = err.retryAfterMs;
  if (requestId !== undefined) reply.request_id = requestId;
  return reply;
}

const CLIENT_MSG_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/** A send's `client_msg_id` (absent or null: none); bad_request unless 1–64 of [A-Za-z0-9_.:-]. */
export function clientMsgIdOf(frame: Frame): string | undefined {
  const value = field(frame, "client_msg_id");
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || !CLIENT_MSG_ID_PATTERN.test(value)) {
    throw new ChatError("bad_request", "client_msg_id must be 1 to 64 characters of letters, digits, _ . : or -");
  }
  return value;
}

// ---- field validation -------------------------------------------------------------------------

const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,50}$/;
const NOT_BLANK = /\S/;
export const MIN_PASSWORD_BYTES = 6;
/** bcrypt uses only the first 72 bytes; longer passwords are refused rather than truncated. */
export const MAX_PASSWORD_BYTES = 72;

export function isValidUsername(value: unknown): value is string {
  return typeof value === "string" && USERNAME_PATTERN.test(value);
}

export function checkUsername(value: unknown): string {
  if (!isValidUsername(value)) {
    throw new ChatError("invalid_username", "Username must be 3 to 50 characters of letters, digits, _ . or -");
  }
  return value;
}

export function isValidPassword(value: unknown): value is string {
  if (typeof value !== "string" || value.includes("\0")) return false;
  const bytes = utf8Encoder.encode(value).length;
  return bytes >= MIN_PASSWORD_BYTES && bytes <= MAX_PASSWORD_BYTES;
}

export function checkPassword(value: unknown): string {
  if (!isValidPassword(value)) {
    throw new ChatError(
      "invalid_password",
      `Password must be ${MIN_PASSWORD_BYTES} to ${MAX_PASSWORD_BYTES} bytes in UTF-8, without NUL characters`,
    );
  }
  return value;
}

/** Checks a chat message's text: a non-blank string of at most `maxLength` characters (code points), no NUL. */
export function checkMessageText(value: unknown, maxLength: number): string {
  if (typeof value !== "string") throw new ChatError("invalid_message", "message must be a string");
  // /\S/ matches exactly what trim() keeps, without copying the text.
  if (!NOT_BLANK.test(value)) throw new ChatError("invalid_message", "message must not be empty");
  if (value.includes("\0")) throw new ChatError("invalid_message", "message must not contain NUL characters");
  // UTF-16 length is an upper bound of the code point count: count only when it could matter.
  if (value.length > maxLength && countCodePoints(value, maxLength) > maxLength) {
    throw new ChatError("invalid_message", `message must be at most ${maxLength} characters`);
  }
  // Lone surrogates cannot be stored as UTF-8 text in PostgreSQL.
  if (!value.isWellFormed()) throw new ChatError("invalid_message", "message must not contain lone surrogates");
  return value;
}

function countCodePoints(text: string, stopAfter: number): number {
  let count = 0;
  for (const _ of text) if (++count > stopAfter) break;
  return count;
}

export interface HistoryQuery {
  limit: number;
  /** Only ids smaller than this. */
  before: number | undefined;
  /** Only ids larger than this, and then the oldest `limit` of them. */
  after: number | undefined;
}

export const DEFAULT_HISTORY_LIMIT = 50;

export function parseHistoryQuery(frame: Frame, maxLimit: number): HistoryQuery {
  const rawLimit = field(frame, "limit");
  let limit = DEFAULT_HISTORY_LIMIT;
  if (rawLimit !== undefined && rawLimit !== null) {
    if (typeof rawLimit !== "number" || !Number.isInteger(rawLimit) || rawLimit < 1) {
      throw new ChatError("invalid_limit", "limit must be an integer of at least 1");
    }
    limit = rawLimit;
  }
  return {
    limit: Math.min(limit, maxLimit),
    before: messageIdField(frame, "before"),
    after: messageIdField(frame, "after"),
  };
}

function messageIdField(frame: Frame, name: string): number | undefined {
  const value = field(frame, name);
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ChatError("bad_request", `${name} must be a non-negative integer message id`);
  }
  return value;
}
