// A WebSocket client for the load generator, spoken by hand over a TCP socket (RFC 6455): the
// handshake, masked text frames out (one per line), frames in turned back into lines ("\n"
// appended), behind the byte-stream interface the load client reads. Lean on purpose, as the TCP
// client is: Deno's own WebSocket costs an event and a promise per message, which would make the
// load generator, not the server, the limit.

import { concatBytes } from "../lib/core/bytes.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = 0x0a;

export class WsLineConn {
  readonly #conn: Deno.TcpConn;
  /** Bytes read from the socket and not yet parsed into frames. */
  #pending: Uint8Array = new Uint8Array(0);
  /** Lines decoded from frames and not yet handed to read(). */
  #out: Uint8Array[] = [];
  #closed = false;

  private constructor(conn: Deno.TcpConn, leftover: Uint8Array) {
    this.#conn = conn;
    this.#pending = leftover;
  }

  static async open(port: number): Promise<WsLineConn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await writeAll(
      conn,
      encoder.encode(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    let head: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("websocket handshake: connection closed");
      head = concat(head, buffer.subarray(0, n));
      const end = indexOfHeadEnd(head);
      if (end === -1) continue;
      const status = decoder.decode(head.subarray(0, end));
      if (!status.startsWith("HTTP/1.1 101")) {
        throw new Error(`websocket handshake refused: ${status.split("\r\n")[0]}`);
      }
      return new WsLineConn(conn, head.slice(end + 4));
    }
  }

  /** Reads frames until at least one line is ready; copies as many line bytes as fit. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#out.length === 0) {
      this.#parseFrames();
      if (this.#out.length > 0) break;
      if (this.#closed) return null;
      const n = await this.#conn.read(buffer);
      if (n === null) return null;
      this.#pending = this.#pending.length === 0 ? buffer.slice(0, n) : concat(this.#pending, buffer.subarray(0, n));
    }
    let n = 0;
    while (this.#out.length > 0 && n < buffer.length) {
      const chunk = this.#out[0];
      const take = Math.min(chunk.length, buffer.length - n);
      buffer.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#out.shift();
      else this.#out[0] = chunk.subarray(take);
    }
    return n;
  }

  /** Sends each complete line of `bytes` as one masked text frame, all in one write. */
  async write(bytes: Uint8Array): Promise<number> {
    const frames: Uint8Array[] = [];
    let start = 0;
    while (start < bytes.length) {
      let end = bytes.indexOf(NEWLINE, start);
      if (end === -1) end = bytes.length;
      if (end > start) frames.push(maskedTextFrame(bytes.subarray(start, end)));
      start = end + 1;
    }
    await writeAll(this.#conn, frames.length === 1 ? frames[0] : concatBytes(frames));
    return bytes.length;
  }

  close(): void {
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Moves every complete frame of #pending to #out (text payloads as lines); a close frame ends the stream. */
  #parseFrames(): void {
    const b = this.#pending;
    let i = 0;
    while (b.length - i >= 2) {
      const opcode = b[i] & 0x0f;
      let length = b[i + 1] & 0x7f;
      let header = 2;
      if (length === 126) {
        if (b.length - i < 4) break;
        length = (b[i + 2] << 8) | b[i + 3];
        header = 4;
      } else if (length === 127) {
        if (b.length - i < 10) break;
        length = Number(new DataView(b.buffer, b.byteOffset + i + 2, 8).getBigUint64(0));
        header = 10;
      }
      if (b.length - i < header + length) break;
      const payload = b.subarray(i + header, i + header + length);
      if (opcode === 0x1) {
        const line = new Uint8Array(length + 1);
        line.set(payload);
        line[length] = NEWLINE;
        this.#out.push(line);
      } else if (opcode === 0x8) {
        this.#closed = true;
      }
      i += header + length;
    }
    this.#pending = i === 0 ? b : b.slice(i);
  }
}

function maskedTextFrame(payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = new Uint8Array(header + 4 + length);
  frame[0] = 0x81;
  if (header === 2) frame[1] = 0x80 | length;
  else if (header === 4) {
    frame[1] = 0x80 | 126;
    frame[2] = length >> 8;
    frame[3] = length & 0xff;
  } else {
    frame[1] = 0x80 | 127;
    new DataView(frame.buffer).setBigUint64(2, BigInt(length));
  }
  // A zero mask is a valid mask, and spares the XOR.
  frame.set(payload, header + 4);
  return frame;
}

function indexOfHeadEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 0x0d && b[i + 1] === 0x0a && b[i + 2] === 0x0d && b[i + 3] === 0x0a) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}
