-- ingest1's batch as this server stores it: chat_store_batch() with the rows of peer_insert.sql (400
-- lobby messages from one sender, loadgen-shaped texts), the calling server having seen the head.
SELECT ids[1] FROM chat_store_batch(
  array_fill(NULL::text, ARRAY[400]),
  array_fill(1, ARRAY[400])::int[],
  array_fill('u1'::text, ARRAY[400]),
  ARRAY(SELECT rpad('t=' || (extract(epoch FROM clock_timestamp()) * 1e9)::bigint + g || ' s=0 q=' || g || ' ', 64, 'x')
        FROM generate_series(0, 399) g),
  array_fill(NULL::text, ARRAY[400]), (SELECT max(id) FROM messages), '{}'::text[], '{}'::bigint[]);
