// Wires one running chat service together: database, schema, services, server. Used by main.ts
// and by the tests, which start it on port 0. Reads no environment.

import { AuthService } from "./auth.ts";
import type { Config } from "./config.ts";
import { applySchema, type Database, openDatabase } from "./db.ts";
import { Dispatcher } from "./dispatcher.ts";
import { Hub } from "./hub.ts";
import type { Logger } from "./log.ts";
import { MessageService } from "./messages.ts";
import { ChatServer } from "./server.ts";

export interface ChatService extends AsyncDisposable {
  readonly server: ChatServer;
  readonly db: Database;
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
  try {
    await applySchema(db);
    const hub = new Hub();
    const auth = new AuthService(db, log, { bcryptCost: config.bcryptCost });
    auth.warmUp();
    const messages = new MessageService(db, hub, log, config.maxHistoryLimit, options.commitTimeoutMs);
    await messages.loadRecent();
    const dispatcher = new Dispatcher(auth, messages, hub, log, config);
    const server = new ChatServer(config, dispatcher, hub, messages, log);
    let closing: Promise<void> | undefined;
    const close = () =>
      closing ??= (async () => {
        await server.close();
        log.info("messages since start", { ...messages.stats });
        if (ownsDatabase) await db.close();
      })();
    return { server, db, port: server.port, close, [Symbol.asyncDispose]: close };
  } catch (err) {
    if (ownsDatabase) await db.close().catch(() => {});
    throw err;
  }
}
