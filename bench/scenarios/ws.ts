// WebSocket against TCP on one server: the fan-out load (50 logged-in clients, 10 sending with up to
// 10 unacknowledged messages each) over WebSockets and over TCP, in alternating rounds, for the
// server's CPU per 1,000 deliveries, and TCP once more paced at the WebSocket rounds' message rate
// (the same load, so batching is alike); then memory per idle logged-in connection, WebSocket and TCP,
// each on a fresh server. Target: WebSocket CPU per delivery <= 1.5x TCP's at the same rate.

import type { LoadClient } from "../client.ts";
import { measureTraffic, type TrafficResult } from "../measure.ts";
import { fmt, progress } from "../out.ts";
import { sleep } from "../../tests/support/util.ts";
import { round } from "../stats.ts";
import { freePort } from "../../tests/support/client_process.ts";
import {
  type BenchContext,
  closeAll,
  connectLoggedIn,
  CpuMeter,
  loadgenCpu,
  ratioText,
  registerUsers,
  rssKiB,
  type ScenarioReport,
  serverProblems,
  startChatServer,
  usernames,
} from "./common.ts";

type Transport = "tcp" | "ws";

interface Totals {
  cpuS: number;
  deliveries: number;
  messages: number;
  measuredS: number;
  missed: number;
  outOfOrder: number;
  p99: (number | null)[];
  loadgenCores: number[];
}

export async function ws(ctx: BenchContext): Promise<ScenarioReport> {
  const params = {
    clients: 50,
    senders: 10,
    window: 10,
    message_chars: 100,
    rounds: ctx.quick ? 2 : 4,
    round_s: ctx.quick ? 1.5 : 3,
    warmup_s: ctx.quick ? 0.5 : 1,
    idle_connections: ctx.quick ? 500 : 2000,
    idle_users: 50,
  };
  const self = new CpuMeter("self");
  await self.start();
  const problems: string[] = [];

  // Fan-out: one server; each round logs one transport's clients in, measures, and closes them.
  const httpPort = freePort();
  let paced: TrafficResult | undefined;
  const server = await startChatServer(ctx, { HTTP_PORT: String(httpPort) });
  const totals: Record<Transport, Totals> = {
    tcp: { cpuS: 0, deliveries: 0, messages: 0, measuredS: 0, missed: 0, outOfOrder: 0, p99: [], loadgenCores: [] },
    ws: { cpuS: 0, deliveries: 0, messages: 0, measuredS: 0, missed: 0, outOfOrder: 0, p99: [], loadgenCores: [] },
  };
  try {
    const names = usernames("wsfan", params.clients);
    await registerUsers(server.port, names);
    for (let round = 0; round < params.rounds; round++) {
      for (const transport of ["tcp", "ws"] as const) {
        const port = transport === "ws" ? httpPort : server.port;
        const clients = await connectLoggedIn(port, params.clients, { usernames: names, transport });
        let result: TrafficResult;
        try {
          result = await measureTraffic(
            {
              mode: "server",
              clients,
              senders: params.senders,
              window: params.window,
              messageChars: params.message_chars,
              pid: server.pid,
              label: `fan-out over ${transport} (round ${round + 1})`,
            },
            params.warmup_s,
            params.round_s,
          );
        } finally {
          closeAll(clients);
        }
        const t = totals[transport];
        t.cpuS += result.cpu_s;
        t.deliveries += result.deliveries_per_s * result.measured_s;
        t.messages += result.messages_per_s * result.measured_s;
        t.measuredS += result.measured_s;
        t.missed += result.counts.missed;
        t.outOfOrder += result.counts.out_of_order;
        t.p99.push(result.latency.p99_ms);
        t.loadgenCores.push(result.loadgen.cores);
        // Let the closed connections go before the other transport's round.
        await sleep(300);
      }
    }
    // TCP again, paced at the message rate the WebSocket rounds reached: CPU per delivery at equal load.
    const clients = await connectLoggedIn(server.port, params.clients, { usernames: names });
    try {
      paced = await measureTraffic(
        {
          mode: "server",
          clients,
          senders: params.senders,
          ratePerSec: totals.ws.messages / totals.ws.measuredS,
          maxUnackedPerSender: 10 * params.window,
          messageChars: params.message_chars,
          pid: server.pid,
          label: "fan-out over tcp at the WebSocket rounds' rate",
        },
        params.warmup_s,
        params.round_s * 2,
      );
    } finally {
      closeAll(clients);
    }
  } finally {
    await server.stop();
    problems.push(...serverProblems(server));
  }
  const cpuPer1000 = (t: Totals) => t.deliveries > 0 ? (t.cpuS * 1000) / (t.deliveries / 1000) : null;
  const tcpCpu = cpuPer1000(totals.tcp);
  const wsCpu = cpuPer1000(totals.ws);
  const cpuRatio = tcpCpu && wsCpu ? wsCpu / tcpCpu : null;
  const pacedCpu = paced?.cpu_ms_per_1000_deliveries ?? null;
  const pacedRatio = pacedCpu && wsCpu ? wsCpu / pacedCpu : null;

  // Idle memory: a fresh server per transport, RSS before and after the connections.
  const idle: Record<Transport, { kb_per_connection: number; rss_before_kib: number; rss_after_kib: number }> = {
    tcp: { kb_per_connection: 0, rss_before_kib: 0, rss_after_kib: 0 },
    ws: { kb_per_connection: 0, rss_before_kib: 0, rss_after_kib: 0 },
  };
  const idleNames = usernames("wsidle", params.idle_users);
  for (const transport of ["tcp", "ws"] as const) {
    const port = freePort();
    const idleServer = await startChatServer(ctx, { HTTP_PORT: String(port), BCRYPT_COST: "4" });
    let clients: LoadClient[] = [];
    try {
      await registerUsers(idleServer.port, idleNames);
      await sleep(1000);
      const before = await rssKiB(idleServer.pid);
      clients = await connectLoggedIn(transport === "ws" ? port : idleServer.port, params.idle_connections, {
        usernames: idleNames,
        transport,
        readBufferBytes: 1024,
        countOnly: true,
        concurrency: 100,
      });
      progress(`  ws: ${params.idle_connections} idle ${transport} connections held`);
      await sleep(ctx.quick ? 1000 : 2000);
      const after = await rssKiB(idleServer.pid);
      idle[transport] = {
        kb_per_connection: round(((after - before) * 1.024) / params.idle_connections, 2),
        rss_before_kib: before,
        rss_after_kib: after,
      };
    } finally {
      closeAll(clients);
      await idleServer.stop();
      problems.push(...serverProblems(idleServer));
    }
  }
  const loadgen = await loadgenCpu(self);
  for (const transport of ["tcp", "ws"] as const) {
    const t = totals[transport];
    if (t.missed > 0 || t.outOfOrder > 0) {
      problems.push(`${transport}: ${t.missed} deliveries missed, ${t.outOfOrder} out of order`);
    }
  }
  const summary = (t: Totals) => ({
    cpu_s: round(t.cpuS, 3),
    measured_s: round(t.measuredS, 2),
    messages_per_s: round(t.messages / t.measuredS, 0),
    deliveries_per_s: round(t.deliveries / t.measuredS, 0),
    cpu_ms_per_1000_deliveries: cpuPer1000(t) === null ? null : round(cpuPer1000(t)!, 2),
    latency_p99_ms_per_round: t.p99,
    loadgen_cores_per_round: t.loadgenCores,
    missed: t.missed,
    out_of_order: t.outOfOrder,
  });
  const memoryRatio = idle.tcp.kb_per_connection > 0 ? idle.ws.kb_per_connection / idle.tcp.kb_per_connection : null;
  return {
    scenario: "ws",
    params,
    results: { fanout: summary(totals.ws), idle: idle.ws },
    ceiling: {
      kind: "the same load over TCP, same run",
      fanout: summary(totals.tcp),
      paced_at_ws_rate: paced === undefined ? null : {
        messages_per_s: round(paced.messages_per_s, 0),
        deliveries_per_s: round(paced.deliveries_per_s, 0),
        cpu_ms_per_1000_deliveries: pacedCpu,
        latency_p99_ms: paced.latency.p99_ms,
      },
      idle: idle.tcp,
    },
    loadgen,
    targets: [
      {
        name: "WebSocket fan-out server CPU per delivery, TCP at the same message rate",
        target: "<= 1.5x TCP's",
        measured: `${fmt(wsCpu)} vs ${fmt(pacedCpu)} ms/1000 (${ratioText(pacedRatio)})`,
        ratio: pacedRatio === null ? null : round(pacedRatio, 3),
        pass: pacedRatio !== null && pacedRatio <= 1.5,
      },
      {
        name: "WebSocket fan-out server CPU per delivery, both closed loop",
        target: "info",
        measured: `${fmt(wsCpu)} vs ${fmt(tcpCpu)} ms/1000 (${ratioText(cpuRatio)})`,
        ratio: cpuRatio === null ? null : round(cpuRatio, 3),
        pass: null,
      },
      {
        name: "memory per idle logged-in WebSocket connection",
        target: "info",
        measured: `${fmt(idle.ws.kb_per_connection)} KB vs ${fmt(idle.tcp.kb_per_connection)} KB over TCP (${
          ratioText(memoryRatio)
        })`,
        ratio: idle.ws.kb_per_connection,
        pass: null,
      },
      {
        name: "WebSocket fan-out missed / out of order",
        target: "0 / 0",
        measured: `${totals.ws.missed} / ${totals.ws.outOfOrder}`,
        ratio: null,
        pass: totals.ws.missed === 0 && totals.ws.outOfOrder === 0,
      },
    ],
    problems,
    rows: [
      [
        "deliveries/s",
        fmt(totals.ws.deliveries / totals.ws.measuredS),
        fmt(totals.tcp.deliveries / totals.tcp.measuredS),
        ratioText((totals.ws.deliveries / totals.ws.measuredS) / (totals.tcp.deliveries / totals.tcp.measuredS)),
      ],
      ["CPU ms per 1,000 deliveries", fmt(wsCpu), fmt(tcpCpu), ratioText(cpuRatio)],
      ["TCP at the WebSocket rate: CPU ms per 1,000 deliveries", fmt(wsCpu), fmt(pacedCpu), ratioText(pacedRatio)],
      [
        "KB per idle logged-in connection",
        fmt(idle.ws.kb_per_connection),
        fmt(idle.tcp.kb_per_connection),
        ratioText(memoryRatio),
      ],
    ],
  };
}
