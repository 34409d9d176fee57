#!/usr/bin/env bash
# The main job: `fnagent serve` with the embedded SQLite store, the sample FDK hello function
# deployed, and the curl line that calls it. Runs in the foreground until Ctrl-C (SIGINT), which
# drains calls and removes every container.
set -euo pipefail
cd "$(dirname "$0")/.."
fnagent=.venv/bin/fnagent
port=${FN_PORT:-8080}
api="http://127.0.0.1:${port}"

$fnagent serve --port "$port" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM

for _ in $(seq 1 100); do
    curl -fsS "$api/" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { echo "serve-demo: fnagent serve exited" >&2; exit 1; }
    sleep 0.1
done

$fnagent deploy demo hello --image fnagent/fn-hello --trigger /hello --api-url "$api"
fn_id=$($fnagent fns get demo hello --json --api-url "$api" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cat <<MSG

fnagent is serving on $api (store: ./data/fnagent.db). Call the sample function:

  curl -X POST -d '{"name":"you"}' $api/invoke/$fn_id
  curl -d '{"name":"you"}' $api/t/demo/hello

Ctrl-C stops the server (calls in flight finish, containers are removed).
MSG
wait $server
