import { assert, assertEquals, fail } from "../../tests/support/assert.ts";
import {
  type Config,
  ConfigError,
  DEFAULTS,
  type Environment,
  parseConfig,
  parseDotEnv,
  readEnvironment,
} from "./config.ts";
import { sanitized } from "../../tests/support/util.ts";

const DEFAULT_CONFIG: Config = {
  host: "0.0.0.0",
  port: 5555,
  httpPort: 8080,
  metricsAddr: { host: "127.0.0.1", port: 9464 },
  shutdownTimeoutSec: 20,
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
  tlsPort: undefined,
  databaseUrl: undefined,
  natsUrl: undefined,
  dataDir: "./data",
  dbPoolSize: 10,
  bcryptCost: 12,
  maxLineBytes: 65536,
  maxMessageLength: 4000,
  maxHistoryLimit: 500,
  rateLimitPerSec: 10,
  rateLimitBurst: 20,
  maxConnections: 10000,
  maxConnectionsPerIp: 200,
  loginIdleTimeoutSec: 120,
  maxOutboundBytes: 1048576,
  registerLimitBurst: 50,
  registerLimitPerMin: 6,
  maxRoomsPerUser: 1000,
  maxRoomMembers: 10000,
  roomLimitBurst: 20,
  roomLimitPerMin: 20,
  searchLimitBurst: 10,
  searchLimitPerMin: 60,
  logLevel: "info",
  logFormat: "text",
};

function configError(env: Environment): ConfigError {
  try {
    parseConfig(env);
  } catch (err) {
    assert(err instanceof ConfigError, `expected a ConfigError, got ${err}`);
    return err;
  }
  fail(`no ConfigError for ${JSON.stringify(env)}`);
}

Deno.test("parseConfig gives the documented defaults for an empty environment", sanitized, () => {
  assertEquals({ ...parseConfig({}) }, DEFAULT_CONFIG);
});

Deno.test("parseConfig treats empty and blank variables as unset", sanitized, () => {
  const blank: Environment = {};
  for (const name of Object.keys(DEFAULTS)) blank[name] = name.length % 2 === 0 ? "" : "   ";
  assertEquals({ ...parseConfig(blank) }, DEFAULT_CONFIG);
});

Deno.test("parseConfig returns a frozen object", sanitized, () => {
  const config = parseConfig({});
  assert(Object.isFrozen(config));
  try {
    (config as { port: number }).port = 1;
  } catch {
    // Strict mode throws on writing a frozen object; either way it must not change.
  }
  assertEquals(config.port, 5555);
});

Deno.test("parseConfig reads every variable", sanitized, () => {
  const config = parseConfig({
    HOST: "127.0.0.1",
    PORT: "6000",
    HTTP_PORT: "8443",
    METRICS_ADDR: "[::1]:9100",
    SHUTDOWN_TIMEOUT_SEC: "5",
    TLS_CERT_FILE: "/etc/chat/cert.pem",
    TLS_KEY_FILE: "/etc/chat/key.pem",
    TLS_PORT: "5556",
    DATABASE_URL: "postgres://chat:pw@db.example:5432/chat",
    NATS_URL: "nats://chat:secret@nats.example:4222",
    DATA_DIR: "/var/lib/chat",
    DB_POOL_SIZE: "3",
    BCRYPT_COST: "10",
    MAX_LINE_BYTES: "2048",
    MAX_MESSAGE_LENGTH: "100",
    MAX_HISTORY_LIMIT: "20",
    RATE_LIMIT_PER_SEC: "0",
    RATE_LIMIT_BURST: "5",
    MAX_CONNECTIONS: "50",
    MAX_CONNECTIONS_PER_IP: "5",
    LOGIN_IDLE_TIMEOUT_SEC: "30",
    MAX_OUTBOUND_BYTES: "65536",
    REGISTER_LIMIT_BURST: "10",
    REGISTER_LIMIT_PER_MIN: "0",
    MAX_ROOMS_PER_USER: "50",
    MAX_ROOM_MEMBERS: "200",
    ROOM_LIMIT_BURST: "3",
    ROOM_LIMIT_PER_MIN: "0",
    SEARCH_LIMIT_BURST: "4",
    SEARCH_LIMIT_PER_MIN: "0",
    LOG_LEVEL: "debug",
    LOG_FORMAT: "json",
  });
  assertEquals({ ...config }, {
    host: "127.0.0.1",
    port: 6000,
    httpPort: 8443,
    metricsAddr: { host: "::1", port: 9100 },
    shutdownTimeoutSec: 5,
    tlsCertFile: "/etc/chat/cert.pem",
    tlsKeyFile: "/etc/chat/key.pem",
    tlsPort: 5556,
    databaseUrl: "postgres://chat:pw@db.example:5432/chat",
    natsUrl: "nats://chat:secret@nats.example:4222",
    dataDir: "/var/lib/chat",
    dbPoolSize: 3,
    bcryptCost: 10,
    maxLineBytes: 2048,
    maxMessageLength: 100,
    maxHistoryLimit: 20,
    rateLimitPerSec: 0,
    rateLimitBurst: 5,
    maxConnections: 50,
    maxConnectionsPerIp: 5,
    loginIdleTimeoutSec: 30,
    maxOutboundBytes: 65536,
    registerLimitBurst: 10,
    registerLimitPerMin: 0,
    maxRoomsPerUser: 50,
    maxRoomMembers: 200,
    roomLimitBurst: 3,
    roomLimitPerMin: 0,
    searchLimitBurst: 4,
    searchLimitPerMin: 0,
    logLevel: "debug",
    logFormat: "json",
  });
});

Deno.test(
  "parseConfig accepts postgresql:// URLs, port 0, surrounding spaces and any case of LOG_LEVEL",
  sanitized,
  () => {
    const config = parseConfig({
      DATABASE_URL: "postgresql://localhost/chat",
      PORT: " 0 ",
      LOG_LEVEL: "WARN",
      LOG_FORMAT: "Json",
      HOST: "::1",
    });
    assertEquals(config.databaseUrl, "postgresql://localhost/chat");
    assertEquals(config.port, 0);
    assertEquals(config.logLevel, "warn");
    assertEquals(config.logFormat, "json");
    assertEquals(config.host, "::1");
  },
);

Deno.test("parseConfig refuses each invalid value, naming the variable", sanitized, () => {
  const cases: Environment[] = [
    { PORT: "65536" },
    { PORT: "-1" },
    { PORT: "80a" },
    { PORT: "1e3" },
    { PORT: "0x10" },
    { PORT: "1.5" },
    { DB_POOL_SIZE: "0" },
    { BCRYPT_COST: "3" },
    { BCRYPT_COST: "21" },
    { MAX_LINE_BYTES: "1023" },
    { MAX_MESSAGE_LENGTH: "0" },
    { MAX_HISTORY_LIMIT: "0" },
    { RATE_LIMIT_PER_SEC: "-5" },
    { RATE_LIMIT_BURST: "0" },
    { MAX_CONNECTIONS: "0" },
    { MAX_CONNECTIONS_PER_IP: "many" },
    { LOGIN_IDLE_TIMEOUT_SEC: "86401" },
    { MAX_OUTBOUND_BYTES: "4095" },
    { REGISTER_LIMIT_BURST: "0" },
    { REGISTER_LIMIT_PER_MIN: "-1" },
    { MAX_ROOMS_PER_USER: "0" },
    { METRICS_ADDR: "9464" },
    { NATS_URL: "http://x:4222", DATABASE_URL: "postgres://h/db" },
    { NATS_URL: "nats://127.0.0.1:4222" },
    { METRICS_ADDR: "localhost:99999" },
    { METRICS_ADDR: "on" },
    { SHUTDOWN_TIMEOUT_SEC: "0" },
    { MAX_ROOM_MEMBERS: "1" },
    { ROOM_LIMIT_BURST: "0" },
    { ROOM_LIMIT_PER_MIN: "-1" },
    { SEARCH_LIMIT_BURST: "0" },
    { SEARCH_LIMIT_PER_MIN: "x" },
    { LOG_LEVEL: "verbose" },
    { LOG_FORMAT: "xml" },
    { DATABASE_URL: "mysql://localhost/chat" },
    { HOST: "bad host" },
    { PORT: "99999999999999999999" },
    { HTTP_PORT: "65536" },
    { HTTP_PORT: "web" },
    { TLS_CERT_FILE: "cert.pem" },
    { TLS_KEY_FILE: "key.pem" },
    { TLS_PORT: "5556" },
  ];
  for (const env of cases) {
    const err = configError(env);
    const [name] = Object.keys(env);
    assertEquals(err.problems.length, 1, JSON.stringify(err.problems));
    assert(err.problems[0].startsWith(name), `${name} not named first in ${JSON.stringify(err.problems)}`);
    assert(err.message.includes(name), err.message);
  }
});

Deno.test("parseConfig takes HTTP_PORT=0 as HTTP off and a bad TLS_PORT as a problem", sanitized, () => {
  assertEquals(parseConfig({ HTTP_PORT: "0" }).httpPort, 0);
  const tls = { TLS_CERT_FILE: "c.pem", TLS_KEY_FILE: "k.pem" };
  assertEquals(parseConfig(tls).tlsPort, undefined);
  assertEquals(parseConfig({ ...tls, TLS_PORT: "0" }).tlsPort, 0);
  const err = configError({ ...tls, TLS_PORT: "tls" });
  assertEquals(err.problems.length, 1);
  assert(err.problems[0].startsWith("TLS_PORT"), err.problems[0]);
});

Deno.test("parseConfig reports every bad variable in one ConfigError", sanitized, () => {
  const bad: Environment = {
    PORT: "http",
    BCRYPT_COST: "99",
    MAX_LINE_BYTES: "10",
    LOG_LEVEL: "loud",
    LOG_FORMAT: "yaml",
    DATABASE_URL: "sqlite://x",
    HOST: "a b",
    RATE_LIMIT_BURST: "-1",
  };
  const err = configError({ ...bad, MAX_MESSAGE_LENGTH: "100", DB_POOL_SIZE: "4" });
  assertEquals(err.name, "ConfigError");
  assertEquals(err.problems.length, Object.keys(bad).length, JSON.stringify(err.problems));
  for (const name of Object.keys(bad)) {
    assert(err.problems.some((p) => p.startsWith(name)), `${name} missing from ${JSON.stringify(err.problems)}`);
    assert(err.message.includes(name), `${name} missing from the message`);
  }
  assert(!err.problems.some((p) => p.startsWith("MAX_MESSAGE_LENGTH") || p.startsWith("DB_POOL_SIZE")));
});

Deno.test("parseDotEnv reads KEY=value lines, comments, export and quotes", sanitized, () => {
  const text = [
    "# a comment",
    "",
    "PORT=6000",
    "  HOST = 127.0.0.1  ",
    "export LOG_LEVEL=debug",
    "DATA_DIR='/tmp/with # hash'",
    'DATABASE_URL="postgres://u:p@h/db"',
    "LOG_FORMAT=json # trailing comment",
    'MULTI="a\\nb \\"q\\""',
    "SINGLE='no \\n escapes'",
    "EQUALS=a=b=c",
    "EMPTY=",
    "not a line",
    "# PORT=1",
    "WINDOWS=crlf\r",
  ].join("\n");
  assertEquals(parseDotEnv(text), {
    PORT: "6000",
    HOST: "127.0.0.1",
    LOG_LEVEL: "debug",
    DATA_DIR: "/tmp/with # hash",
    DATABASE_URL: "postgres://u:p@h/db",
    LOG_FORMAT: "json",
    // dotenv expands \n in double quotes and keeps other backslashes as written.
    MULTI: 'a\nb \\"q\\"',
    SINGLE: "no \\n escapes",
    EQUALS: "a=b=c",
    EMPTY: "",
    WINDOWS: "crlf",
  });
});

Deno.test("parseDotEnv keeps what quotes protect: #, other quotes, spaces, multi-line values", sanitized, () => {
  const text = [
    'DATABASE_URL="postgres://chat:p#ss@db:5432/chat" # the # in the password is not a comment',
    "PASSWORD='it \"is\" #1'",
    "GREETING=`say 'hi' and \"bye\"`",
    'PADDED="  two spaces  "',
    'ESCAPES="tab\\there, line\\nbreak, return\\r"',
    "LITERAL='line\\nbreak'",
    'MULTILINE="first',
    'second"',
    "UNQUOTED=p#ss # an unquoted # starts a comment",
  ].join("\n");
  assertEquals(parseDotEnv(text), {
    DATABASE_URL: "postgres://chat:p#ss@db:5432/chat",
    PASSWORD: 'it "is" #1',
    GREETING: `say 'hi' and "bye"`,
    PADDED: "  two spaces  ",
    ESCAPES: "tab\\there, line\nbreak, return\r",
    LITERAL: "line\\nbreak",
    MULTILINE: "first\nsecond",
    UNQUOTED: "p",
  });
});

Deno.test("parseDotEnv handles CRLF files", sanitized, () => {
  assertEquals(parseDotEnv("PORT=1\r\nHOST=h\r\n"), { PORT: "1", HOST: "h" });
});

Deno.test("readEnvironment lets the real environment win over .env", sanitized, async () => {
  const dir = await Deno.makeTempDir();
  const suffix = crypto.randomUUID().replaceAll("-", "").slice(0, 12).toUpperCase();
  const both = `CHAT_TEST_BOTH_${suffix}`;
  const fileOnly = `CHAT_TEST_FILE_${suffix}`;
  try {
    const path = `${dir}/.env`;
    await Deno.writeTextFile(path, `${both}=from-file\n${fileOnly}=from-file\n`);
    Deno.env.set(both, "from-environment");
    const env = readEnvironment(path);
    assertEquals(env[both], "from-environment");
    assertEquals(env[fileOnly], "from-file");
    // Missing file: just the environment.
    const withoutFile = readEnvironment(`${dir}/missing.env`);
    assertEquals(withoutFile[both], "from-environment");
    assertEquals(withoutFile[fileOnly], undefined);
  } finally {
    Deno.env.delete(both);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig reads the values of a parsed .env file", sanitized, () => {
  const env = parseDotEnv("# chat\nexport MAX_HISTORY_LIMIT=77\nMAX_MESSAGE_LENGTH='123'\nLOG_FORMAT=\"json\"\n");
  const config = parseConfig(env);
  assertEquals([config.maxHistoryLimit, config.maxMessageLength, config.logFormat], [77, 123, "json"]);
});

// As with dotenv: `LOG_FORMAT="json" # prod` is "json", not the quoted text.
Deno.test({
  name: "parseDotEnv strips a comment after a quoted value",
  ...sanitized,
  fn() {
    assertEquals(parseDotEnv(`LOG_FORMAT="json"  # prod\nDATA_DIR='/srv/chat' # data\n`), {
      LOG_FORMAT: "json",
      DATA_DIR: "/srv/chat",
    });
  },
});

Deno.test(
  "parseConfig takes METRICS_ADDR=off (any case) as no metrics listener, and port 0 as ephemeral",
  sanitized,
  () => {
    assertEquals(parseConfig({ METRICS_ADDR: "off" }).metricsAddr, undefined);
    assertEquals(parseConfig({ METRICS_ADDR: "OFF" }).metricsAddr, undefined);
    assertEquals(parseConfig({ METRICS_ADDR: "0.0.0.0:0" }).metricsAddr, { host: "0.0.0.0", port: 0 });
  },
);
