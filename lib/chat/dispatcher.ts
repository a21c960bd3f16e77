// Routes each frame of a session to its handler through one command table that checks the
// request id, shutdown and login in one place, so handlers only see requests they may serve.
// Never touches sockets: it handles (session, line), so it runs without TCP.
//
// Order contract: replies go out in request order. send_message is pipelined: it is checked and
// queued at once, holds its place in the connection's ReplyQueue, and is answered when committed;
// any other frame after it waits until the replies before it are out. The queues are the
// dispatcher's own state.

import type { AuthService } from "./auth.ts";
import { ChatError } from "../core/errors.ts";
import type { Hub } from "./hub.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import type { MessageService } from "./messages.ts";
import type { Presence } from "./presence.ts";
import type { Command, CommandBase } from "./command.ts";
import { type ReplyPlace, ReplyQueue } from "./reply_queue.ts";
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
import { LOBBY, roomOf } from "../wire/room_fields.ts";
import type { RoomCommands } from "./room_commands.ts";
import type { Session, User } from "./session.ts";

export interface DispatcherOptions {
  maxMessageLength: number;
  maxHistoryLimit: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
}

/** A connection with this many sends awaiting commit stops being read until they settle. */
export const MAX_PENDING_SENDS_PER_CONNECTION = 1000;

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
  readonly #roomCommands: RoomCommands | undefined;
  /** Only connections with replies pending have one, so idle connections cost nothing here. */
  readonly #replies = new WeakMap<Session, ReplyQueue>();
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
    rooms?: RoomCommands,
  ) {
    this.#roomCommands = rooms;
    this.#auth = auth;
    this.#metrics = metrics;
    this.#messages = messages;
    this.#hub = hub;
    this.#presence = presence;
    this.#log = log;
    this.#options = options;
    this.#sendRate = new TokenBuckets(options.rateLimitPerSec, options.rateLimitBurst);
    this.#commands = {
      register: { needsLogin: false, errorType: "register_response", handle: (s, f) => this.#register(s, f) },
      login: { needsLogin: false, errorType: "login_response", handle: (s, f) => this.#login(s, f) },
      send_message: { needsLogin: true, pipelined: true, accept: (s, f, r, p) => this.#send(s, f, r, p) },
      ping: { needsLogin: false, handle: () => ({ type: "pong" }) },
      logout: { needsLogin: false, handle: (s) => this.#logout(s) },
      list_users: { needsLogin: true, handle: () => this.#listUsers() },
      get_history: { needsLogin: true, handle: (s, f) => this.#history(s, f) },
      ...rooms?.commands(),
    };
  }

  /** Refuses every request from now on; messages already accepted still go out. */
  stopAccepting(): void {
    this.#stopped = true;
  }

  /**
   * Handles one line. Returns a promise when the connection must wait before its next line is
   * read: a reply that must follow earlier ones, or too many replies pending.
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
      const queue = this.#queueOf(session);
      const place = queue.reserve();
      try {
        this.#admit(session, frame, command, type);
        command.accept(session as Session & { user: User }, frame, requestId, place);
      } catch (err) {
        place.answer(encodeLine(errorReply(this.#chatError(session, err), requestId, command.errorType)));
        // Waiting behind earlier sends, this error must not let a later send join their batch:
        // that send's own copy would go out with the batch, ahead of the error.
        return queue.size > 0 ? queue.drained() : undefined;
      }
      return queue.size >= MAX_PENDING_SENDS_PER_CONNECTION ? queue.drained() : undefined;
    }
    return this.#inOrder(session, () => this.#dispatch(session, frame, command, type, requestId));
  }

  /**
   * Settles once every request read from `session` so far is answered (a client that half-closes
   * gets all its replies before the server closes), or undefined when none is pending.
   */
  settled(session: Session): Promise<void> | undefined {
    return this.#replies.get(session)?.drained();
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
      if (reply === undefined) return;
      if (requestId !== undefined) reply.request_id = requestId;
      session.send(encodeLine(reply));
    } catch (err) {
      this.#replyError(session, err, requestId, command?.errorType);
    }
  }

  /** Runs `work` now, or once the replies this session is owed are out. */
  #inOrder(session: Session, work: () => Promise<void> | void): Promise<void> | void {
    const queue = this.#replies.get(session);
    return queue ? queue.drained().then(work) : work();
  }

  /** The session's reply queue, made when it first has a reply pending and dropped when drained. */
  #queueOf(session: Session): ReplyQueue {
    let queue = this.#replies.get(session);
    if (!queue) {
      queue = new ReplyQueue(session, () => this.#replies.delete(session));
      this.#replies.set(session, queue);
    }
    return queue;
  }

  #replyError(
    session: Session,
    err: unknown,
    requestId: RequestId | undefined,
    errorType: CommandBase["errorType"],
  ): void {
    session.send(encodeLine(errorReply(this.#chatError(session, err), requestId, errorType)));
  }

  /** The error to answer with: a ChatError as it is, anything else logged and answered internal_error. */
  #chatError(session: Session, err: unknown): ChatError {
    if (err instanceof ChatError) return err;
    this.#log.error("unexpected error handling a request", { session: session.id, error: err });
    return new ChatError("internal_error", "Internal server error");
  }

  async #register(session: Session, frame: Frame): Promise<Reply> {
    await this.#auth.register(field(frame, "username"), field(frame, "password"), session.remoteAddress);
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
  #send(session: Session & { user: User }, frame: Frame, requestId: RequestId | undefined, reply: ReplyPlace): void {
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
    this.#messages.enqueue(session, user, roomOf(frame), text, requestId, clientMsgId, reply);
  }

  async #history(session: Session, frame: Frame): Promise<Reply> {
    const room = roomOf(frame);
    const query = parseHistoryQuery(frame, this.#options.maxHistoryLimit);
    if (room !== LOBBY && this.#roomCommands) return await this.#roomCommands.roomHistory(session.user!, room, query);
    const reply: Reply = { type: "history_response", messages: await this.#messages.history(query) };
    // Asked for by name, the lobby's reply says so (v1's form otherwise).
    if (field(frame, "room") === LOBBY) reply.room = LOBBY;
    return reply;
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
