// Signal listeners that tolerate platforms without some signals (Windows has only SIGINT and
// SIGBREAK).

/** Adds `handler` for each signal this platform has; returns the function that removes them. */
export function onSignals(signals: readonly Deno.Signal[], handler: () => void): () => void {
  const added: Deno.Signal[] = [];
  for (const signal of signals) {
    try {
      Deno.addSignalListener(signal, handler);
      added.push(signal);
    } catch {
      // Not available here; the others still work.
    }
  }
  return () => {
    for (const signal of added) Deno.removeSignalListener(signal, handler);
  };
}
