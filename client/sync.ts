// Merging history with live broadcasts on a freshly logged-in connection: the initial history,
// and the catch-up after a reconnect, through the Sequencer that holds broadcasts meanwhile.

import type { Connection } from "./connection.ts";
import { ServerRefusal } from "./errors.ts";
import type { Sequencer } from "./sequencer.ts";
import type { Frame } from "../lib/wire/protocol.ts";
import { type ChatMessage, historyMessages } from "./wire.ts";

export type MessageOrigin = "history" | "live" | "missed";
export type Deliver = (message: ChatMessage, origin: MessageOrigin) => void;

/** Messages per catch-up request; the server may return fewer (its MAX_HISTORY_LIMIT). */
export const CATCH_UP_PAGE = 200;

/** `get_history` on `conn`; a refusal throws ServerRefusal. */
export async function historyOn(conn: Connection, query: Frame): Promise<ChatMessage[]> {
  const reply = await conn.request({ type: "get_history", ...query });
  if (reply.type !== "history_response") throw ServerRefusal.fromFrame(reply);
  return historyMessages(reply);
}

/**
 * After the first login (the sequencer holding): delivers the `wanted` newest messages, then the
 * broadcasts held meanwhile. Returns 0 (nothing counts as missed on a first start).
 */
export async function initialSync(
  conn: Connection,
  sequencer: Sequencer,
  wanted: number,
  deliver: Deliver,
): Promise<number> {
  // With no history to show, one message still tells where "from now on" starts.
  const page = await historyOn(conn, { limit: Math.max(1, wanted) });
  if (wanted > 0) {
    for (const message of sequencer.page(page.slice(-wanted))) deliver(message, "history");
  }
  sequencer.startAfter(page.at(-1)?.id ?? 0);
  for (const message of sequencer.release()) deliver(message, "live");
  return 0;
}

/**
 * After a re-login (the sequencer holding): pages forward from the last message delivered until
 * nothing can be missing, then delivers the held broadcasts. Returns how many were missed.
 * `onReset` is called when the server's history ends before what was delivered (a new database).
 */
export async function catchUp(
  conn: Connection,
  sequencer: Sequencer,
  deliver: Deliver,
  onReset: () => void,
): Promise<number> {
  const newest = (await historyOn(conn, { limit: 1 })).at(-1)?.id ?? 0;
  if (newest < (sequencer.lastId ?? 0)) {
    sequencer.rebase(newest);
    onReset();
  }
  let missed = 0;
  while (true) {
    const after = sequencer.lastId ?? 0;
    const page = await historyOn(conn, { limit: CATCH_UP_PAGE, after });
    for (const message of sequencer.page(page)) {
      deliver(message, "missed");
      missed++;
    }
    if (sequencer.caughtUp(page)) break;
    // A server that returns nothing newer would otherwise keep us here forever.
    if ((sequencer.lastId ?? 0) <= after) break;
  }
  for (const message of sequencer.release()) deliver(message, "live");
  return missed;
}
