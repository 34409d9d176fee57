#!/usr/bin/env bash
# Make PostgreSQL's server programs available for the tests, and say what was done.
#
# The tests start their own server (tests/postgres.py: initdb into a temporary folder, a
# loopback port, stopped at the end); this script only makes sure the programs exist:
# 1. initdb is found (Debian keeps it in /usr/lib/postgresql/<version>/bin): done.
# 2. Otherwise, on Debian as root: install the postgresql package with apt.
# 3. Otherwise: stop with a message that says what to do.
# As root the tests run the server as the package's `postgres` user (PostgreSQL refuses
# root), with runuser; both are checked here.
set -euo pipefail

say() { echo "ensure-postgres: $*"; }
die() { echo "ensure-postgres: error: $*" >&2; exit 1; }

find_initdb() {
    local found
    found=$(ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$found" ]; then
        found=$(command -v initdb || true)
    fi
    echo "$found"
}

initdb=$(find_initdb)
if [ -z "$initdb" ]; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL is missing and installing it needs root: run 'sudo make postgres', or install your distribution's postgresql package"
    command -v apt-get >/dev/null 2>&1 \
        || die "PostgreSQL is missing and this is not a Debian-like host: install the PostgreSQL server (initdb, pg_ctl), then re-run"
    say "PostgreSQL is missing: installing Debian's postgresql package with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    initdb=$(find_initdb)
    [ -n "$initdb" ] || die "initdb is missing after installing postgresql"
fi

if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 \
        || die "running as root, the tests start PostgreSQL as the 'postgres' user, which does not exist: install Debian's postgresql package (it creates that user)"
    command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is missing"
fi
say "using $("$initdb" --version) ($(dirname "$initdb"))"
