// The bytes of a broadcast: committed messages encoded once for every recipient, and a sender's
// own copy as views of those bytes around its own lines (with its request_id and client_msg_id),
// with any other reply it is owed from the same batch at its place among them.

import type { StoredMessage } from "../store/message_stream.ts";
import type { RequestId } from "../wire/protocol.ts";

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

/** The answer to a repeated client_msg_id: the original message, to the repeating connection alone. */
export function duplicateLine(original: StoredMessage, extra: OwnExtra): string {
  return withExtras(`${newMessageLine(original).slice(0, -2)},"duplicate":true}\n`, extra);
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

/** Whether a sender's replies from a batch differ from the shared bytes (so it needs its own pieces). */
export function needsOwnPieces(replies: readonly BatchReply[]): boolean {
  for (const reply of replies) {
    if (reply.kind === "bytes" || reply.extra.requestId !== undefined || reply.extra.clientMsgId !== undefined) {
      return true;
    }
  }
  return false;
}
