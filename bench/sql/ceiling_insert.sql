-- The bench's pooled database ceiling (bench/database.ts) under pgbench: 100 rows a statement into
-- a plain copy of `messages` (no trigger, no search index); run with -c 10 as the bench's pool.
-- Needs: CREATE TABLE bench_ceiling_messages (LIKE messages INCLUDING DEFAULTS, PRIMARY KEY (id)).
INSERT INTO bench_ceiling_messages (id, sender_id, sender_username, message_text)
SELECT nextval('bench_ceiling_messages_id_seq'), 1 + (g % 4), 'u' || (1 + g % 4), 'hello there this is a benchmark message of some length'
FROM generate_series(0, 99) g RETURNING id;
