// The TCP transport under the NATS client (npm:nats), over Deno.connect, as pg_socket.ts is for
// postgres.js: the client's own transport writes through Deno's node:net, whose per-write cost
// was a tenth of a NATS server's busy time in the cluster bench (`writeBuffer`). Plain TCP only:
// a tls:// URL, TLS options, or a server that asks for TLS use the client's own transport.
//
// What the client asks of a transport (nats-base-client/transport.ts): connect() resolves once the
// server's INFO line has arrived (it is then the first thing the iterator yields); the iterator
// yields what arrives, in order, and ends after close; send() never throws; closed() settles
// once, with the error that closed it if any.

import {
  checkOptions,
  type ConnectionOptions,
  INFO,
  type NatsConnection,
  NatsConnectionImpl,
  type Server,
  type ServerInfo,
  setTransportFactory,
  type Transport,
} from "nats/lib/src/nats-base-client.js";
import { concatBytes } from "../core/bytes.ts";

const READ_BUFFER_BYTES = 64 * 1024;
/** Longest INFO line read before connect() gives up on the peer (NATS sends a few hundred bytes). */
const MAX_INFO_BYTES = 64 * 1024;

/** Whether the Deno transport can carry a connection to `url`: no tls:// server in it (TLS needs the client's own). */
export function plainNatsUrl(url: string): boolean {
  return url.split(",").every((server) => !/^\s*tls:\/\//i.test(server));
}

/** Connects with DenoNatsTransport: the client's connect(), on Deno's own TCP. */
export function connectNatsOverDenoTcp(options: ConnectionOptions): Promise<NatsConnection> {
  setTransportFactory({ factory: () => new DenoNatsTransport(), defaultPort: 4222 });
  return NatsConnectionImpl.connect(options);
}

class DenoNatsTransport implements Transport {
  readonly lang = "nats.js";
  readonly version = "2.29.3";
  closeError?: Error;
  #conn: Deno.TcpConn | undefined;
  #received: Uint8Array[] = [];
  #arrived = Promise.withResolvers<void>();
  #done = false;
  #connected = false;
  readonly #closed = Promise.withResolvers<void | Error>();
  #outgoing: Uint8Array[] = [];
  /** The write loop while it runs. */
  #flushing: Promise<void> | undefined;

  get isClosed(): boolean {
    return this.#done;
  }

  async connect(server: Server, options: ConnectionOptions): Promise<void> {
    if (options.tls) throw new Error("TLS options need the NATS client's own transport");
    const conn = await Deno.connect({ hostname: server.hostname, port: server.port, transport: "tcp" });
    try {
      conn.setNoDelay(true);
      const info = await this.#readInfo(conn);
      checkOptions(info, options);
      if (info.tls_required === true) throw new Error("the NATS server requires TLS: use a tls:// NATS_URL");
    } catch (err) {
      conn.close();
      throw err;
    }
    this.#conn = conn;
    this.#connected = true;
    void this.#read(conn);
  }

  /** Reads up to the end of the server's INFO line; what was read stays for the iterator. */
  async #readInfo(conn: Deno.TcpConn): Promise<ServerInfo> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) throw new Error("the NATS server closed the connection before its INFO");
      this.#received.push(buffer.slice(0, n));
      const received = concatBytes(this.#received);
      const text = new TextDecoder().decode(received);
      const end = text.indexOf("\r\n");
      if (end >= 0) {
        const match = INFO.exec(text.slice(0, end + 2));
        if (!match) throw new Error("unexpected response from the NATS server");
        return JSON.parse(match[1]);
      }
      if (received.length > MAX_INFO_BYTES) throw new Error("no INFO line from the NATS server");
    }
  }

  async #read(conn: Deno.TcpConn): Promise<void> {
    const buffer = new Uint8Array(READ_BUFFER_BYTES);
    let error: Error | undefined;
    try {
      while (!this.#done) {
        const n = await conn.read(buffer);
        if (n === null) break;
        // Copied: the client keeps what it has not parsed yet, and the buffer is reused.
        this.#received.push(buffer.slice(0, n));
        this.#arrived.resolve();
      }
    } catch (err) {
      if (!this.#done) error = err instanceof Error ? err : new Error(String(err));
    }
    await this.#close(error, false);
  }

  async *[Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    while (true) {
      if (this.#received.length === 0 && !this.#done) await this.#arrived.promise;
      const chunks = this.#received;
      this.#received = [];
      for (const chunk of chunks) yield chunk;
      if (this.#done && this.#received.length === 0) return;
      if (this.#received.length === 0) this.#arrived = Promise.withResolvers<void>();
    }
  }

  isEncrypted(): boolean {
    return false;
  }

  send(frame: Uint8Array): void {
    if (this.#done || !this.#conn || frame.length === 0) return;
    this.#outgoing.push(frame);
    this.#flushing ??= this.#flush(this.#conn).finally(() => this.#flushing = undefined);
  }

  /** Writes what is queued, all of it in one write where several frames wait. */
  async #flush(conn: Deno.TcpConn): Promise<void> {
    try {
      while (this.#outgoing.length > 0 && !this.#done) {
        const chunk = this.#outgoing.length === 1 ? this.#outgoing[0] : concatBytes(this.#outgoing);
        this.#outgoing = [];
        let offset = 0;
        while (offset < chunk.length) offset += await conn.write(chunk.subarray(offset));
      }
    } catch (err) {
      await this.#close(err instanceof Error ? err : new Error(String(err)), false);
    }
  }

  close(err?: Error): Promise<void> {
    return this.#close(err, true);
  }

  disconnect(): void {
    void this.#close(undefined, false);
  }

  closed(): Promise<void | Error> {
    return this.#closed.promise;
  }

  discard(): void {
    // Nothing is buffered beyond what send() writes at once.
  }

  /** `drain`: the queued frames are written first (a close the client asked for). */
  async #close(err: Error | undefined, drain: boolean): Promise<void> {
    if (!this.#connected || this.#done) return;
    if (drain && !err) await this.#flushing;
    if (this.#done) return;
    this.#done = true;
    this.closeError = err;
    try {
      this.#conn?.close();
    } catch {
      // Already closed by the peer.
    }
    this.#conn = undefined;
    this.#arrived.resolve();
    this.#closed.resolve(err);
  }
}
