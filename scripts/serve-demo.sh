#!/usr/bin/env bash
# The main job: `fnagent serve` with the embedded SQLite store, the sample FDK hello function
# deployed, and the curl line that calls it. Runs in the foreground until Ctrl-C (SIGINT), which
# drains calls and removes every container.
#
# The server runs in a session of its own, so a Ctrl-C (SIGINT to the terminal's process group)
# reaches only this script, which forwards one SIGTERM per signal: the first drains, a second
# only hurries the drain. Whatever ends the script, an EXIT trap stops the server it started and
# waits for it: nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
fnagent=.venv/bin/fnagent
port=${FN_PORT:-8080}
api="http://127.0.0.1:${port}"
server=
serving=

say() { echo "serve-demo: $*" >&2; }

forward() {
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; fi
}

# Wait until the server has exited, through any number of forwarded signals; its exit status.
wait_server() {
    local status=0
    while :; do
        wait "$server" && status=0 || status=$?
        kill -0 "$server" 2>/dev/null || break
    done
    return "$status"
}

finish() {
    local status=$?
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        forward
        wait_server || true
    fi
    exit "$status"
}
# Before the server is up, a signal ends the script (and finish stops the server).
on_signal() {
    forward
    [ -n "$serving" ] || exit 130
}
trap on_signal INT TERM
trap finish EXIT

version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("fnagent"))')
setsid $fnagent serve --port "$port" &
server=$!

ready=
for _ in $(seq 1 300); do
    kill -0 "$server" 2>/dev/null || { say "fnagent serve exited (see its message above)"; exit 1; }
    # Our own server, not another program on the port: its /version is this fnagent's.
    if [ "$(curl -fsS --max-time 2 "$api/version" 2>/dev/null)" = "{\"version\":\"$version\"}" ]; then
        ready=1
        break
    fi
    sleep 0.1
done
[ -n "$ready" ] || { say "fnagent serve did not answer on $api within 30 s"; exit 1; }

$fnagent deploy demo hello --image fnagent/fn-hello --trigger /hello --api-url "$api"
fn_id=$($fnagent fns get demo hello --json --api-url "$api" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cat <<MSG

fnagent is serving on $api (store: ${FN_DB_URL:-./data/fnagent.db}). Call the sample function:

  curl -X POST -d '{"name":"you"}' $api/invoke/$fn_id
  curl -d '{"name":"you"}' $api/t/demo/hello

Idle containers are frozen through their cgroup freezer and thawed by the next call; a prefork
pool (2 to 16 busybox slots; FN_EXPERIMENTAL_PREFORK_POOL_SIZE=0 turns it off) lends new
function containers its network namespaces, so cold starts skip network set-up.

Ctrl-C stops the server (calls in flight finish, containers are removed).
MSG
serving=1
status=0
wait_server || status=$?
server=
exit "$status"
