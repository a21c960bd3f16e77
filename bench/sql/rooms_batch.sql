-- One batch as the rooms ingest makes them: 400 messages from 4 senders over 100 rooms, the
-- calling server having seen every room up to its head.
SELECT ids[1] FROM chat_store_batch(
  ARRAY(SELECT 'r' || lpad((1 + (g % 100))::text, 3, '0') FROM generate_series(0, 399) g),
  ARRAY(SELECT 1 + (g / 100) FROM generate_series(0, 399) g)::int[],
  ARRAY(SELECT 'u' || (1 + g / 100) FROM generate_series(0, 399) g),
  array_fill('hello there this is a benchmark message of some length'::text, ARRAY[400]),
  array_fill(NULL::text, ARRAY[400]), 0,
  ARRAY(SELECT id FROM chat_rooms ORDER BY id), ARRAY(SELECT last_id FROM chat_rooms ORDER BY id));
