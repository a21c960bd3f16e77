// The network ceiling: a bare relay that rebroadcasts every line it receives to every connection,
// the sender included. No parsing beyond the line split, no database. It uses the chat server's
// delivery ideas: the lines received in one turn of the event loop are encoded into one buffer that
// every connection is given; each connection coalesces its queue into one write at a time, loops
// partial writes, and is cut off when its backlog passes 1 MiB. Read buffers start at 1 KiB and
// grow to 64 KiB for busy peers, as the server's do.
//
//   deno run --allow-net=127.0.0.1 bench/relay.ts   → prints {"msg":"relay listening","port":N}

const NEWLINE = 0x0a;
const MIN_READ_BUFFER = 1024;
const MAX_READ_BUFFER = 64 * 1024;
const MAX_OUTBOUND_BYTES = 1024 * 1024;

class Peer {
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #closed = false;
  constructor(readonly conn: Deno.TcpConn) {}

  send(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    if (this.#queuedBytes > MAX_OUTBOUND_BYTES) {
      this.close();
      return;
    }
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => void this.#drain());
    }
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue, this.#queuedBytes);
        this.#queue = [];
        this.#queuedBytes = 0;
        let offset = 0;
        while (offset < chunk.length) offset += await this.conn.write(offset === 0 ? chunk : chunk.subarray(offset));
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    peers.delete(this);
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

const peers = new Set<Peer>();
/** Complete lines received in this turn, each with its "\n", copied out of the read buffers. */
let pending: Uint8Array[] = [];
let pendingBytes = 0;

function queueLine(line: Uint8Array): void {
  if (pending.length === 0) queueMicrotask(broadcast);
  pending.push(line);
  pendingBytes += line.length;
}

function broadcast(): void {
  const shared = pending.length === 1 ? pending[0] : concat(pending, pendingBytes);
  pending = [];
  pendingBytes = 0;
  for (const peer of peers) peer.send(shared);
}

async function serve(peer: Peer): Promise<void> {
  let buffer = new Uint8Array(MIN_READ_BUFFER);
  let partial: Uint8Array[] = [];
  let partialBytes = 0;
  try {
    while (true) {
      const n = await peer.conn.read(buffer);
      if (n === null) break;
      const chunk = buffer.subarray(0, n);
      let start = 0;
      while (start < n) {
        const end = chunk.indexOf(NEWLINE, start);
        if (end === -1) {
          partial.push(chunk.slice(start));
          partialBytes += n - start;
          break;
        }
        const piece = chunk.subarray(start, end + 1);
        if (partialBytes > 0) {
          partial.push(piece);
          queueLine(concat(partial, partialBytes + piece.length));
          partial = [];
          partialBytes = 0;
        } else {
          queueLine(piece.slice());
        }
        start = end + 1;
      }
      if (n === buffer.length && buffer.length < MAX_READ_BUFFER) buffer = new Uint8Array(buffer.length * 2);
      else if (n < MIN_READ_BUFFER && buffer.length > MIN_READ_BUFFER) buffer = new Uint8Array(MIN_READ_BUFFER);
    }
  } catch {
    // Reset by the peer: just drop it.
  }
  peer.close();
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const stop = () => {
    for (const peer of peers) peer.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await Deno.stdout.write(
    new TextEncoder().encode(JSON.stringify({ msg: "relay listening", port: listener.addr.port }) + "\n"),
  );
  for await (const conn of listener) {
    try {
      conn.setNoDelay(true);
    } catch {
      // The peer may be gone already.
    }
    const peer = new Peer(conn);
    peers.add(peer);
    void serve(peer);
  }
}
