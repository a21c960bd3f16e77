// The client's errors: a refusal by the server (its stable code), a lost connection, a failed
// connect, and a usage mistake. format.ts turns each into a sentence for people.

import type { Frame } from "../lib/wire/protocol.ts";

/** The server answered a request with an error: `code` is the contract's machine-readable code. */
export class ServerRefusal extends Error {
  override readonly name = "ServerRefusal";
  constructor(
    readonly code: string,
    readonly serverMessage: string,
    readonly retryAfterMs: number | undefined = undefined,
  ) {
    super(`${code}: ${serverMessage}`);
  }

  /** From an `error` frame or a register/login response with `"status":"error"`. */
  static fromFrame(frame: Frame): ServerRefusal {
    const code = typeof frame.code === "string" ? frame.code : "unknown_error";
    const message = typeof frame.message === "string" ? frame.message : "";
    const retry = frame.retry_after_ms;
    return new ServerRefusal(code, message, typeof retry === "number" && retry >= 0 ? retry : undefined);
  }
}

/** Why a connection ended. */
export type LossCause =
  /** The server closed the connection; `serverError` is the error it sent just before, if any. */
  | { kind: "closed"; serverError?: ServerRefusal }
  | { kind: "network"; detail: string }
  /** No reply to a request in time: the connection is presumed dead and was closed. */
  | { kind: "timeout"; afterMs: number }
  /** The server sent a line longer than the client accepts. */
  | { kind: "reply_too_long" }
  | { kind: "by_client" };

/** A request could not complete because its connection ended first; whether it took effect is unknown. */
export class ConnectionLost extends Error {
  override readonly name = "ConnectionLost";
  constructor(readonly loss: LossCause) {
    super(`connection lost (${loss.kind})`);
  }
}

export class ConnectFailed extends Error {
  override readonly name = "ConnectFailed";
  constructor(
    readonly hostname: string,
    readonly port: number,
    readonly reason: "refused" | "timeout" | "other",
    detail: string,
  ) {
    super(detail);
  }
}

/** The session ended: closed by the user, or reconnecting gave up (`cause` says why). */
export class SessionEnded extends Error {
  override readonly name = "SessionEnded";
  constructor(readonly reason: "closed" | "gave_up" | "refused", override readonly cause?: unknown) {
    super(`session ended (${reason})`);
  }
}

/** Bad command-line arguments or a missing setting: exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** A request was made while the session is between connections. */
export class NotConnected extends Error {
  override readonly name = "NotConnected";
  constructor() {
    super("not connected");
  }
}
