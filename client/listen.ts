// The --listen mode: every incoming message as one JSON line on stdout, status on stderr, until
// interrupted (exit 0) or the session is refused (exit 1).

import type { ClientArgs } from "./args.ts";
import { scriptedLogin } from "./credentials.ts";
import { describeError, describeLost, describeReconnected, HISTORY_RESET_TEXT, messageJson } from "./format.ts";
import { writeStderr, writeStdout } from "./output.ts";
import { ChatSession } from "./session.ts";
import { onSignals } from "./signals.ts";
import { joinedRoom, LOBBY, type RoomEvent } from "./rooms.ts";

/** One line of `--listen --room` output: the event as pushed, without its type. */
function roomEventJson(event: RoomEvent): string {
  return JSON.stringify(
    event.kind === "message"
      ? { room: event.room, id: event.id, sender: event.user, message: event.message, timestamp: event.timestamp }
      : {
        room: event.room,
        id: event.id,
        user: event.user,
        membership: event.kind,
        by: event.by,
        timestamp: event.timestamp,
      },
  );
}

const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

export async function runListen(args: ClientArgs): Promise<number> {
  const done = Promise.withResolvers<number>();
  /** The room listened to (--room), once known; until then, and without --room, the lobby. */
  let room = LOBBY;
  /** Room events that came before the room was known (--room), to print after its history. */
  let early: RoomEvent[] | undefined = args.room === undefined ? undefined : [];
  const session = await ChatSession.open({
    ...await scriptedLogin(args),
    initialHistory: args.room === undefined ? args.history ?? 0 : 0,
    maxReconnectAttempts: Infinity,
    rooms: args.room !== undefined,
  }, (event) => {
    switch (event.kind) {
      case "message":
        // stdout closed (e.g. `| head -1`): nobody is reading any more.
        if (room === LOBBY && !writeStdout(messageJson(event.message) + "\n")) done.resolve(0);
        break;
      case "room_event":
        if (early) early.push(event.event);
        else if (event.event.room === room && !writeStdout(roomEventJson(event.event) + "\n")) done.resolve(0);
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
    if (args.room !== undefined) {
      const id = await joinedRoom(session, args.room);
      if (id === undefined) {
        writeStderr(`you are in no room "${args.room}"\n`);
        return 1;
      }
      room = id;
      let shown = 0;
      if (id !== LOBBY && args.history) {
        for (const event of await session.roomHistory(id, { limit: args.history })) {
          writeStdout(roomEventJson(event) + "\n");
          shown = event.id;
        }
      }
      for (const event of early ?? []) {
        if (event.room === room && event.id > shown) writeStdout(roomEventJson(event) + "\n");
      }
      early = undefined;
    }
    writeStderr(`listening on ${args.hostname}:${args.port} as ${session.username} (Ctrl-C to stop)\n`);
    return await done.promise;
  } finally {
    removeSignals();
    session.close();
  }
}
