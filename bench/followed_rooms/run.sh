#!/bin/bash
# Lobby ingest (the peers' load generator: 4 senders × 100 in flight) against one server while a
# logged-in v2 user is in ROOMS rooms, so that the server follows them all.
# usage: bench/followed_rooms/run.sh [CHECKOUT] [ROOMS]   (from the project root; PostgreSQL on 127.0.0.1)
set -u
DIR=${1:-.}; N=${2:-3000}; DB=perf_followed_rooms; PORT=$((20000 + RANDOM % 10000))
HERE=$(cd "$(dirname "$0")" && pwd)
LOADGEN=$HERE/../../../shared/peers/loadgen.mjs
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB OWNER chat" 2>/dev/null
(cd "$DIR" && HOST=127.0.0.1 PORT=$PORT HTTP_PORT=0 METRICS_ADDR=off \
  DATABASE_URL=postgres://chat:chat@127.0.0.1:5432/$DB BCRYPT_COST=4 LOG_LEVEL=warn RATE_LIMIT_PER_SEC=0 \
  REGISTER_LIMIT_PER_MIN=0 DB_POOL_SIZE=10 MAX_ROOMS_PER_USER=20000 ROOM_LIMIT_PER_MIN=0 \
  setsid deno task start >/dev/null 2>&1 &)
for _ in $(seq 1 60); do nc -z 127.0.0.1 $PORT 2>/dev/null && break; sleep 0.5; done
SERVER=$(ss -ltnp | grep ":$PORT " | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
OUT=$(mktemp)
deno run --allow-net "$HERE/owner.ts" $PORT $N >"$OUT" 2>&1 &
OWNER=$!
for _ in $(seq 1 240); do grep -q created "$OUT" && break; sleep 0.5; done
echo "rooms: $(cat "$OUT")"
node "$LOADGEN" fanout --clients 4 --senders 4 --messages 4000 --window 100 --max-drain 20 \
  --port $PORT --pid $SERVER --quiet --timeout 150 | grep '^{' | grep -o '"ingest_msgs_per_s":[0-9.]*'
kill $OWNER $SERVER 2>/dev/null
rm -f "$OUT"
sleep 1
