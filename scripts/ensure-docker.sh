#!/usr/bin/env bash
# Make a Docker engine available, and say what was done.
#
# 1. A daemon already answers (DOCKER_HOST or the default socket): use it.
# 2. Otherwise, on Debian as root: install docker.io with apt when dockerd is
#    missing, clear a stale pid file left by an unclean stop, start dockerd in
#    the background (log in $FNAGENT_DOCKERD_LOG) and wait until it answers.
# 3. Otherwise: stop with a message that says what to do.
set -euo pipefail

log=${FNAGENT_DOCKERD_LOG:-/var/log/fnagent-dockerd.log}
wait_s=${FNAGENT_DOCKERD_WAIT_S:-60}
pidfile=/var/run/docker.pid

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: error: $*" >&2; exit 1; }

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then
    : # neither client nor daemon: installed below
elif answers; then
    say "using the Docker daemon that answers at ${DOCKER_HOST:-the default socket} (server $(docker version --format '{{.Server.Version}}'))"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
    die "DOCKER_HOST=$DOCKER_HOST does not answer; start that daemon or unset DOCKER_HOST"
fi
if [ "$(id -u)" != 0 ]; then
    die "no Docker daemon answers and starting one needs root: run 'sudo make docker', or start dockerd yourself"
fi

if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 \
        || die "dockerd is missing and this is not a Debian-like host: install Docker Engine, start it, then re-run"
    say "dockerd is missing: installing docker.io with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
command -v docker >/dev/null 2>&1 || die "the docker client is missing after installing docker.io"

if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        say "dockerd (pid $pid) is running but not answering yet; waiting for it"
    else
        say "removing the stale $pidfile (pid ${pid:-none} is gone; dockerd was stopped uncleanly)"
        rm -f "$pidfile"
    fi
fi

if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
    # containerd's socket can also be left behind by an unclean stop; dockerd
    # starts its own containerd when none answers.
    say "no Docker daemon answers: starting dockerd in the background (log: $log)"
    mkdir -p "$(dirname "$log")"
    nohup dockerd >>"$log" 2>&1 </dev/null &
fi

for _ in $(seq 1 $((wait_s * 4))); do
    if answers; then
        say "dockerd answers (server $(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 0.25
done
tail -n 20 "$log" >&2 || true
die "dockerd did not answer within ${wait_s}s; see $log"
