// The search indexes' background upkeep (lib/store/search_upkeep.ts) against a real PostgreSQL: a
// failure is warned about once, a recovery is logged and re-arms the warning. Needs
// TEST_DATABASE_URL (gin_clean_pending_list and roles; PGlite has neither upkeep nor roles).

import { assertEquals } from "./support/assert.ts";
import { scratchBackends, scratchDatabase, withOpen } from "./support/scratch_db.ts";
import { sanitized, waitUntil } from "./support/util.ts";
import { Logger } from "../lib/core/log.ts";
import { openDatabase } from "../lib/store/db.ts";
import { SearchIndexUpkeep } from "../lib/store/search_upkeep.ts";
import { RecordingLogger } from "./support/recording_logger.ts";

Deno.test({
  name: "search upkeep: a failure after a recovery is warned about again, and the recovery is logged [postgres]",
  ignore: !scratchBackends.includes("postgres"),
  ...sanitized,
  async fn() {
    await using scratch = await scratchDatabase("postgres");
    // gin_clean_pending_list() needs the index's owner: a role that does not own the table fails
    // for real ("must be owner of index"), and owns it, or not, by ALTER TABLE … OWNER TO.
    const role = `upkeep_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
    await withOpen(scratch, async (admin) => {
      await admin.query(`CREATE ROLE ${role} LOGIN`);
      try {
        await admin.query("CREATE TABLE notes (body text)");
        await admin.query("CREATE INDEX notes_search ON notes USING gin (to_tsvector('simple', body))");
        const url = new URL(scratch.env.DATABASE_URL);
        url.username = role;
        const db = await openDatabase({ databaseUrl: url.href, dataDir: "", poolSize: 1, log: new Logger("error") });
        const log = new RecordingLogger(["info", "warn"]);
        let committed = 0;
        let asked = 0;
        const upkeep = new SearchIndexUpkeep(db, log, ["notes_search"], () => {
          asked++;
          return committed;
        });
        /** One run: the upkeep runs only when the committed count has moved since its last run. */
        const run = async () => {
          committed++;
          const before = asked;
          // The timer saw the new count, so the run is under way: idle() settles when it ends.
          await waitUntil(() => asked > before, 5000, "the upkeep's next turn");
          await upkeep.idle();
        };
        try {
          upkeep.start();
          await run();
          await admin.query(`ALTER TABLE notes OWNER TO ${role}`);
          await run();
          await run();
          await admin.query("ALTER TABLE notes OWNER TO CURRENT_USER");
          await run();
          await run();
        } finally {
          upkeep.stop();
          await upkeep.idle();
          await db.close();
        }
        const warning = "warn cannot empty the search indexes' pending lists in the background (42501)";
        const recovered = "info emptying the search indexes' pending lists in the background works again";
        const said = log.lines.map((l) =>
          l.level === "warn" ? `warn ${l.msg} (${l.fields.sql_state})` : `info ${l.msg}`
        );
        assertEquals(said, [warning, recovered, warning]);
      } finally {
        await admin.query(`DROP OWNED BY ${role}`);
        await admin.query(`DROP ROLE ${role}`);
      }
    });
  },
});
