// Wires one running chat service together: database, schema, services, the line-protocol server
// and the HTTP server. Used by main.ts and by the tests, which start it on port 0. Reads no environment.

import { AuthService } from "./chat/auth.ts";
import type { Config } from "./core/config.ts";
import { type Database, openDatabase, type QueryOptions, type Row } from "./store/db.ts";
import { Dispatcher } from "./chat/dispatcher.ts";
import { HealthCheck } from "./net/health.ts";
import { HttpListenError, HttpServer } from "./net/http.ts";
import { MetricsListener } from "./net/metrics_listener.ts";
import { Hub } from "./chat/hub.ts";
import { Lobby } from "./chat/lobby.ts";
import { RoomCommands } from "./chat/room_commands.ts";
import { RoomDelivery } from "./chat/room_delivery.ts";
import { RoomService } from "./chat/rooms.ts";
import { RoomSignals } from "./chat/room_signals.ts";
import { SearchService } from "./chat/search.ts";
import type { Logger } from "./core/log.ts";
import { LoginThrottle } from "./store/login_throttle.ts";
import { Maintenance } from "./store/maintenance.ts";
import { SearchIndexUpkeep } from "./store/search_upkeep.ts";
import { MessageService } from "./chat/messages.ts";
import { Metrics } from "./core/metrics.ts";
import { settledWithin } from "./core/settled_within.ts";
import { Presence } from "./chat/presence.ts";
import { RoomStore } from "./store/rooms.ts";
import { applySchema } from "./store/schema.ts";
import { SEARCH_WORD_INDEXES, SearchStore } from "./store/search.ts";
import { NatsBus } from "./store/nats_bus.ts";
import { NotifyBus } from "./store/notify_bus.ts";
import { Signals } from "./store/signals.ts";
import { LineListeners } from "./net/line_listener.ts";
import { ConnectionRegistry } from "./net/registry.ts";
import { readTlsFiles, type TlsFiles, tlsListenError } from "./net/tls.ts";

export interface ChatService extends AsyncDisposable {
  readonly registry: ConnectionRegistry;
  readonly db: Database;
  readonly messages: MessageService;
  readonly presence: Presence;
  readonly maintenance: Maintenance;
  readonly metrics: Metrics;
  /** The line protocol's plain TCP port. */
  readonly port: number;
  /** The HTTP (or HTTPS) port, or undefined when HTTP is off. */
  readonly httpPort: number | undefined;
  /** The metrics listener's port (METRICS_ADDR), or undefined when it is off. */
  readonly metricsPort: number | undefined;
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
    quiet: config.natsUrl !== undefined,
  });
  const ownsDatabase = options.database === undefined;
  const db = countingErrors(opened, metrics);
  const hub = new Hub();
  const throttle = new LoginThrottle(db, config);
  const roomStore = new RoomStore(db);
  const lobby = new Lobby(db, hub, log, metrics, config.maxHistoryLimit);
  const delivery = new RoomDelivery(hub, roomStore, log);
  const presence = new Presence(db, hub, log);
  const bus = config.natsUrl ? new NatsBus(config.natsUrl, presence.serverId, db, log) : new NotifyBus(db, log);
  const messages = new MessageService(db, lobby, delivery, log, bus, options.commitTimeoutMs, metrics);
  hub.onUserOnline = (user) => delivery.userOnline(user);
  hub.onUserOffline = (user) => delivery.userOffline(user);
  const rooms = new RoomService(
    roomStore,
    messages.stream,
    log,
    config,
    async () => new Set(await presence.usernames()),
  );
  const signals = new RoomSignals(hub, delivery, new Signals(messages.stream), presence.serverId);
  const searchStore = new SearchStore(db, log);
  const search = new SearchService(searchStore, roomStore, rooms, log, config);
  const roomCommands = new RoomCommands(hub, rooms, signals, search, () => presence.usernames());
  const maintenance = new Maintenance(db, throttle, log);
  const searchUpkeep = new SearchIndexUpkeep(db, log, SEARCH_WORD_INDEXES, () => metrics.messagesCommitted.value);
  const auth = new AuthService(db, throttle, log, { bcryptCost: config.bcryptCost, metrics });
  let registry: ConnectionRegistry | undefined;
  let indexing: Promise<void> = Promise.resolve();
  let http: HttpServer | undefined;
  let monitoring: MetricsListener | undefined;
  try {
    await applySchema(db, log);
    auth.warmUp();
    await messages.start();
    await signals.start();
    await presence.start();
    maintenance.start();
    searchUpkeep.start();
    // In the background: on a big database the build takes a while, and searches answer meanwhile.
    indexing = searchStore.buildIndexes();
    const dispatcher = new Dispatcher(auth, messages, hub, presence, log, config, metrics, roomCommands);
    const tlsPort = tls ? options.tlsPort ?? config.tlsPort : undefined;
    registry = new ConnectionRegistry(config, dispatcher, hub, messages, log, metrics);
    const chat = registry;
    const lines = withTlsErrors(tls, () => new LineListeners({ ...config, tlsPort, tls }, chat, log));
    const health = new HealthCheck(registry, db, log, bus.state);
    metrics.addGauge(
      "chat_bus_up",
      "1 while the delivery bus (NOTIFY or NATS) is connected",
      () => bus.state.up ? 1 : 0,
    );
    metrics.addGauge("chat_bus_reconnects", "Times the NATS bus reconnected", () => bus.state.reconnects);
    const httpPort = options.httpPort ?? (config.httpPort === 0 ? undefined : config.httpPort);
    http = httpPort === undefined ? undefined : await startHttp(config.host, httpPort, tls, registry, health, log);
    const web = http;
    monitoring = config.metricsAddr &&
      listening(
        "METRICS_ADDR",
        config.metricsAddr,
        () => new MetricsListener(config.metricsAddr!, metrics, health, log),
      );
    const metricsListener = monitoring;
    metrics.start();
    let closing: Promise<void> | undefined;
    const close = () =>
      closing ??= (async () => {
        maintenance.stop();
        searchUpkeep.stop();
        await chat.close();
        await Promise.all([web?.close(), metricsListener?.close()]);
        messages.stop();
        await bus.close();
        // A search index still being built is left to the database's close (a restart builds it again).
        await Promise.all([
          presence.stop(),
          maintenance.idle(),
          searchUpkeep.idle(),
          auth.drain(),
          settledWithin(indexing, 1000),
        ]);
        metrics.stop();
        log.info("messages since start", { ...messages.stats });
        if (ownsDatabase) await opened.close();
      })();
    return {
      registry,
      db,
      messages,
      presence,
      maintenance,
      metrics,
      port: lines.port,
      httpPort: http?.port,
      metricsPort: metricsListener?.port,
      tlsPort: lines.tlsPort,
      secure: tls !== undefined,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    maintenance.stop();
    searchUpkeep.stop();
    await registry?.close();
    await Promise.all([http?.close(), monitoring?.close()]);
    messages.stop();
    await bus.close();
    await Promise.all([presence.stop(), searchUpkeep.idle(), auth.drain(), settledWithin(indexing, 1000)]);
    if (ownsDatabase) await opened.close().catch(() => {});
    throw err;
  }
}

function startHttp(
  host: string,
  port: number,
  tls: TlsFiles | undefined,
  registry: ConnectionRegistry,
  health: HealthCheck,
  log: Logger,
): Promise<HttpServer> {
  return withTlsErrors(tls, () => HttpServer.start({ host, port, tls }, registry, health, log))
    .catch((err) => {
      throw listenError("HTTP_PORT", undefined, port, err);
    });
}

/** Runs `listen`, turning its failure to bind into an HttpListenError naming `variable`. */
function listening<T>(
  variable: "HTTP_PORT" | "METRICS_ADDR",
  address: { host: string; port: number },
  listen: () => T,
): T {
  try {
    return listen();
  } catch (err) {
    throw listenError(variable, address.host, address.port, err);
  }
}

function listenError(
  variable: "HTTP_PORT" | "METRICS_ADDR",
  host: string | undefined,
  port: number,
  err: unknown,
): unknown {
  const bindFailure = err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied ||
    err instanceof Deno.errors.AddrNotAvailable;
  return bindFailure ? new HttpListenError(variable, host, port, err) : err;
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
