// The bytes of a broadcast: committed messages encoded once for every recipient, and a sender's
// own copy as views of those bytes around its own lines (with its request_id and client_msg_id),
// with any other reply it is owed from the same batch at its place among them.

import type { StoredMessage } from "../store/message_stream.ts";
import type { RequestId } from "../wire/protocol.ts";
import type { Session } from "./session.ts";

/** What the sender's own copy of a message adds to the shared line. */
export interface OwnExtra {
  requestId: RequestId | undefined;
  clientMsgId: string | undefined;
}

/**
 * One reply a sender is owed from a batch, in request order: its own copy of the batch's line
 * `index`, or other bytes of its own (a duplicate's original, say).
 */
export type BatchReply =
  | { kind: "own"; index: number; extra: OwnExtra }
  | { kind: "bytes"; bytes: Uint8Array };

const utf8 = new TextEncoder();

export function encodeText(text: string): Uint8Array {
  return utf8.encode(text);
}

const NEW_MESSAGE_PREFIX = `{"type":"new_message",`;

/** A lobby message as a v2 connection gets it: v1's line with "room":"lobby" after its type. */
export function lobbyLineV2(m: StoredMessage): string {
  return `${NEW_MESSAGE_PREFIX}"room":"lobby",${newMessageLine(m).slice(NEW_MESSAGE_PREFIX.length)}`;
}

export function newMessageLine(m: StoredMessage): string {
  // Built by hand: the hottest serialisation in the server (one per message, fields in the contract's order).
  return `{"type":"new_message","id":${m.id},"sender":${JSON.stringify(m.sender)},"message":${
    JSON.stringify(m.message)
  },"timestamp":${JSON.stringify(m.timestamp)}}\n`;
}

/** The sender's own copy of a line: the same line with its request_id and client_msg_id. */
export function withExtras(line: string, extra: OwnExtra): string {
  if (extra.clientMsgId === undefined && extra.requestId === undefined) return line;
  // request_id last, where clients that read it without parsing the line (the bench) expect it.
  let tail = "";
  if (extra.clientMsgId !== undefined) tail += `,"client_msg_id":${JSON.stringify(extra.clientMsgId)}`;
  if (extra.requestId !== undefined) tail += `,"request_id":${JSON.stringify(extra.requestId)}`;
  return `${line.slice(0, -2)}${tail}}\n`;
}

/**
 * The answer to a repeated client_msg_id: the original message (in `room`), to the repeating
 * connection alone; with its room, unless both are v1's (a lobby message to a v1 connection).
 */
export function duplicateLine(original: StoredMessage, extra: OwnExtra, room: string, protocol: 1 | 2): string {
  const line = room === "lobby" && protocol === 1
    ? newMessageLine(original)
    : `${NEW_MESSAGE_PREFIX}"room":${JSON.stringify(room)},${
      newMessageLine(original).slice(NEW_MESSAGE_PREFIX.length)
    }`;
  return withExtras(`${line.slice(0, -2)},"duplicate":true}\n`, extra);
}

/** The lines encoded one after another, and where each starts (`offsets[lines.length]` is the end). */
export function encodeLines(lines: string[]): { bytes: Uint8Array; offsets: Int32Array } {
  let chars = 0;
  for (const line of lines) chars += line.length;
  // Room for ASCII, the usual case; more (3 bytes per UTF-16 unit at most) if a line needs it.
  let bytes = new Uint8Array(chars);
  const offsets = new Int32Array(lines.length + 1);
  let at = 0;
  let encodedChars = 0;
  for (let i = 0; i < lines.length; i++) {
    offsets[i] = at;
    let result = utf8.encodeInto(lines[i], bytes.subarray(at));
    if (result.read < lines[i].length) {
      // Enough for every line left, this one included, whatever they hold: grown once at most.
      const larger = new Uint8Array(at + 3 * (chars - encodedChars));
      larger.set(bytes.subarray(0, at));
      bytes = larger;
      result = utf8.encodeInto(lines[i], bytes.subarray(at));
    }
    at += result.written;
    encodedChars += lines[i].length;
  }
  offsets[lines.length] = at;
  return { bytes: bytes.subarray(0, at), offsets };
}

/**
 * One sender's copy of a broadcast: the shared bytes, with its own lines replaced by their own
 * copies and its other replies inserted where they fall in request order (views, not copies).
 */
export function personalPieces(
  shared: Uint8Array,
  offsets: Int32Array,
  lines: readonly string[],
  replies: readonly BatchReply[],
): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const reply of replies) {
    if (reply.kind === "bytes") {
      pieces.push(reply.bytes);
      continue;
    }
    const { index, extra } = reply;
    if (extra.requestId === undefined && extra.clientMsgId === undefined) {
      // The shared line is this sender's copy already.
      if (offsets[index + 1] > at) pieces.push(shared.subarray(at, offsets[index + 1]));
    } else {
      if (offsets[index] > at) pieces.push(shared.subarray(at, offsets[index]));
      pieces.push(encodeText(withExtras(lines[index], extra)));
    }
    at = Math.max(at, offsets[index + 1]);
  }
  if (at < shared.length) pieces.push(shared.subarray(at));
  return pieces;
}

/**
 * A reply a sender is owed from a batch, in request order: its own copy of message `id` (`line`
 * builds the message's line as that connection gets it, when no delivery carried it), or bytes.
 */
export type PendingReply =
  | { kind: "own"; id: number; extra: OwnExtra; line: () => string }
  | { kind: "bytes"; bytes: Uint8Array };

/**
 * A sender's replies that fall in one run of a delivery (its lines' ids → their index), taken
 * from `replies` from `cursor.at` on, in request order: bytes replies go where they fall between
 * its own lines. Stops at an own message the run does not hold (a later run's).
 */
export function takeRunReplies(
  replies: readonly PendingReply[],
  cursor: { at: number },
  indexOf: ReadonlyMap<number, number>,
): BatchReply[] {
  const taken: BatchReply[] = [];
  while (cursor.at < replies.length) {
    const reply = replies[cursor.at];
    if (reply.kind === "bytes") {
      taken.push(reply);
    } else {
      const index = indexOf.get(reply.id);
      if (index === undefined) break;
      taken.push({ kind: "own", index, extra: reply.extra });
    }
    cursor.at++;
  }
  return taken;
}

/** Sends a sender's replies from `cursor.at` on to it alone (those no broadcast carried), in order. */
export function sendRemaining(session: Session, replies: readonly PendingReply[], cursor: { at: number }): void {
  for (; cursor.at < replies.length; cursor.at++) {
    const reply = replies[cursor.at];
    session.send(reply.kind === "bytes" ? reply.bytes : encodeText(withExtras(reply.line(), reply.extra)));
  }
}

/** Whether a sender's replies from a batch differ from the shared bytes (so it needs its own pieces). */
export function needsOwnPieces(replies: readonly BatchReply[]): boolean {
  for (const reply of replies) {
    if (reply.kind === "bytes" || reply.extra.requestId !== undefined || reply.extra.clientMsgId !== undefined) {
      return true;
    }
  }
  return false;
}
