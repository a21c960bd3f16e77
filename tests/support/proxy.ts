// A TCP proxy for database outage tests: it forwards a local port to a target (PostgreSQL), and
// can cut the link (every connection closed, new ones refused) and restore it on the same port.
//
//   await using proxy = startProxy({ hostname: "127.0.0.1", port: 5432 });
//   const url = proxiedUrl(postgresUrl, proxy);   // postgres://…@127.0.0.1:<proxy.port>/…
//   await proxy.cut();                             // the database "goes away"
//   proxy.restore();                               // and comes back
//
// Contract: cut() and close() resolve only once every socket the proxy opened is closed and every
// read, write and accept it started has settled, so tests that use it stay sanitizer-clean.

export interface ProxyTarget {
  hostname: string;
  port: number;
}

export interface TcpProxy extends AsyncDisposable {
  /** The local port; the same after restore(). */
  readonly port: number;
  /** Client connections being forwarded now. */
  readonly connectionCount: number;
  /** True between cut() and restore(). */
  readonly isCut: boolean;
  /** Closes every forwarded connection (both ends) and stops listening: new connections are refused. */
  cut(): Promise<void>;
  /** Listens again on the same port. A no-op unless cut. */
  restore(): void;
  /**
   * Holds every byte in both directions while connections stay open, as a network partition does:
   * nothing is refused or reset, nothing arrives. resume() delivers what was held.
   */
  stall(): void;
  resume(): void;
  /**
   * Holds every byte of the connections open now, for good, while new connections work: links
   * that died silently (a dropped NAT or firewall entry) while the database itself is fine.
   */
  silenceExisting(): void;
  /** cut(), for good. */
  close(): Promise<void>;
}

const BUFFER_BYTES = 64 * 1024;

/** Starts forwarding `hostname:port` (default 127.0.0.1 and an ephemeral port) to `target`. */
export function startProxy(target: ProxyTarget, listen: { hostname?: string; port?: number } = {}): TcpProxy {
  return new Proxy(target, listen.hostname ?? "127.0.0.1", listen.port ?? 0);
}

/** `url` with its host and port replaced by the proxy's (user, password, database and options kept). */
export function proxiedUrl(url: string, proxy: TcpProxy, hostname = "127.0.0.1"): string {
  const parsed = new URL(url);
  parsed.hostname = hostname;
  parsed.port = String(proxy.port);
  return parsed.href;
}

/** The host and port a postgres:// URL points at (default port 5432). */
export function targetOf(url: string): ProxyTarget {
  const parsed = new URL(url);
  return { hostname: parsed.hostname || "127.0.0.1", port: parsed.port ? Number(parsed.port) : 5432 };
}

/** The two sockets of one forwarded connection; closing either direction closes both. */
interface Link {
  sockets: Deno.Conn[];
  closed: boolean;
  /** Settles when the proxy is not stalled. */
  open: () => Promise<void>;
  /** Set when this link is silenced: it settles only when the proxy is cut. */
  silenced?: PromiseWithResolvers<void>;
}

class Proxy implements TcpProxy {
  readonly port: number;
  readonly #target: ProxyTarget;
  readonly #hostname: string;
  readonly #links = new Set<Link>();
  /** Every accept loop and forwarding task still running. */
  readonly #tasks = new Set<Promise<void>>();
  #listener: Deno.TcpListener | undefined;
  #stalled: PromiseWithResolvers<void> | undefined;

  constructor(target: ProxyTarget, hostname: string, port: number) {
    this.#target = target;
    this.#hostname = hostname;
    this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#track(this.#accept(this.#listener));
  }

  get connectionCount(): number {
    return this.#links.size;
  }

  get isCut(): boolean {
    return this.#listener === undefined;
  }

  async cut(): Promise<void> {
    this.resume();
    for (const link of this.#links) link.silenced?.resolve();
    const listener = this.#listener;
    this.#listener = undefined;
    if (listener) closeQuietly(listener);
    for (const link of this.#links) closeLink(link);
    // Tasks started while we wait (none can be: the listener is closed) are awaited as well.
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  stall(): void {
    this.#stalled ??= Promise.withResolvers<void>();
  }

  silenceExisting(): void {
    for (const link of this.#links) link.silenced ??= Promise.withResolvers<void>();
  }

  resume(): void {
    this.#stalled?.resolve();
    this.#stalled = undefined;
  }

  restore(): void {
    if (this.#listener) return;
    this.#listener = Deno.listen({ hostname: this.#hostname, port: this.port, transport: "tcp" });
    this.#track(this.#accept(this.#listener));
  }

  close(): Promise<void> {
    return this.cut();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let client: Deno.TcpConn;
      try {
        client = await listener.accept();
      } catch {
        // The listener was closed by cut(): stop accepting.
        return;
      }
      if (listener !== this.#listener) {
        // Accepted just as cut() closed the listener.
        closeQuietly(client);
        return;
      }
      this.#track(this.#forward(client));
    }
  }

  async #forward(client: Deno.TcpConn): Promise<void> {
    const link: Link = {
      sockets: [client],
      closed: false,
      open: () => link.silenced?.promise ?? this.#stalled?.promise ?? Promise.resolve(),
    };
    this.#links.add(link);
    try {
      let upstream: Deno.TcpConn;
      try {
        upstream = await Deno.connect({ ...this.#target, transport: "tcp" });
      } catch {
        // The target is down too: the client sees its connection closed.
        return;
      }
      if (link.closed) {
        closeQuietly(upstream);
        return;
      }
      link.sockets.push(upstream);
      await Promise.all([pipe(client, upstream, link), pipe(upstream, client, link)]);
    } finally {
      closeLink(link);
      this.#links.delete(link);
    }
  }
}

/** Copies `from` to `to` until either ends or fails, then closes the whole link. */
async function pipe(from: Deno.Conn, to: Deno.Conn, link: Link): Promise<void> {
  const buffer = new Uint8Array(BUFFER_BYTES);
  try {
    while (!link.closed) {
      const n = await from.read(buffer);
      if (n === null) break;
      await link.open();
      if (link.closed) break;
      let offset = 0;
      while (offset < n) offset += await to.write(buffer.subarray(offset, n));
    }
  } catch {
    // Reset by a peer, or closed under the pending read or write by cut(): the link ends.
  } finally {
    closeLink(link);
  }
}

function closeLink(link: Link): void {
  if (link.closed) return;
  link.closed = true;
  for (const socket of link.sockets) closeQuietly(socket);
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}
