// The server's counters, gauges and histograms, and their Prometheus text exposition (format
// 0.0.4). Increments are plain field updates, cheap enough for the hot path. Imports nothing from lib/.

type Labels = Readonly<Record<string, string>>;

interface Series {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  expose(out: string[]): void;
}

/** A number that only goes up. */
export class Counter implements Series {
  readonly type = "counter";
  value = 0;
  constructor(readonly name: string, readonly help: string) {}

  inc(by = 1): void {
    this.value += by;
  }

  expose(out: string[]): void {
    out.push(`${this.name} ${this.value}`);
  }
}

/** A value read when scraped, one sample per label set. */
export class Gauge implements Series {
  readonly type = "gauge";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly read: () => number | ReadonlyArray<readonly [Labels, number]>,
  ) {}

  expose(out: string[]): void {
    const value = this.read();
    if (typeof value === "number") {
      out.push(`${this.name} ${value}`);
      return;
    }
    for (const [labels, sample] of value) out.push(`${this.name}${formatLabels(labels)} ${sample}`);
  }
}

/** Observations counted into cumulative buckets (upper bounds in the series' unit). */
export class Histogram implements Series {
  readonly type = "histogram";
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(readonly name: string, readonly help: string, bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = new Array(bounds.length).fill(0);
  }

  observe(value: number): void {
    this.#sum += value;
    this.#count++;
    for (let i = 0; i < this.#bounds.length; i++) {
      if (value <= this.#bounds[i]) {
        this.#counts[i]++;
        return;
      }
    }
  }

  expose(out: string[]): void {
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i];
      out.push(`${this.name}_bucket{le="${this.#bounds[i]}"} ${cumulative}`);
    }
    out.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`);
    out.push(`${this.name}_sum ${this.#sum}`);
    out.push(`${this.name}_count ${this.#count}`);
  }
}

const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/** How often the event-loop lag is sampled: a timer's lateness is the lag. */
const LAG_SAMPLE_MS = 500;

/** Every series the server exposes. Services increment the counters; gauges read the server's state. */
export class Metrics {
  readonly messagesCommitted = new Counter("chat_messages_committed_total", "Messages stored and broadcast");
  readonly messagesFailed = new Counter("chat_messages_failed_total", "Messages answered unavailable");
  readonly deliveries = new Counter("chat_deliveries_total", "new_message lines queued to connections");
  readonly socketWrites = new Counter(
    "chat_socket_writes_total",
    "Writes to client sockets: TCP and TLS writes, WebSocket messages",
  );
  readonly batchSize = new Histogram("chat_batch_messages", "Messages per committed batch", BATCH_SIZE_BUCKETS);
  readonly commitSeconds = new Histogram(
    "chat_commit_seconds",
    "Time to commit one batch of messages",
    SECONDS_BUCKETS,
  );
  readonly slowConsumers = new Counter("chat_slow_consumers_total", "Connections cut off for not reading");
  readonly rateLimited = new Counter("chat_rate_limited_total", "send_message refused with rate_limited");
  readonly failedLogins = new Counter("chat_failed_logins_total", "Logins refused (bad credentials or throttled)");
  readonly databaseErrors = new Counter("chat_database_errors_total", "Database queries that failed");
  readonly connectionsRefused = new Counter("chat_connections_refused_total", "Connections over a limit");
  readonly gapsDetected = new Counter(
    "chat_stream_gaps_total",
    "Times rows arrived ahead of what was delivered and their gap had to be read from the database",
  );
  readonly gapsRepaired = new Counter("chat_stream_gaps_repaired_total", "Gaps filled from the database");
  readonly catchUpReads = new Counter("chat_catch_up_reads_total", "Reads of committed rows from the database");
  readonly eventLoopLag = new Histogram(
    "chat_event_loop_lag_seconds",
    `How late a ${LAG_SAMPLE_MS} ms timer fires`,
    SECONDS_BUCKETS,
  );
  #lastLagSeconds = 0;
  readonly #series: Series[] = [];
  #lagTimer: ReturnType<typeof setInterval> | undefined;

  constructor() {
    this.#series.push(
      this.messagesCommitted,
      this.messagesFailed,
      this.deliveries,
      this.socketWrites,
      this.batchSize,
      this.commitSeconds,
      this.slowConsumers,
      this.rateLimited,
      this.failedLogins,
      this.databaseErrors,
      this.connectionsRefused,
      this.gapsDetected,
      this.gapsRepaired,
      this.catchUpReads,
      this.eventLoopLag,
      new Gauge("chat_event_loop_lag_last_seconds", "The latest event-loop lag sample", () => this.#lastLagSeconds),
      // Prometheus's standard name, so that dashboards and alerts made for other servers apply.
      new Gauge("process_resident_memory_bytes", "Resident memory of the server process", () => Deno.memoryUsage().rss),
    );
  }

  /** One batch committed: its size and how long the database took, in ms. */
  batchCommitted(messages: number, ms: number): void {
    this.messagesCommitted.inc(messages);
    this.batchSize.observe(messages);
    this.commitSeconds.observe(ms / 1000);
  }

  /** Adds gauges that read state owned elsewhere (connections, logged-in sessions). */
  addGauge(name: string, help: string, read: Gauge["read"]): void {
    this.#series.push(new Gauge(name, help, read));
  }

  /** Starts sampling the event-loop lag; stop() ends it. */
  start(): void {
    if (this.#lagTimer !== undefined) return;
    let expected = performance.now() + LAG_SAMPLE_MS;
    this.#lagTimer = setInterval(() => {
      const now = performance.now();
      this.#lastLagSeconds = Math.max(0, now - expected) / 1000;
      this.eventLoopLag.observe(this.#lastLagSeconds);
      expected = now + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS);
  }

  stop(): void {
    if (this.#lagTimer !== undefined) clearInterval(this.#lagTimer);
    this.#lagTimer = undefined;
  }

  /** The Prometheus text exposition of every series. */
  expose(): string {
    const out: string[] = [];
    for (const series of this.#series) {
      out.push(`# HELP ${series.name} ${series.help}`, `# TYPE ${series.name} ${series.type}`);
      series.expose(out);
    }
    return out.join("\n") + "\n";
  }
}

function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([key, value]) =>
    `${key}="${value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
  );
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}
