// Configuration: the environment, over a `.env` file in the working directory, validated once.
// The only module that reads the environment. The file is read at run time, so a compiled binary
// reads the `.env` of its working directory too.

import { parse as parseDotEnvText } from "dotenv";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "./log.ts";

export interface Config {
  readonly host: string;
  readonly port: number;
  /** The web page, WebSocket and /healthz; 0 turns HTTP off. */
  readonly httpPort: number;
  /** The private listener of /metrics and /healthz (METRICS_ADDR); undefined when off. */
  readonly metricsAddr: { readonly host: string; readonly port: number } | undefined;
  /** How long a graceful shutdown may take before the process exits 1. */
  readonly shutdownTimeoutSec: number;
  /** PEM files; when both are set, HTTP_PORT serves HTTPS/WSS. */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** A TLS listener for the line protocol (needs the certificate); undefined = none. */
  readonly tlsPort: number | undefined;
  /** Unset: the embedded PGlite database under `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** Servers carry committed events to each other over NATS (unset: PostgreSQL's NOTIFY). */
  readonly natsUrl: string | undefined;
  readonly dataDir: string;
  readonly dbPoolSize: number;
  readonly bcryptCost: number;
  readonly maxLineBytes: number;
  readonly maxMessageLength: number;
  readonly maxHistoryLimit: number;
  /** 0 turns the send rate limit off. */
  readonly rateLimitPerSec: number;
  readonly rateLimitBurst: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  /** 0 turns the idle timeout for connections that are not logged in off. */
  readonly loginIdleTimeoutSec: number;
  readonly maxOutboundBytes: number;
  /** Registrations from one address: a burst, then so many a minute (0 turns the limit off). */
  readonly registerLimitBurst: number;
  readonly registerLimitPerMin: number;
  /** Rooms a user may have (joined, DMs and invitations). */
  readonly maxRoomsPerUser: number;
  /** Members (and invitations) a room may have. */
  readonly maxRoomMembers: number;
  /** room_create, room_invite and dm_open together, per user; 0 a minute turns the limit off. */
  readonly roomLimitPerMin: number;
  readonly roomLimitBurst: number;
  /** Searches per user: a burst, then so many a minute (0 turns the limit off). */
  readonly searchLimitBurst: number;
  readonly searchLimitPerMin: number;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
}

export type Environment = Record<string, string | undefined>;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

interface IntRule {
  min: number;
  max: number;
}

/** Each variable with its default, in the order of `.env.example`. */
export const DEFAULTS = {
  HOST: "0.0.0.0",
  PORT: "5555",
  HTTP_PORT: "8080",
  METRICS_ADDR: "127.0.0.1:9464",
  TLS_CERT_FILE: "",
  TLS_KEY_FILE: "",
  TLS_PORT: "",
  DATABASE_URL: "",
  NATS_URL: "",
  DATA_DIR: "./data",
  DB_POOL_SIZE: "10",
  BCRYPT_COST: "12",
  MAX_LINE_BYTES: "65536",
  MAX_MESSAGE_LENGTH: "4000",
  MAX_HISTORY_LIMIT: "500",
  RATE_LIMIT_PER_SEC: "10",
  RATE_LIMIT_BURST: "20",
  MAX_CONNECTIONS: "10000",
  MAX_CONNECTIONS_PER_IP: "200",
  LOGIN_IDLE_TIMEOUT_SEC: "120",
  MAX_OUTBOUND_BYTES: "1048576",
  REGISTER_LIMIT_BURST: "50",
  REGISTER_LIMIT_PER_MIN: "6",
  MAX_ROOMS_PER_USER: "1000",
  MAX_ROOM_MEMBERS: "10000",
  ROOM_LIMIT_BURST: "20",
  ROOM_LIMIT_PER_MIN: "20",
  SEARCH_LIMIT_BURST: "10",
  SEARCH_LIMIT_PER_MIN: "60",
  SHUTDOWN_TIMEOUT_SEC: "20",
  LOG_LEVEL: "info",
  LOG_FORMAT: "text",
} as const;

export type ConfigVariable = keyof typeof DEFAULTS;

/** Validates `env` (missing or empty variables take their defaults); throws one ConfigError naming every bad variable. */
export function parseConfig(env: Environment): Config {
  const problems: string[] = [];
  const raw = (name: ConfigVariable): string => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? DEFAULTS[name] : value;
  };
  const int = (name: ConfigVariable, rule: IntRule): number => {
    const text = raw(name);
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value < rule.min || value > rule.max) {
      problems.push(`${name}=${JSON.stringify(text)}: must be a whole number from ${rule.min} to ${rule.max}`);
      return Number(DEFAULTS[name]);
    }
    return value;
  };
  const oneOf = <T extends string>(name: ConfigVariable, allowed: readonly T[]): T => {
    const text = raw(name).toLowerCase();
    if (!(allowed as readonly string[]).includes(text)) {
      problems.push(`${name}=${JSON.stringify(text)}: must be one of ${allowed.join(", ")}`);
      return DEFAULTS[name] as T;
    }
    return text as T;
  };

  const databaseUrl = raw("DATABASE_URL") || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push("DATABASE_URL: must start with postgres:// or postgresql://");
  }
  const natsUrl = raw("NATS_URL") || undefined;
  if (natsUrl && !/^(nats|tls):\/\/[^\s]+$/.test(natsUrl)) {
    problems.push("NATS_URL: must be nats://host:port or tls://host:port (optionally with user:password@ or token@)");
  }
  if (natsUrl && !databaseUrl) problems.push("NATS_URL: needs DATABASE_URL (the embedded database serves one server)");
  const host = raw("HOST");
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) problems.push(`HOST=${JSON.stringify(host)}: not a host name or address`);

  const tlsCertFile = raw("TLS_CERT_FILE") || undefined;
  const tlsKeyFile = raw("TLS_KEY_FILE") || undefined;
  if (tlsCertFile !== undefined && tlsKeyFile === undefined) {
    problems.push("TLS_CERT_FILE is set but TLS_KEY_FILE is not: set both (TLS) or neither (plain)");
  } else if (tlsKeyFile !== undefined && tlsCertFile === undefined) {
    problems.push("TLS_KEY_FILE is set but TLS_CERT_FILE is not: set both (TLS) or neither (plain)");
  }
  const tlsPort = raw("TLS_PORT") === "" ? undefined : int("TLS_PORT", { min: 0, max: 65535 });
  if (tlsPort !== undefined && tlsCertFile === undefined) {
    problems.push("TLS_PORT: needs TLS_CERT_FILE and TLS_KEY_FILE");
  }

  const config: Config = {
    host,
    port: int("PORT", { min: 0, max: 65535 }),
    httpPort: int("HTTP_PORT", { min: 0, max: 65535 }),
    metricsAddr: listenAddress(raw("METRICS_ADDR"), problems),
    shutdownTimeoutSec: int("SHUTDOWN_TIMEOUT_SEC", { min: 1, max: 3600 }),
    tlsCertFile,
    tlsKeyFile,
    tlsPort,
    databaseUrl,
    natsUrl,
    dataDir: raw("DATA_DIR"),
    dbPoolSize: int("DB_POOL_SIZE", { min: 1, max: 1000 }),
    bcryptCost: int("BCRYPT_COST", { min: 4, max: 20 }),
    maxLineBytes: int("MAX_LINE_BYTES", { min: 1024, max: 16 * 1024 * 1024 }),
    maxMessageLength: int("MAX_MESSAGE_LENGTH", { min: 1, max: 1_000_000 }),
    maxHistoryLimit: int("MAX_HISTORY_LIMIT", { min: 1, max: 100_000 }),
    rateLimitPerSec: int("RATE_LIMIT_PER_SEC", { min: 0, max: 1_000_000 }),
    rateLimitBurst: int("RATE_LIMIT_BURST", { min: 1, max: 1_000_000 }),
    maxConnections: int("MAX_CONNECTIONS", { min: 1, max: 1_000_000 }),
    maxConnectionsPerIp: int("MAX_CONNECTIONS_PER_IP", { min: 1, max: 1_000_000 }),
    loginIdleTimeoutSec: int("LOGIN_IDLE_TIMEOUT_SEC", { min: 0, max: 86_400 }),
    maxOutboundBytes: int("MAX_OUTBOUND_BYTES", { min: 4096, max: 1024 * 1024 * 1024 }),
    registerLimitBurst: int("REGISTER_LIMIT_BURST", { min: 1, max: 1_000_000 }),
    registerLimitPerMin: int("REGISTER_LIMIT_PER_MIN", { min: 0, max: 1_000_000 }),
    maxRoomsPerUser: int("MAX_ROOMS_PER_USER", { min: 1, max: 1_000_000 }),
    maxRoomMembers: int("MAX_ROOM_MEMBERS", { min: 2, max: 1_000_000 }),
    roomLimitBurst: int("ROOM_LIMIT_BURST", { min: 1, max: 1_000_000 }),
    roomLimitPerMin: int("ROOM_LIMIT_PER_MIN", { min: 0, max: 1_000_000 }),
    searchLimitBurst: int("SEARCH_LIMIT_BURST", { min: 1, max: 1_000_000 }),
    searchLimitPerMin: int("SEARCH_LIMIT_PER_MIN", { min: 0, max: 1_000_000 }),
    logLevel: oneOf("LOG_LEVEL", LOG_LEVELS),
    logFormat: oneOf("LOG_FORMAT", LOG_FORMATS),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}

/** METRICS_ADDR: `off`, or host:port (an IPv6 host in brackets, `[::1]:9464`; port 0 = ephemeral). */
function listenAddress(text: string, problems: string[]): { host: string; port: number } | undefined {
  if (text.toLowerCase() === "off") return undefined;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    problems.push(`METRICS_ADDR=${JSON.stringify(text)}: must be host:port (such as 127.0.0.1:9464) or off`);
    return undefined;
  }
  return { host: match[1] ?? match[2], port };
}

/**
 * Parses a `.env` file with npm dotenv's parser: `KEY=value` lines, `#` comments, optional `export`,
 * single, double or backtick quotes (a `#` inside quotes is kept; `\n` and `\r` are expanded in
 * double quotes only).
 */
export function parseDotEnv(text: string): Environment {
  return parseDotEnvText(text);
}

/** The process environment over `.env` in the working directory (real variables win, as with dotenv). */
export function readEnvironment(dotEnvPath = ".env"): Environment {
  let fileEnv: Environment = {};
  try {
    fileEnv = parseDotEnv(Deno.readTextFileSync(dotEnvPath));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return { ...fileEnv, ...Deno.env.toObject() };
}

/** The validated configuration of this process. */
export function loadConfig(): Config {
  return parseConfig(readEnvironment());
}
