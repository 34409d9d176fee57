#!/usr/bin/env bash
# Make nginx available for the cluster tests and `make cluster`, and say what was done.
#
# Nothing here starts or configures the system's nginx service: the tests and
# scripts/cluster.sh run their own nginx in the foreground, with a temporary prefix and a
# config rendered from deploy/nginx.conf. This script only makes sure the program exists:
# 1. nginx is found (on PATH or /usr/sbin): done.
# 2. Otherwise, on Debian as root: install the nginx package with apt. Debian's package starts
#    its service on installation; policy-rc.d keeps it from doing so here (no port taken).
# 3. Otherwise: stop with a message that says what to do.
set -euo pipefail

say() { echo "ensure-nginx: $*"; }
die() { echo "ensure-nginx: error: $*" >&2; exit 1; }

find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true; }

nginx=$(find_nginx)
if [ -z "$nginx" ]; then
    [ "$(id -u)" = 0 ] || die "nginx is missing and installing it needs root: run 'sudo make nginx', or install your distribution's nginx package"
    command -v apt-get >/dev/null 2>&1 \
        || die "nginx is missing and this is not a Debian-like host: install nginx (1.18 or newer), then re-run"
    say "nginx is missing: installing Debian's nginx package with apt (its service is not started)"
    policy=/usr/sbin/policy-rc.d
    placed=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && placed=1
    fi
    status=0
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; } \
        || status=$?
    [ -z "$placed" ] || rm -f "$policy"
    [ "$status" = 0 ] || die "apt-get could not install nginx"
    nginx=$(find_nginx)
    [ -n "$nginx" ] || die "nginx is missing after installing it"
fi
say "using $("$nginx" -v 2>&1) ($nginx)"
