// The server's /metrics text, parsed by a real Prometheus text-format parser, and one sample read
// from it: shared by the tests of METRICS_ADDR in-process and of servers in their own processes.

import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { assert } from "./assert.ts";

export interface ParsedFamily {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }[];
}

/** Metric families by name. */
export function parseMetrics(text: string): Map<string, ParsedFamily> {
  const families = parsePrometheusTextFormat(text) as ParsedFamily[];
  return new Map(families.map((family) => [family.name, family]));
}

/** The value of `name` (its first series matching `labels`); fails when there is none. */
export function sample(families: Map<string, ParsedFamily>, name: string, labels?: Record<string, string>): number {
  const family = families.get(name);
  assert(family, `no ${name} in /metrics`);
  const metric = family.metrics.find((m) =>
    !labels || Object.entries(labels).every(([key, value]) => m.labels?.[key] === value)
  );
  assert(metric, `no ${name} ${JSON.stringify(labels)}`);
  return Number(metric.value ?? metric.count);
}

/** The /metrics of a server's METRICS_ADDR listener on 127.0.0.1:`port`, parsed. */
export async function scrapeMetrics(port: number): Promise<Map<string, ParsedFamily>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  return parseMetrics(await response.text());
}
