// Imported first by _helpers.ts. PGlite emulates PostgreSQL's setitimer with setTimeout: after
// schema changes and bursts of statements it arms a 10 s timer (the idle statistics flush). In a
// test process that shares one PGlite across tests, that timer is started in one test and fires
// in another, which Deno's op sanitizer reports as a leak in whichever test is running. Tests
// need none of PostgreSQL's timeouts (statistics flush, statement_timeout, deadlock_timeout), so
// here the timers that PGlite's setitimer asks for are not started. Servers outside tests keep them.

const realSetTimeout = globalThis.setTimeout;

globalThis.setTimeout = function (handler: (...args: unknown[]) => void, timeout?: number, ...args: unknown[]) {
  if (typeof timeout === "number" && timeout >= 1000 && new Error().stack?.includes("__setitimer_js")) {
    return 0;
  }
  return realSetTimeout(handler, timeout, ...args);
} as typeof setTimeout;
