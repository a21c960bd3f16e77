// Everything the client says to people: message lines, status lines, error texts for every
// code of the contract, and the command help. Pure (the clock is a parameter).

import {
  ConnectFailed,
  ConnectionLost,
  type LossCause,
  NotConnected,
  ServerRefusal,
  SessionEnded,
  UsageError,
} from "./errors.ts";
import type { ChatMessage } from "./wire.ts";

export interface RenderOptions {
  /** The message is the reader's own. */
  own: boolean;
  /** ANSI styling (a terminal, and NO_COLOR unset). */
  color: boolean;
  /** Today is decided by this clock, in local time. */
  now: Date;
}

const RESET = "\x1b[0m";
const DIM = "\x1b[2m";
const BOLD = "\x1b[1m";
const CYAN = "\x1b[36m";

/** "HH:MM" in local time for today's messages, "YYYY-MM-DD HH:MM" for older ones. */
export function formatTime(timestamp: string, now: Date): string {
  // The contract's timestamps are UTC without a zone: say so, or they would be read as local.
  const date = new Date(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$/.test(timestamp) ? timestamp + "Z" : NaN);
  if (Number.isNaN(date.getTime())) return "--:--";
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const sameDay = date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth() &&
    date.getDate() === now.getDate();
  return sameDay ? time : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/**
 * Makes text safe to print: a message could otherwise carry escape sequences that clear the
 * screen or rewrite earlier lines. C0 controls become caret notation (ESC is "^["), DEL "^?",
 * C1 controls U+FFFD; tabs and line breaks are kept (line breaks are handled by the caller).
 */
export function sanitize(text: string): string {
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => {
    const code = c.charCodeAt(0);
    if (code < 0x20) return "^" + String.fromCharCode(code + 0x40);
    return code === 0x7f ? "^?" : "\uFFFD";
  });
}

/** "10:30 bob: hello", own lines "10:31 alice (you): hi"; continuation lines are indented under the text. */
export function renderMessage(message: ChatMessage, options: RenderOptions): string {
  const time = formatTime(message.timestamp, options.now);
  const sender = message.sender + (options.own ? " (you)" : "");
  const plainPrefix = `${time} ${sender}: `;
  const lines = message.message.split(/\r\n|\n|\r/).map(sanitize);
  const body = lines.join("\n" + " ".repeat(Math.min(plainPrefix.length, 24)));
  if (!options.color) return plainPrefix + body;
  const name = options.own ? `${BOLD}${CYAN}${sender}${RESET}` : `${BOLD}${sender}${RESET}`;
  return `${DIM}${time}${RESET} ${name}: ${body}`;
}

/** A notice from the client itself (status, errors), set apart from chat lines. */
export function renderNotice(text: string, color: boolean): string {
  return color ? `${DIM}-- ${text}${RESET}` : `-- ${text}`;
}

/** One line of `--listen` output. */
export function messageJson(message: ChatMessage): string {
  const { id, sender, timestamp } = message;
  return JSON.stringify({ id, sender, message: message.message, timestamp });
}

/** "2 s": whole seconds, rounded up, so a retry is never promised sooner than it happens. */
export function formatDelay(ms: number): string {
  return `${Math.max(1, Math.ceil(ms / 1000))} s`;
}

/** A short quote of a message for error lines: "not sent ("hello wo…"): …". */
export function snippet(text: string, max = 30): string {
  const flat = sanitize(text.replace(/\s+/g, " ").trim());
  const chars = [...flat];
  return `"${chars.length > max ? chars.slice(0, max - 1).join("") + "…" : flat}"`;
}

/** A sentence for a refusal, for every code of the contract; unknown codes show the server's text. */
export function describeRefusal(refusal: ServerRefusal): string {
  const retry = refusal.retryAfterMs !== undefined ? formatDelay(refusal.retryAfterMs) : undefined;
  const detail = refusal.serverMessage;
  switch (refusal.code) {
    case "rate_limited":
      return `slow down, try again in ${retry ?? "a moment"}`;
    case "too_many_attempts":
      return `too many failed logins, try again in ${retry ?? "a while"}`;
    case "invalid_credentials":
      return "wrong username or password";
    case "username_taken":
      return "that username is already taken, choose another one";
    case "invalid_username":
      return "a username is 3 to 50 characters: letters, digits, _ . or -";
    case "invalid_password":
      return "a password is 6 to 72 bytes long";
    case "invalid_message":
      return detail ? `the server refused the message: ${detail}` : "the server refused the message";
    case "line_too_long":
      return "the message is too large for the server";
    case "unavailable":
      // Its database is down, or it is shutting down: either way, later may work.
      return "the server is temporarily unavailable, try again in a moment";
    case "too_many_connections":
      return "the server is full (too many connections)";
    case "idle_timeout":
      return "the server closed the connection because nobody logged in on it";
    case "not_authenticated":
      return "not logged in";
    case "sender_mismatch":
      return "the server refused the message: its sender is not the logged-in user";
    case "invalid_limit":
      return "the number of messages must be a whole number of at least 1";
    case "bad_request":
      return `the server could not understand the request${detail ? ` (${detail})` : ""}`;
    case "unknown_type":
      return `the server does not support this request${detail ? ` (${detail})` : ""}`;
    case "internal_error":
      return "the server ran into an internal error, try again";
    case "room_not_found":
      return "there is no such room (or you are not in it)";
    case "not_member":
      return "you are not a member of that room";
    case "not_allowed":
      return detail ? `not allowed: ${detail}` : "that is not allowed in this room";
    case "name_taken":
      return "a public room with that name exists already";
    case "invalid_room_name":
      return "a room name is 1 to 64 characters, without control characters";
    case "user_not_found":
      return "there is no such user";
    case "limit_exceeded":
      return "too many rooms or members";
    default:
      return detail ? `${detail} (${refusal.code})` : `error ${refusal.code}`;
  }
}

export function describeLoss(loss: LossCause): string {
  switch (loss.kind) {
    case "closed":
      return loss.serverError ? describeRefusal(loss.serverError) : "the server closed the connection";
    case "network":
      return `network error: ${loss.detail}`;
    case "timeout":
      return `no reply from the server for ${formatDelay(loss.afterMs)}`;
    case "reply_too_long":
      return "the server sent a reply too large to read";
    case "by_client":
      return "closed";
  }
}

/** A sentence for anything the client can fail with. */
export function describeError(err: unknown): string {
  if (err instanceof ServerRefusal) return describeRefusal(err);
  if (err instanceof ConnectionLost) return `connection lost (${describeLoss(err.loss)})`;
  if (err instanceof ConnectFailed) {
    const where = `${err.hostname}:${err.port}`;
    if (err.reason === "refused") return `cannot connect to ${where}: connection refused (is the server running?)`;
    if (err.reason === "timeout") return `cannot connect to ${where}: timed out`;
    return `cannot connect to ${where}: ${err.message}`;
  }
  if (err instanceof SessionEnded) {
    if (err.reason === "gave_up") return `gave up reconnecting: ${describeError(err.cause)}`;
    if (err.reason === "refused") return `cannot log in again: ${describeError(err.cause)}`;
    return "disconnected";
  }
  if (err instanceof NotConnected) return "not connected right now, reconnecting…";
  if (err instanceof UsageError) return err.message;
  return err instanceof Error ? err.message : String(err);
}

/** "connection lost (…), reconnecting in 2 s…", then "still cannot reconnect (…), retrying in 4 s…". */
export function describeLost(cause: Error, attempt: number, retryInMs: number): string {
  const reason = shortReason(cause);
  return attempt === 0
    ? `connection lost (${reason}), reconnecting in ${formatDelay(retryInMs)}…`
    : `still cannot reconnect (${reason}), retrying in ${formatDelay(retryInMs)}…`;
}

/** The reason alone, for a status line that already says where and what. */
function shortReason(cause: Error): string {
  if (cause instanceof ConnectionLost) return describeLoss(cause.loss);
  if (cause instanceof ConnectFailed) {
    return cause.reason === "refused" ? "connection refused" : cause.reason === "timeout" ? "timed out" : cause.message;
  }
  return describeError(cause);
}

export const HISTORY_RESET_TEXT =
  "the server's message history is not the one seen before (a new database?): going on from its newest message";

export function describeReconnected(missed: number): string {
  if (missed === 0) return "reconnected, nothing missed";
  return `reconnected, caught up on ${missed} missed message${missed === 1 ? "" : "s"}`;
}

export const COMMAND_HELP = `commands:
  /history [n]   show the n newest messages (default 20)
  /older         show the messages before the oldest one shown
  /users         who is online
  /logout        log out and log in again (as someone else)
  /quit          leave (also Ctrl-D on an empty line, or Ctrl-C)
  /help          this list
anything else is sent as a message; start it with // to send a line that begins with /
keys: ←/→ Home/End move, Backspace/Delete, Ctrl-U/Ctrl-K clear before/after, Ctrl-W delete word, ↑/↓ earlier lines`;
