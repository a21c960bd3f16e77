// Wires one running chat service together: database, schema, services, the line-protocol server
// and the HTTP server. Used by main.ts and by the tests, which start it on port 0. Reads no environment.

import { AuthService } from "./auth.ts";
import type { Config } from "./config.ts";
import { type Database, openDatabase, type QueryOptions, type Row } from "./db.ts";
import { Dispatcher } from "./dispatcher.ts";
import { HttpListenError, HttpServer } from "./http.ts";
import { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { LoginThrottle } from "./login_throttle.ts";
import { Maintenance } from "./maintenance.ts";
import { MessageService } from "./messages.ts";
import { Metrics } from "./metrics.ts";
import { Presence } from "./presence.ts";
import { applySchema } from "./schema.ts";
import { ChatServer } from "./server.ts";
import { readTlsFiles, type TlsFiles, tlsListenError } from "./tls.ts";

export interface ChatService extends AsyncDisposable {
  readonly server: ChatServer;
  readonly db: Database;
  readonly messages: MessageService;
  readonly presence: Presence;
  readonly maintenance: Maintenance;
  readonly metrics: Metrics;
  /** The line protocol's plain TCP port. */
  readonly port: number;
  /** The HTTP (or HTTPS) port, or undefined when HTTP is off. */
  readonly httpPort: number | undefined;
  /** The line protocol's TLS port, or undefined when there is none. */
  readonly tlsPort: number | undefined;
  /** Whether HTTP_PORT serves HTTPS/WSS. */
  readonly secure: boolean;
  /** Graceful shutdown: stop accepting, finish in-flight sends, close connections, close the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this database instead of opening one from the config; it is left open on close. */
  database?: Database;
  /** How long a message batch may wait for the database (tests shorten it). */
  commitTimeoutMs?: number;
  /** Serve HTTP on this port whatever HTTP_PORT says (0 = an ephemeral port; tests use it). */
  httpPort?: number;
  /** Open the TLS line listener on this port whatever TLS_PORT says (0 = ephemeral; tests use it). */
  tlsPort?: number;
}

export async function startChatService(config: Config, log: Logger, options: StartOptions = {}): Promise<ChatService> {
  // Certificates first: a bad one stops start-up before anything is opened.
  const tls = config.tlsCertFile && config.tlsKeyFile ? readTlsFiles(config.tlsCertFile, config.tlsKeyFile) : undefined;
  const metrics = new Metrics();
  const opened = options.database ?? await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    log,
  });
  const ownsDatabase = options.database === undefined;
  const db = countingErrors(opened, metrics);
  const hub = new Hub();
  const throttle = new LoginThrottle(db);
  const messages = new MessageService(db, hub, log, config.maxHistoryLimit, options.commitTimeoutMs, metrics);
  const presence = new Presence(db, hub, log);
  const maintenance = new Maintenance(db, throttle, log);
  const auth = new AuthService(db, throttle, log, { bcryptCost: config.bcryptCost, metrics });
  let server: ChatServer | undefined;
  try {
    await applySchema(db, log);
    auth.warmUp();
    await messages.start();
    await presence.start();
    maintenance.start();
    const dispatcher = new Dispatcher(auth, messages, hub, presence, log, config, metrics);
    const tlsPort = tls ? options.tlsPort ?? config.tlsPort : undefined;
    server = withTlsErrors(
      tls,
      () => new ChatServer({ ...config, tlsPort, tls }, dispatcher, hub, messages, log, metrics),
    );
    const httpPort = options.httpPort ?? (config.httpPort === 0 ? undefined : config.httpPort);
    const http = httpPort === undefined
      ? undefined
      : await startHttp(config.host, httpPort, tls, server, db, metrics, log);
    metrics.start();
    const chat = server;
    let closing: Promise<void> | undefined;
    const close = () =>
      closing ??= (async () => {
        maintenance.stop();
        await chat.close();
        await http?.close();
        messages.stop();
        await Promise.all([presence.stop(), maintenance.idle(), auth.drain()]);
        metrics.stop();
        log.info("messages since start", { ...messages.stats });
        if (ownsDatabase) await opened.close();
      })();
    return {
      server,
      db,
      messages,
      presence,
      maintenance,
      metrics,
      port: server.port,
      httpPort: http?.port,
      tlsPort: server.tlsPort,
      secure: tls !== undefined,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    maintenance.stop();
    await server?.close();
    messages.stop();
    await Promise.all([presence.stop(), auth.drain()]);
    if (ownsDatabase) await opened.close().catch(() => {});
    throw err;
  }
}

function startHttp(
  host: string,
  port: number,
  tls: TlsFiles | undefined,
  server: ChatServer,
  db: Database,
  metrics: Metrics,
  log: Logger,
): Promise<HttpServer> {
  return withTlsErrors(tls, () => HttpServer.start({ host, port, tls }, server, db, metrics, log)).catch((err) => {
    if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) {
      throw new HttpListenError(port, err);
    }
    if (err instanceof Deno.errors.AddrNotAvailable) throw new HttpListenError(port, err);
    throw err;
  });
}

/** Runs `listen`; with TLS on, an error about the certificate or key becomes a TlsError. */
function withTlsErrors<T>(tls: TlsFiles | undefined, listen: () => T): T {
  if (!tls) return listen();
  try {
    const result = listen();
    if (result instanceof Promise) return result.catch(rethrowTls) as T;
    return result;
  } catch (err) {
    return rethrowTls(err);
  }
}

function rethrowTls(err: unknown): never {
  // Listening errors (address in use, permission) keep their type; anything else from a TLS
  // listener is the certificate or key.
  if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) throw err;
  if (err instanceof Deno.errors.AddrNotAvailable) throw err;
  if (err instanceof Error && /cert|key|pem|tls/i.test(err.message)) throw tlsListenError(err);
  throw err;
}

/** The same database, counting every failed query in the metrics. */
function countingErrors(db: Database, metrics: Metrics): Database {
  const counted = <T>(pending: Promise<T>): Promise<T> =>
    pending.catch((err) => {
      metrics.databaseErrors.inc();
      throw err;
    });
  return {
    kind: db.kind,
    query: <T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions) =>
      counted(db.query<T>(text, params, options)),
    ordered: <T extends Row = Row>(text: string, params?: unknown[], options?: QueryOptions) =>
      counted(db.ordered<T>(text, params, options)),
    listen: (channel, onNotify, onListen) => db.listen(channel, onNotify, onListen),
    schemaTransaction: (work) => db.schemaTransaction(work),
    close: () => db.close(),
  };
}
