// Routes each frame of a session to its handler through one command table that checks login in
// one place. Never touches sockets: it handles (session, line), so it runs without TCP.
// Imports errors, protocol, session, hub, auth, messages, log.

import type { AuthService } from "./auth.ts";
import { ChatError } from "./errors.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import type { MessageService } from "./messages.ts";
import {
  authErrorReply,
  checkMessageText,
  checkRequestId,
  decodeFrame,
  encodeLine,
  errorReply,
  field,
  type Frame,
  parseHistoryQuery,
  type Reply,
  type RequestId,
  requestIdOf,
} from "./protocol.ts";
import { TokenBuckets } from "./rate_limit.ts";
import type { Session, User } from "./session.ts";

export interface DispatcherOptions {
  maxMessageLength: number;
  maxHistoryLimit: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
}

/** A connection with this many sends awaiting commit stops being read until they settle. */
export const MAX_PENDING_SENDS_PER_CONNECTION = 1000;

interface Command {
  needsLogin: boolean;
  /** The reply type for errors; register and login answer errors with their own response type. */
  errorType?: string;
  handle(session: Session, frame: Frame, requestId: RequestId | undefined): Promise<Reply> | Reply;
}

export class Dispatcher {
  readonly #auth: AuthService;
  readonly #messages: MessageService;
  readonly #hub: Hub;
  readonly #log: Logger;
  readonly #options: DispatcherOptions;
  readonly #sendRate: TokenBuckets;
  readonly #metrics: Metrics;
  /** At most one rate-limit log line per user every 10 s, so a flood cannot flood the log. */
  readonly #rateLimitLogs = new TokenBuckets(0.1, 1);
  readonly #commands: Record<string, Command>;
  /** Set at shutdown: requests from then on are answered unavailable (in their usual reply shape). */
  #stopped = false;

  constructor(
    auth: AuthService,
    messages: MessageService,
    hub: Hub,
    log: Logger,
    options: DispatcherOptions,
    metrics = new Metrics(),
  ) {
    this.#auth = auth;
    this.#metrics = metrics;
    this.#messages = messages;
    this.#hub = hub;
    this.#log = log;
    this.#options = options;
    this.#sendRate = new TokenBuckets(options.rateLimitPerSec, options.rateLimitBurst);
    this.#commands = {
      register: { needsLogin: false, errorType: "register_response", handle: (s, f) => this.#register(s, f) },
      login: { needsLogin: false, errorType: "login_response", handle: (s, f) => this.#login(s, f) },
      // Logged-in sends take the pipelined path in handleLine; here only the login check is left.
      send_message: { needsLogin: true, handle: () => this.#sendWithoutLogin() },
      get_history: { needsLogin: true, handle: (_s, f) => this.#history(f) },
      ping: { needsLogin: false, handle: () => ({ type: "pong" }) },
      logout: { needsLogin: false, handle: (s) => this.#logout(s) },
      list_users: { needsLogin: true, handle: () => ({ type: "users_response", users: this.#hub.usernames() }) },
    };
  }

  /** Refuses every request from now on; messages already accepted still go out. */
  stopAccepting(): void {
    this.#stopped = true;
  }

  /**
   * Handles one line. Returns a promise when the connection must wait before its next line is
   * read: replies go out in request order, so any frame after an accepted send_message waits
   * until that message is broadcast. Accepted sends themselves are pipelined.
   */
  handleLine(session: Session, line: Uint8Array): Promise<void> | void {
    let frame: Frame;
    try {
      frame = decodeFrame(line);
    } catch (err) {
      return this.#inOrder(session, () => this.#replyError(session, err, undefined, undefined));
    }
    if (session.user !== null && field(frame, "type") === "send_message") {
      const rejection = this.#trySend(session, session.user, frame);
      if (rejection === undefined) {
        return session.pendingSends >= MAX_PENDING_SENDS_PER_CONNECTION ? session.lastSend ?? undefined : undefined;
      }
      return this.#inOrder(session, () => this.#replyError(session, rejection, requestIdOf(frame), undefined));
    }
    return this.#inOrder(session, () => this.#dispatch(session, frame));
  }

  /** Runs `work` now, or after this session's pending sends have settled. */
  #inOrder(session: Session, work: () => Promise<void> | void): Promise<void> | void {
    if (session.pendingSends > 0 && session.lastSend) return session.lastSend.then(work);
    return work();
  }

  async #dispatch(session: Session, frame: Frame): Promise<void> {
    const type = field(frame, "type");
    const command = typeof type === "string" && Object.hasOwn(this.#commands, type) ? this.#commands[type] : undefined;
    const requestId = requestIdOf(frame);
    try {
      checkRequestId(frame);
      if (this.#stopped) throw shuttingDown();
      if (!command) throw new ChatError("unknown_type", `Unknown message type: ${describeType(type)}`);
      if (command.needsLogin && session.user === null) {
        throw new ChatError("not_authenticated", "You must log in first");
      }
      const reply = await command.handle(session, frame, requestId);
      if (requestId !== undefined) reply.request_id = requestId;
      session.send(encodeLine(reply));
    } catch (err) {
      this.#replyError(session, err, requestId, command?.errorType);
    }
  }

  #replyError(session: Session, err: unknown, requestId: RequestId | undefined, errorType: string | undefined): void {
    let chatError: ChatError;
    if (err instanceof ChatError) {
      chatError = err;
    } else {
      this.#log.error("unexpected error handling a request", { session: session.id, error: err });
      chatError = new ChatError("internal_error", "Internal server error");
    }
    const reply = errorType ? authErrorReply(errorType, chatError, requestId) : errorReply(chatError, requestId);
    session.send(encodeLine(reply));
  }

  async #register(_session: Session, frame: Frame): Promise<Reply> {
    await this.#auth.register(field(frame, "username"), field(frame, "password"));
    return { type: "register_response", status: "success", message: "User registered successfully" };
  }

  async #login(session: Session, frame: Frame): Promise<Reply> {
    const user = await this.#auth.login(field(frame, "username"), field(frame, "password"), session.remoteAddress);
    // The peer may have gone while bcrypt ran; a closed session must not join the hub.
    if (session.closed) throw new ChatError("internal_error", "Connection closed");
    this.#hub.join(session, user);
    return { type: "login_response", status: "success", user_id: user.id, username: user.username };
  }

  /** Validates and queues a message; returns the error to send instead, if any. */
  #trySend(session: Session, user: User, frame: Frame): ChatError | undefined {
    try {
      if (this.#stopped) throw shuttingDown();
      checkRequestId(frame);
      const sender = field(frame, "sender");
      // Usernames are unique regardless of case, so "John" names the same user as "john".
      if (
        sender !== undefined && sender !== null &&
        (typeof sender !== "string" || sender.toLowerCase() !== user.username.toLowerCase())
      ) {
        throw new ChatError("sender_mismatch", "sender does not match the logged-in user");
      }
      const text = checkMessageText(field(frame, "message"), this.#options.maxMessageLength);
      const waitMs = this.#sendRate.take(String(user.id));
      if (waitMs > 0) {
        this.#metrics.rateLimited.inc();
        if (this.#rateLimitLogs.take(String(user.id)) === 0) {
          this.#log.warn("send rate limited", { username: user.username, retry_after_ms: waitMs });
        }
        throw new ChatError("rate_limited", "Too many messages, slow down", { retryAfterMs: waitMs });
      }
      this.#messages.enqueue(session, user, text, requestIdOf(frame));
      return undefined;
    } catch (err) {
      return err instanceof ChatError ? err : new ChatError("internal_error", "Internal server error", { cause: err });
    }
  }

  /** Unreachable in practice (the login check comes first); kept so that the table names every type. */
  #sendWithoutLogin(): Reply {
    throw new ChatError("not_authenticated", "You must log in first");
  }

  async #history(frame: Frame): Promise<Reply> {
    const query = parseHistoryQuery(frame, this.#options.maxHistoryLimit);
    return { type: "history_response", messages: await this.#messages.history(query) };
  }

  #logout(session: Session): Reply {
    if (session.user) this.#log.info("user logged out", { username: session.user.username, session: session.id });
    this.#hub.leave(session);
    return { type: "logout_response", status: "success" };
  }
}

function shuttingDown(): ChatError {
  return new ChatError("unavailable", "Server is shutting down");
}

function describeType(type: unknown): string {
  if (type === undefined) return "(missing)";
  const text = typeof type === "string" ? type : JSON.stringify(type);
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}
