// The HTTP side of HTTP_PORT (HTTPS with a certificate): the WebSocket at /ws, the web page at /,
// /healthz and /metrics. Four routes, so no framework.

import type { Database } from "../store/db.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { ConnectionRegistry } from "./registry.ts";
import type { TlsFiles } from "./tls.ts";
import { BroadcastLines, WebSocketConnection } from "./websocket_connection.ts";

export interface HttpOptions {
  host: string;
  /** 0 = an ephemeral port. */
  port: number;
  tls?: TlsFiles;
}

/** Listening on HTTP_PORT failed (in use, no permission): `cause` is the runtime's error. */
export class HttpListenError extends Error {
  override readonly name = "HttpListenError";
  constructor(readonly port: number, override readonly cause: unknown) {
    super(`cannot listen for HTTP on port ${port}`, { cause });
  }
}

/** How long /healthz waits for the database's answer to `SELECT 1`. */
const HEALTH_QUERY_TIMEOUT_MS = 2000;

/** The page's files: scripts only from this origin (no inline script), the socket on this origin. */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
};

interface StaticFile {
  body: Uint8Array<ArrayBuffer>;
  type: string;
}

export class HttpServer {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #chat: ConnectionRegistry;
  readonly #db: Database;
  readonly #metrics: Metrics;
  readonly #log: Logger;
  readonly #files: Map<string, StaticFile>;
  readonly #lines = new BroadcastLines();
  /** One health query at a time, shared by every /healthz request that arrives meanwhile. */
  #healthCheck: Promise<string | undefined> | undefined;

  private constructor(
    options: HttpOptions,
    chat: ConnectionRegistry,
    db: Database,
    metrics: Metrics,
    log: Logger,
    files: Map<string, StaticFile>,
  ) {
    this.#chat = chat;
    this.#db = db;
    this.#metrics = metrics;
    this.#log = log;
    this.#files = files;
    this.#server = Deno.serve({
      hostname: options.host,
      port: options.port,
      ...options.tls,
      onListen: () => {},
      onError: (err) => {
        log.error("unexpected error serving HTTP", { error: err });
        return new Response("Internal server error\n", { status: 500 });
      },
    }, (request, info) => this.#route(request, info));
  }

  /** Loads the web page's files into memory, then listens. */
  static async start(
    options: HttpOptions,
    chat: ConnectionRegistry,
    db: Database,
    metrics: Metrics,
    log: Logger,
  ): Promise<HttpServer> {
    return new HttpServer(options, chat, db, metrics, log, await loadWebFiles());
  }

  get port(): number {
    return this.#server.addr.port;
  }

  /** Stops listening; call after the chat server has closed its WebSockets. */
  async close(): Promise<void> {
    await this.#server.shutdown();
  }

  #route(request: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response | Promise<Response> {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return text(405, "Method not allowed\n", { allow: "GET, HEAD" });
    }
    if (path === "/ws") return this.#upgrade(request, info.remoteAddr.hostname);
    if (path === "/healthz") return this.#health();
    if (path === "/metrics") {
      return text(200, this.#metrics.expose(), { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
    }
    const file = this.#files.get(path === "/" ? "index.html" : path.slice(1));
    if (!file) return text(404, "Not found\n");
    return new Response(request.method === "HEAD" ? null : file.body, {
      headers: {
        "content-type": file.type,
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
      },
    });
  }

  #upgrade(request: Request, remoteAddress: string): Response {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return text(426, "This is the chat's WebSocket: connect with a WebSocket client\n", { upgrade: "websocket" });
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(request);
    } catch (err) {
      // A handshake without its key or version, say: the client's mistake, not ours.
      return text(400, `Bad WebSocket handshake: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    const { socket, response } = upgraded;
    const connection = new WebSocketConnection(
      this.#chat.nextConnectionId(),
      socket,
      remoteAddress,
      this.#chat,
      this.#lines,
    );
    // Admitted once open: only an open socket can be sent its refusal.
    socket.onopen = () => {
      if (this.#chat.admit(connection)) connection.start();
    };
    return response;
  }

  async #health(): Promise<Response> {
    if (!this.#chat.accepting) return json(503, { status: "unavailable", reason: "server is shutting down" });
    this.#healthCheck ??= this.#queryDatabase().finally(() => this.#healthCheck = undefined);
    const problem = await this.#healthCheck;
    return problem ? json(503, { status: "unavailable", reason: problem }) : json(200, { status: "ok" });
  }

  /** undefined when the database answers, else why not. */
  async #queryDatabase(): Promise<string | undefined> {
    try {
      await this.#db.query("SELECT 1", [], { timeoutMs: HEALTH_QUERY_TIMEOUT_MS, lane: "control" });
      return undefined;
    } catch (err) {
      this.#log.warn("health check: database unreachable", { error: err instanceof Error ? err.message : String(err) });
      return "database unreachable";
    }
  }
}

/** Every file of web/, read once: the page is small, and a compiled binary carries it (--include web). */
async function loadWebFiles(): Promise<Map<string, StaticFile>> {
  const dir = new URL("../../web/", import.meta.url);
  const files = new Map<string, StaticFile>();
  for await (const entry of Deno.readDir(dir)) {
    const extension = entry.name.slice(entry.name.lastIndexOf(".") + 1);
    const type = CONTENT_TYPES[extension];
    if (!entry.isFile || !type) continue;
    files.set(entry.name, { body: await Deno.readFile(new URL(entry.name, dir)), type });
  }
  return files;
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers } });
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store" },
  });
}
