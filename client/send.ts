// The scripted send mode: each line of stdin becomes a message; the client exits once every one
// has come back as its own broadcast (matched by request_id), or with the refusals on stderr.

import { type ByteReader, forEachLine, LineTooLongError } from "../lib/wire/framing.ts";
import type { ClientArgs } from "./args.ts";
import { backoffDelay } from "./backoff.ts";
import { scriptedLogin } from "./credentials.ts";
import { ServerRefusal } from "./errors.ts";
import { describeError, describeLost, describeReconnected, describeRefusal, snippet } from "./format.ts";
import { writeStderr } from "./output.ts";
import { ChatSession } from "./session.ts";
import type { ChatMessage } from "./wire.ts";
import { joinedRoom, LOBBY } from "./rooms.ts";

/** Longer stdin lines stop the run; the server's own line limit is far below this by default. */
export const MAX_INPUT_LINE_BYTES = 1024 * 1024;
/** About half a minute of reconnecting (8 tries, delays growing to 10 s) before a script gives up. */
const RECONNECT_ATTEMPTS = 8;
/** rate_limited is waited out, a bounded number of times per message. */
const MAX_RATE_LIMIT_WAITS = 50;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Returns the exit status: 0 all sent, 1 any refused or the connection given up. */
export async function runSend(args: ClientArgs, input: ByteReader): Promise<number> {
  const session = await ChatSession.open({
    ...await scriptedLogin(args),
    initialHistory: 0,
    maxReconnectAttempts: RECONNECT_ATTEMPTS,
    rooms: args.room !== undefined,
  }, (event) => {
    if (event.kind === "lost") writeStderr(describeLost(event.cause, event.attempt, event.retryInMs) + "\n");
    if (event.kind === "reconnected") writeStderr(describeReconnected(event.missed) + "\n");
  });
  let refused = 0;
  let failed = false;
  try {
    const room = args.room === undefined ? LOBBY : await joinedRoom(session, args.room);
    if (room === undefined) {
      writeStderr(`nothing sent: you are in no room "${args.room}" (see /rooms in the interactive client)\n`);
      return 1;
    }
    await forEachLine(input, MAX_INPUT_LINE_BYTES, async (bytes) => {
      let text: string;
      try {
        text = utf8.decode(bytes);
      } catch {
        writeStderr("not sent: a line of stdin is not valid UTF-8\n");
        refused++;
        return;
      }
      // The server would refuse it (invalid_message): say so without asking. Empty lines never get here.
      if (text.trim() === "") {
        writeStderr("not sent: a line of stdin is blank, and a message must not be\n");
        refused++;
        return;
      }
      try {
        await sendPatiently(session, text, room);
      } catch (err) {
        if (!(err instanceof ServerRefusal)) {
          writeStderr(`not sent (${snippet(text)}): ${describeError(err)}\n`);
          failed = true;
          return;
        }
        writeStderr(`not sent (${snippet(text)}): ${describeRefusal(err)}\n`);
        refused++;
      }
    }, () => failed);
    if (failed) return 1;
  } catch (err) {
    if (!(err instanceof LineTooLongError)) throw err;
    writeStderr(`stopped: a line of stdin is longer than ${MAX_INPUT_LINE_BYTES} bytes\n`);
    return 1;
  } finally {
    session.close();
  }
  return refused > 0 ? 1 : 0;
}

/**
 * Sends, waiting out rate limits (nothing was stored then, so the next try is a new message). The
 * session itself sends again after drops and short database outages, with the same client_msg_id.
 */
async function sendPatiently(session: ChatSession, text: string, room: string): Promise<ChatMessage> {
  for (let waits = 0;; waits++) {
    try {
      return await session.send(text, room);
    } catch (err) {
      if (!(err instanceof ServerRefusal)) throw err;
      if (err.code !== "rate_limited" || waits >= MAX_RATE_LIMIT_WAITS) throw err;
      const ms = err.retryAfterMs ?? backoffDelay(waits);
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  }
}
