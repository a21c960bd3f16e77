-- One batch of 400 lobby messages from 4 senders, each with a new client_msg_id (a random prefix and
-- a counter, as the ingest bench sends them), the calling server having seen the lobby's head.
SELECT ids[1] FROM chat_store_batch(
  array_fill(NULL::text, ARRAY[400]),
  ARRAY(SELECT 1 + (g / 100) FROM generate_series(0, 399) g)::int[],
  ARRAY(SELECT 'u' || (1 + g / 100) FROM generate_series(0, 399) g),
  array_fill('hello there this is a benchmark message of some length'::text, ARRAY[400]),
  ARRAY(SELECT p.x || '-' || g FROM (SELECT md5(random()::text) AS x) p, generate_series(1,400) g), (SELECT max(id) FROM messages), '{}'::text[], '{}'::bigint[]);
