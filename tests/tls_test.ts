// TLS: with TLS_CERT_FILE and TLS_KEY_FILE, HTTP_PORT serves HTTPS and WSS and TLS_PORT adds a TLS
// line-protocol listener, while PORT stays plain; a bad certificate stops start-up with one clear
// line. The certificates are made by openssl for each run: a CA, and a leaf for localhost signed by it.

import { uniqueName } from "./support/inbox.ts";
import { assert, assertEquals, assertMatch } from "./support/assert.ts";
import { backends, sanitized, startTestServer } from "./support/helpers.ts";
import { runServerCommand } from "./support/process.ts";
import { RawWsClient } from "./support/ws_client.ts";
import { forEachLine } from "../lib/wire/framing.ts";

interface TestCertificates {
  dir: string;
  ca: string;
  certFile: string;
  keyFile: string;
  /** A private key that does not belong to the certificate. */
  otherKeyFile: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const output = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" }).output();
  if (!output.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
}

async function makeCertificates(): Promise<TestCertificates> {
  const dir = await Deno.makeTempDir({ prefix: "chat-tls-" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=chat test CA",
  ], dir);
  await openssl(["req", ...ec, "-keyout", "key.pem", "-out", "leaf.csr", "-subj", "/CN=localhost"], dir);
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "cert.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ], dir);
  return {
    dir,
    ca: await Deno.readTextFile(`${dir}/ca.pem`),
    certFile: `${dir}/cert.pem`,
    keyFile: `${dir}/key.pem`,
    otherKeyFile: `${dir}/ca.key`,
  };
}

const openSslMissing = await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
  .output().then((o) => !o.success, () => true);

Deno.test({
  name: "tls: HTTPS and WSS on HTTP_PORT, a TLS line-protocol listener on TLS_PORT, and plain PORT still works",
  ignore: openSslMissing,
  ...sanitized,
  async fn() {
    const certs = await makeCertificates();
    try {
      await using server = await startTestServer(backends[0], {
        TLS_CERT_FILE: certs.certFile,
        TLS_KEY_FILE: certs.keyFile,
      }, { httpPort: 0, tlsPort: 0 });
      const { httpPort, tlsPort } = server.service;
      assert(httpPort !== undefined && tlsPort !== undefined);
      assertEquals(server.service.secure, true);

      using client = Deno.createHttpClient({ caCerts: [certs.ca] });
      const health = await fetch(`https://localhost:${httpPort}/healthz`, { client });
      assertEquals([health.status, await health.json()], [200, { status: "ok" }]);

      await using wss = await RawWsClient.connect(httpPort, [certs.ca]);
      await wss.sendText(JSON.stringify({ type: "ping", request_id: "over-wss" }));
      assertMatch(await wss.readUntil("over-wss"), /"type":"pong"/);
      await wss.sendText(JSON.stringify({ type: "hello", protocol: 2, request_id: "wss-hello" }));
      assertMatch(await wss.readUntil("wss-hello"), /"type":"hello_response","protocol":2/);

      const tls = await Deno.connectTls({ hostname: "localhost", port: tlsPort, caCerts: [certs.ca] });
      try {
        await tls.write(new TextEncoder().encode('{"type":"ping"}\n'));
        let first: unknown;
        await forEachLine(tls, 65536, (line) => {
          first = JSON.parse(new TextDecoder().decode(line));
        }, () => first !== undefined);
        assertEquals(first, { type: "pong" });
        // Protocol v2 over TLS: a room made, its join pushed, then the reply.
        const user = uniqueName("tls");
        const lines = [
          { type: "register", username: user, password: "secret123" },
          { type: "login", username: user, password: "secret123" },
          { type: "hello", protocol: 2 },
          { type: "room_create", name: uniqueName("tls room"), visibility: "private", request_id: "tls-room" },
        ].map((frame) => JSON.stringify(frame) + "\n").join("");
        await tls.write(new TextEncoder().encode(lines));
        const frames: Record<string, unknown>[] = [];
        const joined = () => frames.some((f) => f.type === "member_event" && f.membership === "join");
        await forEachLine(tls, 65536, (line) => {
          frames.push(JSON.parse(new TextDecoder().decode(line)));
        }, () => frames.some((f) => f.request_id === "tls-room") && joined());
        const room = frames.find((f) => f.request_id === "tls-room")!;
        assertEquals(room.type, "room_response", JSON.stringify(frames));
        const id = (room.room as Record<string, unknown>).id;
        assert(frames.some((f) => f.type === "member_event" && f.room === id && f.user === user));
      } finally {
        try {
          tls.close();
        } catch {
          // Closed by the line reader already.
        }
      }

      await using plain = await server.connect();
      assertEquals(await plain.request({ type: "ping" }), { type: "pong" });
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "tls: a missing, broken or mismatched certificate stops start-up with one clear line",
  ignore: openSslMissing,
  ...sanitized,
  async fn() {
    const certs = await makeCertificates();
    try {
      await Deno.writeTextFile(`${certs.dir}/garbage.pem`, "not a certificate\n");
      const cases: [Record<string, string>, RegExp][] = [
        [
          { TLS_CERT_FILE: `${certs.dir}/nope.pem`, TLS_KEY_FILE: certs.keyFile },
          /TLS_CERT_FILE .*nope\.pem: cannot read it \(no such file\)/,
        ],
        [
          { TLS_CERT_FILE: `${certs.dir}/garbage.pem`, TLS_KEY_FILE: certs.keyFile },
          /TLS_CERT_FILE .*garbage\.pem: not a PEM file/,
        ],
        [{ TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: certs.certFile }, /TLS_KEY_FILE .*: not a PEM file/],
        [
          { TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: certs.otherKeyFile, TLS_PORT: "0" },
          /certificate or key cannot be used/,
        ],
      ];
      for (const [env, expected] of cases) {
        const result = await runServerCommand({ DATA_DIR: "memory://", LOG_FORMAT: "json", ...env });
        assertEquals(result.code, 1, JSON.stringify(env));
        const errors = (result.stdout + result.stderr).split("\n").filter((line) => line.includes('"level":"error"'));
        assertEquals(errors.length, 1, result.stdout + result.stderr);
        assertMatch(String(JSON.parse(errors[0]).msg), expected);
      }
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});
