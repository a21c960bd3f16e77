// Routes each frame of a session to its handler through one command table that checks the
// request id, shutdown and login in one place, so handlers only see requests they may serve.
// Never touches sockets: it handles (session, line), so it runs without TCP.
//
// Order contract: replies go out in request order. send_message is pipelined: it is checked and
// queued at once, and answered when committed; any other frame after it waits until the sends
// before it are answered. This per-connection pipeline is the dispatcher's own state.

import type { AuthService } from "./auth.ts";
import { ChatError } from "../core/errors.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import type { MessageService } from "./messages.ts";
import type { Presence } from "./presence.ts";
import {
  checkMessageText,
  checkRequestId,
  clientMsgIdOf,
  decodeFrame,
  encodeLine,
  errorReply,
  field,
  type Frame,
  parseHistoryQuery,
  type Reply,
  type RequestId,
  requestIdOf,
} from "../wire/protocol.ts";
import { TokenBuckets } from "../core/rate_limit.ts";
import type { Session, User } from "./session.ts";

export interface DispatcherOptions {
  maxMessageLength: number;
  maxHistoryLimit: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
}

/** A connection with this many sends awaiting commit stops being read until they settle. */
export const MAX_PENDING_SENDS_PER_CONNECTION = 1000;

interface CommandBase {
  needsLogin: boolean;
  /** The reply type for errors; register and login answer errors with their own response type. */
  errorType?: "register_response" | "login_response";
}

/** Answers with one reply, in order. */
interface ReplyCommand extends CommandBase {
  pipelined?: false;
  handle(session: Session, frame: Frame): Promise<Reply> | Reply;
}

/** Accepted at once and answered later by its service; the promise settles once answered. */
interface PipelinedCommand extends CommandBase {
  pipelined: true;
  accept(session: Session & { user: User }, frame: Frame, requestId: RequestId | undefined): Promise<void>;
}

type Command = ReplyCommand | PipelinedCommand;

/** A connection's accepted sends that are not answered yet. */
interface Pipeline {
  pending: number;
  /** Settles when the latest of them is answered (they are answered in order). */
  last: Promise<void>;
}

export class Dispatcher {
  readonly #auth: AuthService;
  readonly #messages: MessageService;
  readonly #hub: Hub;
  readonly #presence: Presence;
  readonly #log: Logger;
  readonly #options: DispatcherOptions;
  readonly #sendRate: TokenBuckets;
  readonly #metrics: Metrics;
  /** At most one rate-limit log line per user every 10 s, so a flood cannot flood the log. */
  readonly #rateLimitLogs = new TokenBuckets(0.1, 1);
  readonly #commands: Record<string, Command>;
  /** Only connections with sends in flight have one, so idle connections cost nothing here. */
  readonly #pipelines = new WeakMap<Session, Pipeline>();
  /** Set at shutdown: requests from then on are answered unavailable (in their usual reply shape). */
  #stopped = false;

  constructor(
    auth: AuthService,
    messages: MessageService,
    hub: Hub,
    presence: Presence,
    log: Logger,
    options: DispatcherOptions,
    metrics = new Metrics(),
  ) {
    this.#auth = auth;
    this.#metrics = metrics;
    this.#messages = messages;
    this.#hub = hub;
    this.#presence = presence;
    this.#log = log;
    this.#options = options;
    this.#sendRate = new TokenBuckets(options.rateLimitPerSec, options.rateLimitBurst);
    this.#commands = {
      register: { needsLogin: false, errorType: "register_response", handle: (_s, f) => this.#register(f) },
      login: { needsLogin: false, errorType: "login_response", handle: (s, f) => this.#login(s, f) },
      send_message: { needsLogin: true, pipelined: true, accept: (s, f, r) => this.#send(s, f, r) },
      get_history: { needsLogin: true, handle: (_s, f) => this.#history(f) },
      ping: { needsLogin: false, handle: () => ({ type: "pong" }) },
      logout: { needsLogin: false, handle: (s) => this.#logout(s) },
      list_users: { needsLogin: true, handle: () => this.#listUsers() },
    };
  }

  /** Refuses every request from now on; messages already accepted still go out. */
  stopAccepting(): void {
    this.#stopped = true;
  }

  /**
   * Handles one line. Returns a promise when the connection must wait before its next line is
   * read: a reply that must follow earlier sends, or too many sends in flight.
   */
  handleLine(session: Session, line: Uint8Array): Promise<void> | void {
    let frame: Frame;
    try {
      frame = decodeFrame(line);
    } catch (err) {
      return this.#inOrder(session, () => this.#replyError(session, err, undefined, undefined));
    }
    const type = field(frame, "type");
    const command = typeof type === "string" && Object.hasOwn(this.#commands, type) ? this.#commands[type] : undefined;
    const requestId = requestIdOf(frame);
    if (command?.pipelined) {
      let answered: Promise<void>;
      try {
        this.#admit(session, frame, command, type);
        answered = command.accept(session as Session & { user: User }, frame, requestId);
      } catch (err) {
        return this.#inOrder(session, () => this.#replyError(session, err, requestId, command.errorType));
      }
      return this.#track(session, answered);
    }
    return this.#inOrder(session, () => this.#dispatch(session, frame, command, type, requestId));
  }

  /** The checks every request passes before its handler: request_id, shutdown, type, login. */
  #admit(session: Session, frame: Frame, command: Command | undefined, type: unknown): asserts command is Command {
    checkRequestId(frame);
    if (this.#stopped) throw shuttingDown();
    if (!command) throw new ChatError("unknown_type", `Unknown message type: ${describeType(type)}`);
    if (command.needsLogin && session.user === null) throw new ChatError("not_authenticated", "You must log in first");
  }

  async #dispatch(
    session: Session,
    frame: Frame,
    command: Command | undefined,
    type: unknown,
    requestId: RequestId | undefined,
  ): Promise<void> {
    try {
      this.#admit(session, frame, command, type);
      if (command.pipelined) throw new Error("a pipelined command reached the in-order path");
      const reply = await command.handle(session, frame);
      if (requestId !== undefined) reply.request_id = requestId;
      session.send(encodeLine(reply));
    } catch (err) {
      this.#replyError(session, err, requestId, command?.errorType);
    }
  }

  /** Runs `work` now, or after this session's accepted sends are answered. */
  #inOrder(session: Session, work: () => Promise<void> | void): Promise<void> | void {
    const pipeline = this.#pipelines.get(session);
    return pipeline ? pipeline.last.then(work) : work();
  }

  /** Remembers an accepted send until it is answered; asks the reader to wait when too many are. */
  #track(session: Session, answered: Promise<void>): Promise<void> | undefined {
    let pipeline = this.#pipelines.get(session);
    if (!pipeline) {
      pipeline = { pending: 0, last: answered };
      this.#pipelines.set(session, pipeline);
    }
    const own = pipeline;
    own.pending++;
    own.last = answered;
    void answered.then(() => {
      if (--own.pending === 0 && this.#pipelines.get(session) === own) this.#pipelines.delete(session);
    });
    return own.pending >= MAX_PENDING_SENDS_PER_CONNECTION ? own.last : undefined;
  }

  #replyError(
    session: Session,
    err: unknown,
    requestId: RequestId | undefined,
    errorType: CommandBase["errorType"],
  ): void {
    let chatError: ChatError;
    if (err instanceof ChatError) {
      chatError = err;
    } else {
      this.#log.error("unexpected error handling a request", { session: session.id, error: err });
      chatError = new ChatError("internal_error", "Internal server error");
    }
    session.send(encodeLine(errorReply(chatError, requestId, errorType)));
  }

  async #register(frame: Frame): Promise<Reply> {
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

  /** Checks a send and queues it; throws the error to answer with instead. */
  #send(session: Session & { user: User }, frame: Frame, requestId: RequestId | undefined): Promise<void> {
    const user = session.user;
    const sender = field(frame, "sender");
    // Usernames are unique regardless of case, so "John" names the same user as "john".
    if (
      sender !== undefined && sender !== null &&
      (typeof sender !== "string" || sender.toLowerCase() !== user.username.toLowerCase())
    ) {
      throw new ChatError("sender_mismatch", "sender does not match the logged-in user");
    }
    const clientMsgId = clientMsgIdOf(frame);
    const text = checkMessageText(field(frame, "message"), this.#options.maxMessageLength);
    const waitMs = this.#sendRate.take(String(user.id));
    if (waitMs > 0) {
      this.#metrics.rateLimited.inc();
      if (this.#rateLimitLogs.take(String(user.id)) === 0) {
        this.#log.warn("send rate limited", { username: user.username, retry_after_ms: waitMs });
      }
      throw new ChatError("rate_limited", "Too many messages, slow down", { retryAfterMs: waitMs });
    }
    return this.#messages.enqueue(session, user, text, requestId, clientMsgId);
  }

  async #history(frame: Frame): Promise<Reply> {
    const query = parseHistoryQuery(frame, this.#options.maxHistoryLimit);
    return { type: "history_response", messages: await this.#messages.history(query) };
  }

  async #listUsers(): Promise<Reply> {
    return { type: "users_response", users: await this.#presence.usernames() };
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
