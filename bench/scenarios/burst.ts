// burst: 1,000 logged-in connections (100 users, 10 connections each) each send one message at
// the same moment, and every connection receives all of them. Bursts with a request_id on every
// message alternate with bursts without, against the same server: the sender's own copy of a
// message that carried a request_id differs from everyone else's, and building those copies must
// not make a burst cost more than the plain broadcast (the quadratic case of issue 12).
// Per burst: server CPU until every connection has every message, and each sender's ack latency
// (send to its own copy).

import type { LoadClient } from "../client.ts";
import { markerText } from "../client.ts";
import { fmt, progress } from "../out.ts";
import { CpuMeter } from "../proc.ts";
import { Histogram, round } from "../stats.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  loadgenCpu,
  loadgenProblem,
  ratioText,
  registerUsers,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

const TARGET_RATIO = 1.2;
const BURST_TIMEOUT_MS = 30_000;

interface Variant {
  cpuS: number;
  wallS: number;
  bursts: number;
  incomplete: number;
  ack: Histogram;
}

export async function burst(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    connections: ctx.quick ? 300 : 1000,
    users: ctx.quick ? 30 : 100,
    bursts_each: ctx.quick ? 3 : 8,
    message_chars: 100,
  };
  const names = usernames("burst", params.users);
  const server = await startChatServer(ctx);
  const meter = new CpuMeter("self");
  const variants: Record<"plain" | "request_id", Variant> = {
    plain: { cpuS: 0, wallS: 0, bursts: 0, incomplete: 0, ack: new Histogram() },
    request_id: { cpuS: 0, wallS: 0, bursts: 0, incomplete: 0, ack: new Histogram() },
  };
  let clients: LoadClient[] = [];
  let problems: string[] = [];
  try {
    await registerUsers(server.port, names);
    clients = await connectLoggedIn(server.port, params.connections, { usernames: names, readBufferBytes: 16384 });
    await meter.start();
    let seq = 0;
    for (let round = 0; round < params.bursts_each * 2; round++) {
      const variant = round % 2 === 0 ? "plain" : "request_id";
      progress(`  burst ${round + 1}/${params.bursts_each * 2} (${variant})`);
      const result = await oneBurst(clients, server.pid, seq, variant === "request_id", params.message_chars);
      seq += clients.length;
      const v = variants[variant];
      v.cpuS += result.cpuS;
      v.wallS += result.wallS;
      v.bursts++;
      if (!result.complete) v.incomplete++;
      for (const us of result.acksUs) v.ack.record(us);
    }
  } finally {
    closeAll(clients);
    await server.stop();
    problems = serverProblems(server);
  }
  const loadgen = await loadgenCpu(meter);
  const cpuPlain = variants.plain.cpuS / Math.max(1, variants.plain.bursts);
  const cpuIds = variants.request_id.cpuS / Math.max(1, variants.request_id.bursts);
  const cpuRatio = cpuIds / cpuPlain;
  const p99Plain = variants.plain.ack.summary().p99_ms ?? NaN;
  const p99Ids = variants.request_id.ack.summary().p99_ms ?? NaN;
  const p99Ratio = p99Ids / p99Plain;
  for (const [name, v] of Object.entries(variants)) {
    if (v.incomplete > 0) problems.push(`${name}: ${v.incomplete} bursts did not reach every connection in time`);
  }
  return {
    scenario: "burst",
    params,
    results: {
      server_cpu_ms_per_burst: { plain: round(cpuPlain * 1000, 1), request_id: round(cpuIds * 1000, 1) },
      ack_latency: { plain: variants.plain.ack.summary(), request_id: variants.request_id.ack.summary() },
      deliveries_per_burst: params.connections * params.connections,
    },
    ceiling: { kind: "the same bursts without request_id, alternating, same server" },
    loadgen,
    targets: [{
      name: "burst with request_id vs without: server CPU",
      target: `<= ${TARGET_RATIO}x`,
      measured: `${fmt(cpuIds * 1000)} vs ${fmt(cpuPlain * 1000)} ms per burst`,
      ratio: round(cpuRatio, 3),
      pass: cpuRatio <= TARGET_RATIO,
    }, {
      name: "burst with request_id vs without: ack p99",
      target: `<= ${TARGET_RATIO}x`,
      measured: `${fmt(p99Ids)} vs ${fmt(p99Plain)} ms`,
      ratio: round(p99Ratio, 3),
      pass: p99Ratio <= TARGET_RATIO,
    }],
    problems: [...problems, ...loadgenProblem(loadgen, "the bursts")],
    rows: [
      ["server CPU ms per burst (request_id vs plain)", fmt(cpuIds * 1000), fmt(cpuPlain * 1000), ratioText(cpuRatio)],
      ["ack p50 ms", fmt(variants.request_id.ack.summary().p50_ms), fmt(variants.plain.ack.summary().p50_ms), ""],
      ["ack p99 ms", fmt(p99Ids), fmt(p99Plain), ratioText(p99Ratio)],
      [
        "burst wall ms (until every connection has every message)",
        fmt(variants.request_id.wallS * 1000 / Math.max(1, variants.request_id.bursts)),
        fmt(variants.plain.wallS * 1000 / Math.max(1, variants.plain.bursts)),
        "",
      ],
    ],
  };
}

/** Every client sends one message now; resolves when every client has received all of them. */
async function oneBurst(
  clients: LoadClient[],
  pid: number,
  firstSeq: number,
  withRequestId: boolean,
  chars: number,
): Promise<{ cpuS: number; wallS: number; complete: boolean; acksUs: number[] }> {
  const n = clients.length;
  const received = new Int32Array(n);
  const acksUs: number[] = [];
  let complete = 0;
  const done = Promise.withResolvers<void>();
  clients.forEach((client, i) => {
    client.onDelivery = (d, now) => {
      if (d.seq < firstSeq) return;
      if (d.sender === i) acksUs.push(now - d.sentAtUs);
      if (++received[i] === n && ++complete === n) done.resolve();
    };
  });
  const meter = new CpuMeter(pid);
  await meter.start();
  for (let i = 0; i < n; i++) {
    const seq = firstSeq + i;
    const text = markerText(i, seq, chars);
    clients[i].sendLine(
      withRequestId
        ? `{"type":"send_message","message":"${text}","request_id":${seq}}\n`
        : `{"type":"send_message","message":"${text}"}\n`,
    );
  }
  const timer = setTimeout(() => done.resolve(), BURST_TIMEOUT_MS);
  await done.promise;
  clearTimeout(timer);
  const { cpuS, wallS } = await meter.stop();
  for (const client of clients) client.onDelivery = undefined;
  return { cpuS, wallS, complete: complete === n, acksUs };
}
