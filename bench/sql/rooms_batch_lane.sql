-- rooms_batch.sql split over lanes: pgbench client c of `-c N -D lanes=N` writes only the rooms
-- whose number is c modulo N, so N connections commit disjoint rooms in parallel (what writer
-- connections per group of rooms would do). 400 messages from 4 senders each batch.
SELECT ids[1] FROM chat_store_batch(
  ARRAY(SELECT 'r' || lpad((1 + ((g * :lanes + :client_id) % 100))::text, 3, '0') FROM generate_series(0, 399) g),
  ARRAY(SELECT 1 + (g / 100) FROM generate_series(0, 399) g)::int[],
  ARRAY(SELECT 'u' || (1 + g / 100) FROM generate_series(0, 399) g),
  array_fill('hello there this is a benchmark message of some length'::text, ARRAY[400]),
  array_fill(NULL::text, ARRAY[400]), 0,
  ARRAY(SELECT id FROM chat_rooms WHERE (substr(id, 2)::int - 1) % :lanes = :client_id ORDER BY id),
  ARRAY(SELECT last_id FROM chat_rooms WHERE (substr(id, 2)::int - 1) % :lanes = :client_id ORDER BY id));
