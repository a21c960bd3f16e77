// The HTTP side of HTTP_PORT (HTTPS with a certificate): the WebSocket at /ws, the web page at /,
// and /healthz. Three routes, so no framework. /metrics is served on METRICS_ADDR only.

import type { Logger } from "../core/log.ts";
import { type HealthCheck, text } from "./health.ts";
import type { ConnectionRegistry } from "./registry.ts";
import type { TlsFiles } from "./tls.ts";
import { BroadcastText, WebSocketConnection } from "./websocket_connection.ts";

export interface HttpOptions {
  host: string;
  /** 0 = an ephemeral port. */
  port: number;
  tls?: TlsFiles;
}

/** Listening on HTTP_PORT or METRICS_ADDR failed (in use, no permission): `cause` is the runtime's error. */
export class HttpListenError extends Error {
  override readonly name = "HttpListenError";
  constructor(
    readonly variable: "HTTP_PORT" | "METRICS_ADDR",
    readonly host: string | undefined,
    readonly port: number,
    override readonly cause: unknown,
  ) {
    super(`cannot listen for HTTP on port ${port}`, { cause });
  }
}

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
  readonly #files: Map<string, StaticFile>;
  readonly #texts = new BroadcastText();
  readonly #health: HealthCheck;

  private constructor(
    options: HttpOptions,
    chat: ConnectionRegistry,
    health: HealthCheck,
    log: Logger,
    files: Map<string, StaticFile>,
  ) {
    this.#chat = chat;
    this.#health = health;
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
    health: HealthCheck,
    log: Logger,
  ): Promise<HttpServer> {
    return new HttpServer(options, chat, health, log, await loadWebFiles());
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
    if (path === "/healthz") return this.#health.respond();
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
      this.#texts,
    );
    // Admitted once open: only an open socket can be sent its refusal.
    socket.onopen = () => {
      if (this.#chat.admit(connection)) connection.start();
    };
    return response;
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
