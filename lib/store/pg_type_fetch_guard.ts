// postgres.js (3.4.9) starts every new connection by reading the server's array types
// (fetch_types) from a promise nobody awaits (connection.js: ReadyForQuery → fetchArrayTypes()).
// When that read fails — the connection is terminated or cancelled at that moment — the rejection
// is unhandled, and Deno ends the process on one: a database restart could take every server
// down with it. The query that opened the connection is told the same error, and the connection
// reconnects, so that rejection carries nothing more: it is set aside here, and only it.
// Upstream: https://github.com/porsager/postgres/issues/1192 (open).

import type { Logger } from "../core/log.ts";

/** Text only postgres.js's array-type query has; postgres.js attaches a failed query's text to its error. */
const TYPE_FETCH_SIGNATURE = ["pg_catalog.pg_type", "typcategory = 'A'"];

let installed = false;
let setAside = 0;

/** How many such rejections this process has set aside (for tests and the curious). */
export function typeFetchFailuresSetAside(): number {
  return setAside;
}

/** Keeps a failed array-type read from ending the process (once per process; later calls are no-ops). */
export function guardTypeFetchFailures(log: Logger): void {
  if (installed) return;
  installed = true;
  globalThis.addEventListener("unhandledrejection", (event) => {
    if (!isTypeFetchFailure(event.reason)) return;
    event.preventDefault();
    setAside++;
    log.warn("a database connection failed while starting; it reconnects", {
      error: event.reason instanceof Error ? event.reason.message : String(event.reason),
    });
  });
}

/** Whether `reason` is the rejection of postgres.js's own array-type query. */
export function isTypeFetchFailure(reason: unknown): boolean {
  if (typeof reason !== "object" || reason === null) return false;
  const query = (reason as { query?: unknown }).query;
  return typeof query === "string" && TYPE_FETCH_SIGNATURE.every((part) => query.includes(part));
}
