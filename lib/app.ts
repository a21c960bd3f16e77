// Wires one running chat service together: database, schema, services, server. Used by main.ts
// and by the tests, which start it on port 0. Reads no environment.

import { AuthService } from "./auth.ts";
import type { Config } from "./config.ts";
import { type Database, openDatabase } from "./db.ts";
import { Dispatcher } from "./dispatcher.ts";
import { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { LoginThrottle } from "./login_throttle.ts";
import { Maintenance } from "./maintenance.ts";
import { MessageService } from "./messages.ts";
import { Presence } from "./presence.ts";
import { applySchema } from "./schema.ts";
import { ChatServer } from "./server.ts";

export interface ChatService extends AsyncDisposable {
  readonly server: ChatServer;
  readonly db: Database;
  readonly messages: MessageService;
  readonly presence: Presence;
  readonly maintenance: Maintenance;
  readonly port: number;
  /** Graceful shutdown: stop accepting, finish in-flight sends, close connections, close the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Use this database instead of opening one from the config; it is left open on close. */
  database?: Database;
  /** How long a message batch may wait for the database (tests shorten it). */
  commitTimeoutMs?: number;
}

export async function startChatService(config: Config, log: Logger, options: StartOptions = {}): Promise<ChatService> {
  const db = options.database ?? await openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.dbPoolSize,
    log,
  });
  const ownsDatabase = options.database === undefined;
  const hub = new Hub();
  const throttle = new LoginThrottle(db);
  const messages = new MessageService(db, hub, log, config.maxHistoryLimit, options.commitTimeoutMs);
  const presence = new Presence(db, hub, log);
  const maintenance = new Maintenance(db, throttle, log);
  try {
    await applySchema(db, log);
    const auth = new AuthService(db, throttle, log, { bcryptCost: config.bcryptCost });
    auth.warmUp();
    await messages.start();
    await presence.start();
    maintenance.start();
    const dispatcher = new Dispatcher(auth, messages, hub, presence, log, config);
    const server = new ChatServer(config, dispatcher, hub, messages, log);
    let closing: Promise<void> | undefined;
    const close = () =>
      closing ??= (async () => {
        maintenance.stop();
        await server.close();
        messages.stop();
        await Promise.all([presence.stop(), maintenance.idle()]);
        log.info("messages since start", { ...messages.stats });
        if (ownsDatabase) await db.close();
      })();
    return { server, db, messages, presence, maintenance, port: server.port, close, [Symbol.asyncDispose]: close };
  } catch (err) {
    maintenance.stop();
    messages.stop();
    await presence.stop();
    if (ownsDatabase) await db.close().catch(() => {});
    throw err;
  }
}
