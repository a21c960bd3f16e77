// The schema: applies schema.sql, after bringing a database made by this project's earlier
// schema.sql (messages.content, no sender_username) to the seed's layout, or refusing a database
// of neither shape; all in one transaction, so a failure leaves the database as it was.

import type { Database, Transaction } from "./db.ts";
import type { Logger } from "../core/log.ts";

/** A table the server needs lacks a column it reads or writes, or has one it cannot fill. */
export class SchemaMismatchError extends Error {
  override readonly name = "SchemaMismatchError";
  readonly table: string;
  readonly column: string;
  constructor(table: string, column: string, problem: string) {
    super(`table ${table}, column ${column}: ${problem}`);
    this.table = table;
    this.column = column;
  }
}

/** Columns the server reads or writes, per seed table (schema.sql). */
const REQUIRED_COLUMNS: Record<string, readonly string[]> = {
  users: ["id", "username", "password_hash"],
  messages: ["id", "sender_id", "sender_username", "message_text", "timestamp"],
};

interface Column {
  nullable: boolean;
  hasDefault: boolean;
}

type Tables = Map<string, Map<string, Column>>;

/**
 * Migrates the earlier layout in place (every row and id kept) and checks the shape of the seed's
 * tables where they exist (schema.sql creates missing ones). Returns what was changed, in words;
 * empty when nothing was. Throws SchemaMismatchError for a database it cannot serve.
 */
export async function migrateSchema(tx: Transaction): Promise<string[]> {
  const tables = await readColumns(tx);
  const steps: string[] = [];
  const messages = tables.get("messages");
  if (messages) {
    if (!tables.has("users")) {
      throw new SchemaMismatchError("users", "id", "the table is missing, but messages (which refers to it) exists");
    }
    if (!messages.has("message_text") && messages.has("content")) {
      await tx.query("ALTER TABLE messages RENAME COLUMN content TO message_text");
      messages.set("message_text", messages.get("content")!);
      messages.delete("content");
      steps.push("messages.content renamed to message_text");
    }
    if (!messages.has("sender_username") && messages.has("sender_id")) {
      steps.push(await addSenderUsername(tx));
      messages.set("sender_username", { nullable: false, hasDefault: false });
    }
  }
  for (const [table, columns] of tables) checkShape(table, columns);
  return steps;
}

/** Adds messages.sender_username, filled with each sender's name as stored in users, then NOT NULL. */
async function addSenderUsername(tx: Transaction): Promise<string> {
  await tx.query("ALTER TABLE messages ADD COLUMN sender_username VARCHAR(50)");
  const filled = await tx.query<{ n: number }>(
    `WITH filled AS (
       UPDATE messages m SET sender_username = u.username FROM users u WHERE u.id = m.sender_id RETURNING 1
     ) SELECT count(*)::int AS n FROM filled`,
  );
  // A row without a sender (sender_id NULL) was shown with an empty sender before; it keeps that.
  const orphans = await tx.query<{ n: number }>(
    `WITH filled AS (UPDATE messages SET sender_username = '' WHERE sender_username IS NULL RETURNING 1)
     SELECT count(*)::int AS n FROM filled`,
  );
  await tx.query("ALTER TABLE messages ALTER COLUMN sender_username SET NOT NULL");
  const orphanCount = Number(orphans[0].n);
  return `messages.sender_username added and filled from users for ${rows(Number(filled[0].n))}` +
    (orphanCount > 0 ? ` (${rows(orphanCount)} without a sender got an empty name)` : "");
}

function rows(count: number): string {
  return `${count} row${count === 1 ? "" : "s"}`;
}

async function readColumns(tx: Transaction): Promise<Tables> {
  const rows = await tx.query<{ table_name: string; column_name: string; is_nullable: string; has_default: boolean }>(
    `SELECT table_name, column_name, is_nullable, column_default IS NOT NULL AS has_default
     FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name IN ('users', 'messages')`,
  );
  const tables: Tables = new Map();
  for (const row of rows) {
    let columns = tables.get(row.table_name);
    if (!columns) tables.set(row.table_name, columns = new Map());
    columns.set(row.column_name, { nullable: row.is_nullable === "YES", hasDefault: row.has_default });
  }
  return tables;
}

function checkShape(table: string, columns: Map<string, Column>): void {
  const required = REQUIRED_COLUMNS[table];
  for (const name of required) {
    if (!columns.has(name)) {
      throw new SchemaMismatchError(
        table,
        name,
        "the column is missing (the database was made neither by the seed's design nor by this server)",
      );
    }
  }
  for (const [name, column] of columns) {
    if (!required.includes(name) && !column.nullable && !column.hasDefault) {
      throw new SchemaMismatchError(table, name, "NOT NULL without a default: the server could not insert rows");
    }
  }
}

/** The schema file, read from beside main.ts (it is included in the compiled binary). */
export async function readSchema(): Promise<string> {
  return await Deno.readTextFile(new URL("../../schema.sql", import.meta.url));
}

/**
 * Brings a database made by this project's earlier schema up to date (migrateSchema above), then
 * applies schema.sql, in one transaction; idempotent, and safe when several servers start at
 * once. Throws SchemaMismatchError for a database of neither shape, leaving it untouched.
 */
export async function applySchema(db: Database, log: Logger): Promise<void> {
  const schema = await readSchema();
  const migrated = await db.schemaTransaction(async (tx) => {
    const steps = await migrateSchema(tx);
    await tx.exec(schema);
    return steps;
  });
  if (migrated.length > 0) log.info(`schema migrated from the earlier layout: ${migrated.join("; ")}`);
}
