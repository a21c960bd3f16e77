-- ingest1's batch as the peer stores it (../shared/peers/node/server.mjs's INSERT): 400 rows from one
-- sender, texts shaped like the loadgen's ("t=<ns> s=0 q=<n> " padded with x to 64 characters: two
-- new numbers per message, so new search-index keys). Run on a database made by schema.sql or by the
-- seed's DDL alone, with a user of id 1 (bench/sql/setup.sql). docs/performance.md, "the database's
-- share of ingest1".
INSERT INTO messages (sender_id, sender_username, message_text)
SELECT * FROM unnest(
  array_fill(1, ARRAY[400])::int4[],
  array_fill('u1'::text, ARRAY[400])::varchar[],
  ARRAY(SELECT rpad('t=' || (extract(epoch FROM clock_timestamp()) * 1e9)::bigint + g || ' s=0 q=' || g || ' ', 64, 'x')
        FROM generate_series(0, 399) g)::text[])
RETURNING id, to_char(timestamp, 'YYYY-MM-DD"T"HH24:MI:SS') AS ts;
