// The --listen mode: every incoming message as one JSON line on stdout, status on stderr, until
// interrupted (exit 0) or the session is refused (exit 1).

import type { ClientArgs } from "./args.ts";
import { scriptedLogin } from "./credentials.ts";
import { describeError, describeLost, describeReconnected, HISTORY_RESET_TEXT, messageJson } from "./format.ts";
import { writeStderr, writeStdout } from "./output.ts";
import { ChatSession } from "./session.ts";
import { onSignals } from "./signals.ts";

const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

export async function runListen(args: ClientArgs): Promise<number> {
  const done = Promise.withResolvers<number>();
  const session = await ChatSession.open({
    ...await scriptedLogin(args),
    initialHistory: args.history ?? 0,
    maxReconnectAttempts: Infinity,
  }, (event) => {
    switch (event.kind) {
      case "message":
        // stdout closed (e.g. `| head -1`): nobody is reading any more.
        if (!writeStdout(messageJson(event.message) + "\n")) done.resolve(0);
        break;
      case "lost":
        writeStderr(describeLost(event.cause, event.attempt, event.retryInMs) + "\n");
        break;
      case "reconnected":
        writeStderr(describeReconnected(event.missed) + "\n");
        break;
      case "history_reset":
        writeStderr(HISTORY_RESET_TEXT + "\n");
        break;
      case "ended":
        writeStderr(describeError(event.error) + "\n");
        done.resolve(1);
        break;
    }
  });
  const removeSignals = onSignals(STOP_SIGNALS, () => done.resolve(0));
  try {
    writeStderr(`listening on ${args.hostname}:${args.port} as ${session.username} (Ctrl-C to stop)\n`);
    return await done.promise;
  } finally {
    removeSignals();
    session.close();
  }
}
