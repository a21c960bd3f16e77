// What the dispatcher's command table holds: a request type's handler, and the checks the
// dispatcher makes before it (login) and the reply type its errors take.

import type { Frame, Reply, RequestId } from "../wire/protocol.ts";
import type { ReplyPlace } from "./reply_queue.ts";
import type { Session, User } from "./session.ts";

export interface CommandBase {
  needsLogin: boolean;
  /** The reply type for errors; register and login answer errors with their own response type. */
  errorType?: "register_response" | "login_response";
}

/** Answers with one reply (or, for a notice such as typing, none), in order. */
export interface ReplyCommand extends CommandBase {
  pipelined?: false;
  handle(session: Session, frame: Frame): Promise<Reply | undefined> | Reply | undefined;
}

/** Accepted at once and answered later, in its place, by its service. */
interface PipelinedCommand extends CommandBase {
  pipelined: true;
  accept(session: Session & { user: User }, frame: Frame, requestId: RequestId | undefined, reply: ReplyPlace): void;
}

export type Command = ReplyCommand | PipelinedCommand;
