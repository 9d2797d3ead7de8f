#!/bin/bash
# Usage: bench/instructions.sh <label> [checkout]: the instructions a request costs Conduit (a plain key, a JSON chat
# completion, 16 at a time against the mock), by thread, counted by valgrind's callgrind after a warm-up. FLOOR=1
# counts the floor instead, FLOOR=essentials bench/essentials.ts. WARM=<n> (40,000) requests, then WINDOWS=<n> (3)
# windows of N=<n> (3,000) requests each, counted apart; the last line is the least of them (see below). The
# checkout (default: this one) runs with this one's scripts. CONF=<file> starts Conduit with that config file (a
# capability switched off, to price it from the whole). STREAMS=<n>: windows of n streams opened at once instead
# (bench/clients/streams.ts; the mock's CHUNKS=<n> (100) chunks INTERVAL=<ms> (2) apart), after WARM_BURSTS=<n> (5)
# such windows uncounted; the count is a stream's, so a chunk's is about it over CHUNKS. See bench/README.md for how
# far a count repeats.
#
# JSC compiles and collects on the main thread here (BUN_JSC_useConcurrentJIT=0, useConcurrentGC=0), so that their
# work is counted where it happens; after a warm-up of 5,000 requests, Conduit's code was still being compiled.
# User space only (the kernel's TCP work is not counted). Slowed down some 50 times, timers fire 50 times as often a
# request: batches are smaller, and a thread that wakes on a timer (mi-scavenger) is shown but left out of the total.
#
# Needs a valgrind that decodes `pcmpestri` with immediate 0x04, which Bun's HTTP parser uses and no release does
# (3.19 and 3.24 stop with SIGILL): set VALGRIND=<path>, or this builds Debian's 3.19 with that one case added into
# bench/.cache/valgrind on first use (about 3 minutes on 2 cores; needs curl, gcc and make).
set -e
cd "$(dirname "$0")/.."
BENCH=$PWD/bench
L=${1:?a label}
CHECKOUT=$(cd "${2:-.}" && pwd)
DIR=${OUT:-/tmp/conduit-instructions}/$L
rm -rf "$DIR" && mkdir -p "$DIR"
if [ -z "$VALGRIND" ]; then
  VG_HOME=$BENCH/.cache/valgrind
  if [ ! -x $VG_HOME/bin/valgrind ]; then
    echo "building valgrind 3.19 with pcmpestri \$0x04 into $VG_HOME (once)…" >&2
    SRC=$(mktemp -d)
    curl -fsSL http://deb.debian.org/debian/pool/main/v/valgrind/valgrind_3.19.0.orig.tar.bz2 | tar xj -C $SRC
    cd $SRC/valgrind-3.19.0
    # The decoder's list of accepted immediates, and the helper's: "ranges, unsigned bytes, least significant index".
    sed -i 's/^      case 0x00: case 0x02:$/      case 0x00: case 0x02: case 0x04:/' VEX/priv/guest_amd64_toIR.c VEX/priv/guest_generic_x87.c
    [ "$(grep -c 'case 0x00: case 0x02: case 0x04:' VEX/priv/guest_amd64_toIR.c VEX/priv/guest_generic_x87.c | grep -c ':1')" = 2 ] || { echo "the patch did not apply" >&2; exit 1; }
    ./configure -q --prefix=$VG_HOME > /dev/null && make -s -j"$(nproc)" > /dev/null 2>&1 && make -s install > /dev/null 2>&1
    cd - > /dev/null && rm -rf $SRC
  fi
  VALGRIND=$VG_HOME/bin/valgrind
fi
VG_BIN=$(dirname "$VALGRIND")
# vgdb finds the process by a file named after USER and HOST, which must read the same to both sides (Conduit's HOST).
export USER=${USER:-root} LOGNAME=${LOGNAME:-root} HOST=127.0.0.1 BUN_JSC_useConcurrentJIT=0 BUN_JSC_useConcurrentGC=0
VGDB="--vgdb-prefix=$DIR/vgdb"
bun $BENCH/mock-upstream.ts > $DIR/mock.log 2>&1 &
MOCK=$!
D=$(mktemp -d)
trap 'kill $MOCK $GW 2>/dev/null; rm -rf "$D"' EXIT
sleep 1
MOCKURL=$(grep -o 'http://[^ ]*' $DIR/mock.log | head -1)
eval "$(cd $CHECKOUT && bun -e 'import { startEnv } from "./src/cluster/own-command.ts"; for (const [k, v] of Object.entries(startEnv(process.env, 1))) console.log(`export ${k}=${v}`)')"
# Counting starts switched off (--instr-atstart=no): the warm-up runs about 5 times faster.
VG="$VALGRIND --tool=callgrind --instr-atstart=no --separate-threads=yes --dump-instr=no --callgrind-out-file=$DIR/callgrind.%p --vgdb=yes $VGDB"
cd $CHECKOUT
if [ -n "$FLOOR" ]; then
  SCRIPT=$BENCH/floor.ts
  [ "$FLOOR" = essentials ] && SCRIPT=$BENCH/essentials.ts
  ESSENTIALS_DIR=$D UPSTREAM=$MOCKURL PORT=5933 $VG $(command -v bun) $SCRIPT > $DIR/gateway.log 2>&1 &
else
  CONDUIT_DATA_DIR=$D CONDUIT_MASTER_KEY=bench-master-0123456789abcdef CONDUIT_WORKERS=1 PORT=5933 CONDUIT_LOG_LEVEL=info CONDUIT_EGRESS_ALLOW=127.0.0.1 \
    $VG $(command -v bun) src/main.ts ${CONF:+--config $CONF} > $DIR/gateway.log 2>&1 &
fi
GW=$!
for i in $(seq 1 300); do curl -s -o /dev/null 127.0.0.1:5933/health && break; sleep 1; done
KEY=
[ "$FLOOR" = essentials ] && KEY=condt_000000000000000000000000000000000essentials1cgmmrj # bench/essentials.ts's ESSENTIALS_KEY
if [ -z "$FLOOR" ]; then
  H='Authorization: Bearer bench-master-0123456789abcdef'
  curl -s 127.0.0.1:5933/admin/v1/providers -H "$H" -H 'content-type: application/json' -d "{\"name\":\"mock\",\"type\":\"openai\",\"base_url\":\"$MOCKURL\",\"api_key\":\"sk-bench-mock\"}" > /dev/null
  curl -s 127.0.0.1:5933/admin/v1/models -H "$H" -H 'content-type: application/json' -d '{"name":"m","targets":[{"provider":"mock","model":"gpt-4o-mini","price":{"input":1,"output":1}}]}' > /dev/null
  [ -n "$STREAMS" ] && curl -s 127.0.0.1:5933/admin/v1/models -H "$H" -H 'content-type: application/json' -d "{\"name\":\"s\",\"targets\":[{\"provider\":\"mock\",\"model\":\"mock-c${CHUNKS:-100}-i${INTERVAL:-2}-d0\",\"price\":{\"input\":1,\"output\":1}}]}" > /dev/null
  KEY=$(curl -s 127.0.0.1:5933/admin/v1/keys -H "$H" -H 'content-type: application/json' -d '{"name":"instructions"}' | grep -o '"key":"condt_[A-Za-z0-9]*' | cut -d'"' -f4)
fi
URL=http://127.0.0.1:5933/v1/chat/completions
N=${N:-3000}
WINDOWS=${WINDOWS:-3}
# One window's load: N chat requests, or a burst of STREAMS streams.
load() { bun $BENCH/requests.ts $URL "$KEY" $N; }
UNIT=request
if [ -n "$STREAMS" ]; then
  N=$STREAMS
  UNIT=stream
  SMODEL=s
  [ -n "$FLOOR" ] && SMODEL=mock-c${CHUNKS:-100}-i${INTERVAL:-2}-d0
  # The streams-1000 scenario's client and body (bench/scenarios/streams.ts).
  STREAMS_CONF=$(bun -e "import { chatBody } from '$BENCH/clients/http.ts'; console.log(JSON.stringify({ target: { url: '$URL', headers: { authorization: 'Bearer ${KEY:-none}' } }, body: chatBody('$SMODEL', true), count: $STREAMS, chunks: ${CHUNKS:-100}, intervalMs: ${INTERVAL:-2}, timeoutMs: 600000 }))")
  load() { BUN_CONFIG_MAX_HTTP_REQUESTS=65535 bun $BENCH/clients/streams.ts "$STREAMS_CONF" | grep -q "\"completed\":$STREAMS," || echo "a window's streams did not all complete" >&2; }
fi
bun $BENCH/requests.ts $URL "$KEY" ${WARM:-40000}
[ -n "$STREAMS" ] && for b in $(seq 1 ${WARM_BURSTS:-5}); do load; done
sleep 1
$VG_BIN/callgrind_control $VGDB -i on $GW > /dev/null 2>&1
for w in $(seq 1 $WINDOWS); do
  load
  # The rows of the last requests reach the writer's thread within 250 ms (the batch writers' timers).
  sleep 1.5
  $VG_BIN/callgrind_control $VGDB -d $GW > /dev/null 2>&1
done
# Thread names: valgrind's thread numbers by their Linux ids, then the names the threads gave themselves.
$VG_BIN/vgdb $VGDB --pid=$GW v.info scheduler 2>/dev/null | sed -n 's/^Thread \([0-9]*\):.*(lwpid \([0-9]*\)).*/\1 \2/p' |
  while read -r tid lwp; do echo "$tid $(tr ' ' _ < /proc/$GW/task/$lwp/comm)"; done > $DIR/threads
kill -TERM $GW; wait $GW 2>/dev/null || true
# Dump w is the files with ".w-" (then the thread) in their names; the one after the last is what came after, at exit.
for w in $(seq 1 $WINDOWS); do
  for f in $DIR/callgrind.*.$w-*; do echo "$(sed -n 's/^thread: //p' $f | head -1) $(sed -n 's/^summary: //p' $f | head -1)"; done |
    awk -v n=$N -v label="$L window $w" -v unit=$UNIT 'NR == FNR { name[$1] = $2; next }
      $2 / n >= 500 { t = name[$1] ? name[$1] : "thread " $1; us = sprintf("%s %.1fk;", t, $2 / n / 1000); if (t ~ /scavenger/) timed = timed " " us; else { total += $2; line = line " " us } }
      END { printf "%.1f %s: %.1fk instructions a %s:%s (not counted:%s)\n", total / n / 1000, label, total / n / 1000, unit, line, timed ? timed : " none" }' $DIR/threads -
done > $DIR/windows
# JSC still compiles now and then after the warm-up (on this thread, here), a few hundred thousand instructions at a
# time: a window it lands in counts them for every request. Each window is shown; the least is the steady state.
cut -d' ' -f2- $DIR/windows >&2
sort -n $DIR/windows | head -1 | cut -d' ' -f2- | sed "s/ window [0-9]*:/:/"
