#!/bin/bash
# Usage: bench/profile.sh <label>: one Conduit worker under wrk -c64 for 8 s (plain key, JSON chat), with the
# mock upstream; prints req/s, CPU µs per request and its split by thread, and the bytes the gateway wrote a request
# (its `wchar`: SQLite's WAL and the request log). C1=1: one request at a time instead, from bench/c1-tail.ts (its
# latency percentiles in place of req/s). PACED=<n>: n requests a second on schedule, from bench/paced.ts, as a
# gateway below saturation sees them. PROF=1 also writes a .cpuprofile into
# $DIR (read it with `bun bench/profile-top.ts <file>`). LIMITS=local|redis gives the key the bench's governed
# policy (rpm, tpm, max_parallel, budget), kept in-process or in the Redis at $REDIS_URL (default
# redis://127.0.0.1:6379/9).
# KEYS=<n> spreads the requests over n keys in turn (the same policy each), as real traffic is: the rows a request
# writes cost more then (see bench/row-insert-cost.ts). C1=1 uses the first key only.
# FLOOR=1 runs the floor (bench/floor.ts) in Conduit's place under the same load, for its split by thread;
# FLOOR=essentials runs bench/essentials.ts (what any gateway must do, and nothing more) with its key; FLOOR=sockets
# bench/floor-sockets.ts (the floor calling its upstream over sockets of its own instead of fetch; JSON only).
# PERF=1 samples the gateway's main thread with Linux perf (cpu-clock, call graphs) during the measured run and splits
# its CPU by where it ran: the kernel, the Bun executable (JSC's interpreter and runtime, the GC, Bun's native APIs) and
# JIT-compiled JavaScript; then by JavaScript function, native callees included (bench/perf-js.ts, from JSC's jitdump);
# with page faults and context switches a request. PROF=1's profile sees only the last JavaScript frame.
# CONF=<file> starts Conduit with that config file (a capability switched off, say).
# BODY_KB=<n> sends a chat body of about n KB (a long conversation) instead of the one-line question.
# STREAMS=<n>: n streams opened at once instead (bench/clients/streams.ts, 20 chunks 100 ms apart, as streams-1000 in
# `bun run bench`), after the same warm-up and one such burst; prints their TTFT and the CPU a stream. CHUNKS=<n> and
# INTERVAL=<ms> change the mock's stream (longer streams price the relay a chunk).
# The process is first warmed until its JIT has settled, as `bun run bench` warms every arm (bench/settle.ts;
# WARM_S=<n>: n s of wrk instead).
# CONNS=<n>: wrk's connections (64) for the default run.
# GWLOG=<file> keeps the gateway's output. Needs wrk and curl (and perf for PERF=1); port 5931.
set -e
cd "$(dirname "$0")/.."
export PATH=$HOME/.bun/bin:$PATH
L=$1
DIR=${OUT:-/tmp/conduit-profile}/${L:?a label}
rm -rf "$DIR" && mkdir -p "$DIR"
bun bench/mock-upstream.ts > $DIR/mock.log 2>&1 &
MOCK=$!
sleep 1
MOCKURL=$(grep -o 'http://[^ ]*' $DIR/mock.log | head -1)
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
POLICY=
[ -n "$LIMITS" ] && POLICY=',"rpm":100000000,"tpm":1000000000,"max_parallel":100000,"budget":{"usd":1000000,"period":"monthly"}'
[ "$LIMITS" = redis ] && export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/9}
# JSC writes a jitdump of what it compiles, which names the JIT frames in perf's samples (bench/perf-js.ts).
[ -n "$PERF" ] && export BUN_JSC_useJITDump=1 BUN_JSC_jitDumpDirectory=$DIR
# The start settings main.ts restarts itself with, set here: it does not restart under --cpu-prof (see own-command.ts), and
# the profiled process should serve as shipped.
eval "$(bun -e 'import { startEnv } from "./src/cluster/own-command.ts"; for (const [k, v] of Object.entries(startEnv(process.env, 1))) console.log(`export ${k}=${v}`)')"
if [ -n "$FLOOR" ]; then
  SCRIPT=bench/floor.ts
  [ "$FLOOR" = essentials ] && SCRIPT=bench/essentials.ts
  [ "$FLOOR" = sockets ] && SCRIPT=bench/floor-sockets.ts
  ESSENTIALS_DIR=$D UPSTREAM=$MOCKURL PORT=5931 bun ${PROF:+--cpu-prof --cpu-prof-dir=$DIR} $SCRIPT > ${GWLOG:-/dev/null} 2>&1 &
else
  CONDUIT_DATA_DIR=$D CONDUIT_MASTER_KEY=bench-master-0123456789abcdef CONDUIT_WORKERS=1 PORT=5931 HOST=127.0.0.1 CONDUIT_LOG_LEVEL=info CONDUIT_EGRESS_ALLOW=127.0.0.1 \
    bun ${PROF:+--cpu-prof --cpu-prof-dir=$DIR} src/main.ts ${CONF:+--config $CONF} > ${GWLOG:-/dev/null} 2>&1 &
fi
GW=$!
sleep 2
# A provider, a model and the keys (the floor takes any request as it comes, the essentials their one key).
ALL='""'
[ "$FLOOR" = essentials ] && ALL='"condt_000000000000000000000000000000000essentials1cgmmrj"' # bench/essentials.ts's ESSENTIALS_KEY
if [ -z "$FLOOR" ]; then
  H='Authorization: Bearer bench-master-0123456789abcdef'
  curl -s localhost:5931/admin/v1/providers -H "$H" -H 'content-type: application/json' -d "{\"name\":\"mock\",\"type\":\"openai\",\"base_url\":\"$MOCKURL\",\"api_key\":\"sk-bench-mock\"}" > /dev/null
  curl -s localhost:5931/admin/v1/models -H "$H" -H 'content-type: application/json' -d '{"name":"m","targets":[{"provider":"mock","model":"gpt-4o-mini","price":{"input":1,"output":1}}]}' > /dev/null
  newKey() { curl -s localhost:5931/admin/v1/keys -H "$H" -H 'content-type: application/json' -d "{\"name\":\"b$1\"$POLICY}" | grep -o '"key":"condt_[A-Za-z0-9]*' | cut -d'"' -f4; }
  # STREAMS: the mock streams a model named for its timing (bench/mock-upstream.ts's mockModel).
  [ -n "$STREAMS" ] && curl -s localhost:5931/admin/v1/models -H "$H" -H 'content-type: application/json' -d "{\"name\":\"s\",\"targets\":[{\"provider\":\"mock\",\"model\":\"mock-c${CHUNKS:-20}-i${INTERVAL:-100}-d0\",\"price\":{\"input\":1,\"output\":1}}]}" > /dev/null
  KEY=$(newKey 0)
  ALL="\"$KEY\""
  for n in $(seq 2 ${KEYS:-1}); do ALL="$ALL, \"$(newKey $n)\""; done
fi
BODY='{"model":"m","messages":[{"role":"user","content":"Hello there, how are you?"}],"max_tokens":16}'
# BODY_KB=<n>: a conversation of about n KB instead, as agents and retrieval send (each request parsed and sent on whole).
[ -n "$BODY_KB" ] && BODY=$(bun -e "import { conversation } from './bench/scenarios/large-body.ts'; console.log(conversation('m', $BODY_KB))")
cat > $DIR/post.lua <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
local keys, n = { $ALL }, 0
request = function()
  n = n % #keys + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[n]
  return wrk.format()
end
LUA
# Per thread: tid, CPU ticks (utime + stime, counted after the ")" that ends a name with spaces in it), name.
threads() { for t in /proc/$GW/task/*; do echo "$(basename $t) $(sed 's/.*) //' $t/stat | awk '{print $12+$13}') $(cat $t/comm)"; done; }
URL=http://127.0.0.1:5931/v1/chat/completions
CONNS=${CONNS:-64}
[ -n "$C1" ] && CONNS=1
if [ -n "$WARM_S" ]; then wrk -t1 -c$CONNS -d${WARM_S}s -s $DIR/post.lua $URL > /dev/null; else bun bench/settle.ts $GW $DIR/post.lua $URL; fi
if [ -n "$STREAMS" ]; then
  [ -n "$FLOOR" ] && SMODEL=mock-c${CHUNKS:-20}-i${INTERVAL:-100}-d0 || SMODEL=s
  # The streams-1000 scenario's client and body (bench/scenarios/streams.ts).
  STREAMS_CONF=$(bun -e "import { chatBody } from './bench/clients/http.ts'; console.log(JSON.stringify({ target: { url: '$URL', headers: { authorization: 'Bearer ${KEY:-none}' } }, body: chatBody('$SMODEL', true), count: $STREAMS, chunks: ${CHUNKS:-20}, intervalMs: ${INTERVAL:-100}, timeoutMs: 60000 }))")
  # As in `bun run bench`, where the sse scenario runs first: the streaming path compiled before the burst is timed.
  BUN_CONFIG_MAX_HTTP_REQUESTS=65535 bun bench/clients/streams.ts "$STREAMS_CONF" > /dev/null
fi
T0=$(awk '{print $14+$15}' /proc/$GW/stat)
W0=$(awk '/^wchar/ {print $2}' /proc/$GW/io)
threads > $DIR/threads.before
if [ -n "$PERF" ]; then
  command -v perf > /dev/null || { echo "PERF=1 needs perf (Debian: linux-perf)" >&2; exit 1; }
  # 6 s inside the measured 8: the counts are divided by the requests of those 6 s at the run's rate.
  perf record -q -g -k 1 -e cpu-clock -F 999 -t $GW -o $DIR/perf.data -- sleep 6 > /dev/null 2>&1 &
  perf stat -x, -e page-faults,context-switches -p $GW -o $DIR/perf.stat -- sleep 6 > /dev/null 2>&1 &
fi
if [ -n "$C1" ]; then bun bench/c1-tail.ts $URL "$BODY" $KEY > $DIR/wrk.txt
elif [ -n "$STREAMS" ]; then
  BUN_CONFIG_MAX_HTTP_REQUESTS=65535 bun bench/clients/streams.ts "$STREAMS_CONF" > $DIR/streams.json
  bun -e "const r = JSON.parse(await Bun.file('$DIR/streams.json').text()); console.log(\`\${r.completed}/\${r.count} complete, \${r.count} sent; TTFT p50 \${r.ttftMs.p50.toFixed(1)} p99 \${r.ttftMs.p99.toFixed(1)} ms, max stall \${r.maxStallMs.toFixed(1)} ms\`)" | tee $DIR/wrk.txt
elif [ -n "$PACED" ]; then RATE=$PACED bun bench/paced.ts $URL "$BODY" $KEY > $DIR/wrk.txt; else wrk -t1 -c$CONNS -d8s --latency -s $DIR/post.lua $URL > $DIR/wrk.txt; fi
T1=$(awk '{print $14+$15}' /proc/$GW/stat)
W1=$(awk '/^wchar/ {print $2}' /proc/$GW/io)
threads > $DIR/threads.after
N=$(grep -oE '[0-9]+ (requests in|sent)' $DIR/wrk.txt | cut -d' ' -f1)
grep -E "Requests/sec|Non-2xx|timed| sent at " $DIR/wrk.txt || true
echo "CPU us/req: $(( (T1 - T0) * 10000 / N ))  rss_kb: $(grep VmRSS /proc/$GW/status | awk '{print $2}')  bytes written a request: $(( (W1 - W0) / N ))"
# Which thread spent it: the main (JavaScript) thread, the row writer ("Worker"), Bun's HTTP client, GC helpers.
# Under PROF=1, "thread" is the profiler's own sampler, not the gateway's.
awk -v n=$N 'NR == FNR { before[$1] = $2; next }
  { tid = $1; d = $2 - before[tid]; $1 = $2 = ""; sub(/^ +/, ""); if (d > 0) us[$0] += d * 10000 / n }
  END { line = "by thread, us/req:"; for (k in us) line = line sprintf(" %s %.1f;", k, us[k]); print line }' $DIR/threads.before $DIR/threads.after
if [ -n "$PERF" ]; then
  wait $(jobs -p | grep -vx -e $GW -e $MOCK) 2>/dev/null || true
  MAIN_US=$(awk -v gw=$GW -v n=$N 'NR == FNR { if ($1 == gw) t0 = $2; next } $1 == gw { printf "%.1f", ($2 - t0) * 10000 / n }' $DIR/threads.before $DIR/threads.after)
  RATE=$(awk '/Requests\/sec/ { print $2 }' $DIR/wrk.txt)
  [ -n "$C1" ] && RATE=$(awk -v n=$N 'BEGIN { print n / 8 }')
  [ -n "$PACED" ] && RATE=$PACED
  [ -n "$STREAMS" ] && RATE=$(awk -v n=$N 'BEGIN { print n / 6 }')
  perf report -i $DIR/perf.data --stdio --no-children --sort dso -g none 2>/dev/null | awk -v us=$MAIN_US '
    /^ +[0-9.]+%/ { p = $1 + 0; d = $2; k = d ~ /kernel/ ? "kernel" : d ~ /^\[JIT\]/ ? "JIT code" : d ~ /^bun/ ? "Bun executable" : "other"; s[k] += p }
    END { line = "main thread " us " us/req, by perf:"; for (k in s) line = line sprintf(" %s %.1f;", k, s[k] * us / 100); print line }'
  awk -F, -v r=$RATE '$3 ~ /page-faults|context-switches/ { printf "%s a request: %.2f\n", $3, $1 / (r * 6) }' $DIR/perf.stat
  bun bench/perf-js.ts $DIR/perf.data $(ls $DIR/jit-*-$GW.dump) $MAIN_US > $DIR/perf-js.txt && echo "by JavaScript function: $DIR/perf-js.txt"
fi
kill -TERM $GW; wait $GW 2>/dev/null || true
kill $MOCK
