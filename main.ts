// Entry point: wires configuration, database, server and signals together.
//   chat-server            run the server
//   chat-server db:setup   apply schema.sql to the configured database and exit
//   chat-server client     the terminal client (client/main.ts; --help for its options)

import { startChatService } from "./lib/app.ts";
import { ConfigError, loadConfig } from "./lib/core/config.ts";
import { DatabaseError, DataDirInUseError, openDatabase } from "./lib/store/db.ts";
import { HttpListenError } from "./lib/net/http.ts";
import { Logger } from "./lib/core/log.ts";
import { applySchema, SchemaMismatchError } from "./lib/store/schema.ts";
import { TlsError } from "./lib/net/tls.ts";

async function main(args: string[]): Promise<number> {
  // Loaded only when asked for, so the server never loads the client.
  if (args[0] === "client") return await (await import("./client/main.ts")).runClient(args.slice(1));
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    new Logger("error").error(err.message);
    return 2;
  }
  const log = new Logger(config.logLevel, config.logFormat);
  const storage = config.databaseUrl
    ? `PostgreSQL at ${redactUrl(config.databaseUrl)}`
    : `embedded PostgreSQL (PGlite) in ${config.dataDir}: a development database, single connection, no fsync`;

  if (args[0] === "db:setup") {
    try {
      const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 1, log });
      try {
        await applySchema(db, log);
      } finally {
        await db.close();
      }
    } catch (err) {
      const reason = startupFailure(err, config.host, config.port);
      if (!reason) throw err;
      log.error(reason, { storage });
      return 1;
    }
    log.info("schema applied", { storage });
    return 0;
  }
  if (args.length > 0) {
    log.error(`Unknown command: ${args[0]} (expected no argument, db:setup or client)`);
    return 2;
  }

  // Signals are handled from before start-up, so one that arrives at any moment shuts down cleanly.
  const stopped = Promise.withResolvers<Deno.Signal>();
  const signals: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM"] as const).map((
    signal,
  ) => [signal, () => stopped.resolve(signal)]);
  for (const [signal, handler] of signals) Deno.addSignalListener(signal, handler);
  try {
    let service;
    try {
      service = await startChatService(config, log);
    } catch (err) {
      const reason = startupFailure(err, config.host, config.port);
      if (!reason) throw err;
      log.error(reason, { storage });
      return 1;
    }
    log.info("chat server listening", { address: `${config.host}:${service.port}`, storage, kind: service.db.kind });
    const web = service.secure ? "https" : "http";
    if (service.tlsPort !== undefined) {
      log.info("TLS line protocol listening", { address: `${config.host}:${service.tlsPort}` });
    }
    if (service.metricsPort !== undefined && config.metricsAddr) {
      log.info("metrics listening", { address: `${config.metricsAddr.host}:${service.metricsPort}` });
    }
    if (service.httpPort !== undefined) {
      log.info("web chat listening", {
        address: `${config.host}:${service.httpPort}`,
        url: `${web}://localhost:${service.httpPort}`,
      });
    }
    if (service.db.kind === "embedded") {
      log.warn("using the embedded development database; set DATABASE_URL to use a PostgreSQL server in production");
    }
    for (const address of lanAddresses()) {
      log.info(`clients on your network can connect to ${address}:${service.port}`);
      if (service.httpPort !== undefined) log.info(`open ${web}://${address}:${service.httpPort} in a browser`);
    }

    log.info("shutting down", { signal: await stopped.promise });
    // The graceful steps fit inside SHUTDOWN_TIMEOUT_SEC (the registry drains for half of it); a
    // peer or a database that hangs them past it is cut short, and the exit code says so.
    const deadline = setTimeout(() => {
      log.error("shutdown cut short: SHUTDOWN_TIMEOUT_SEC passed", { timeout_sec: config.shutdownTimeoutSec });
      Deno.exit(1);
    }, config.shutdownTimeoutSec * 1000);
    await service.close();
    clearTimeout(deadline);
    log.info("stopped");
    return 0;
  } finally {
    for (const [signal, handler] of signals) Deno.removeSignalListener(signal, handler);
  }
}

/** A plain sentence for the start-up failures a user can fix, or undefined for a bug (shown with its stack). */
function startupFailure(err: unknown, host: string, port: number): string | undefined {
  let variable = "PORT";
  if (err instanceof HttpListenError) {
    [variable, host, port, err] = [err.variable, err.host ?? host, err.port, err.cause];
  }
  if (err instanceof Deno.errors.AddrInUse) {
    return `${host}:${port} is already in use: is another server running? Set ${variable} to use another port`;
  }
  if (err instanceof Deno.errors.PermissionDenied || err instanceof Deno.errors.AddrNotAvailable) {
    return `cannot listen on ${host}:${port}: ${err.message} (check HOST and ${variable}; ports below 1024 need privileges)`;
  }
  if (err instanceof TlsError) return err.message;
  return databaseFailure(err);
}

/** A plain sentence for a database that cannot be opened or served, or undefined for anything else. */
function databaseFailure(err: unknown): string | undefined {
  if (err instanceof DataDirInUseError) {
    return `${err.message}: stop the other server, or set DATA_DIR or DATABASE_URL`;
  }
  if (err instanceof SchemaMismatchError) {
    return `the database does not have the chat schema: ${err.message} (check DATABASE_URL, or unset it to use the embedded database)`;
  }
  if (err instanceof DatabaseError) {
    return `cannot open the database: ${err.message} (check DATABASE_URL, or unset it to use the embedded database)`;
  }
  return undefined;
}

function lanAddresses(): string[] {
  try {
    return Deno.networkInterfaces()
      .filter((i) => i.family === "IPv4" && !i.address.startsWith("127."))
      .map((i) => i.address);
  } catch {
    return [];
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
