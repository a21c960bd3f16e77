-- A database for timing chat_store_batch() alone with pgbench (docs/performance.md): apply
-- schema.sql to a fresh database first, then this: 4 users, 100 public rooms, everyone in all.
INSERT INTO users (username, password_hash) SELECT 'u' || g, 'x' FROM generate_series(1, 4) g;
INSERT INTO chat_rooms (id, kind, name) SELECT 'r' || lpad(g::text, 3, '0'), 'public', 'room' || g FROM generate_series(1, 100) g;
INSERT INTO chat_room_members (room_id, user_id, role, since) SELECT r.id, u.id, 'member', 0 FROM chat_rooms r, users u;
