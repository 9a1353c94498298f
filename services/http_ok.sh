#!/usr/bin/env bash
# A container's healthcheck: exits 0 when http://127.0.0.1:PORT/PATH answers 200, else non-zero.
#   usage: http_ok.sh PORT PATH [PATIENCE]        e.g. http_ok.sh 4200 /api/ready 3
# PATIENCE (seconds, default 0): keep asking every 0.25 s for that long before saying unhealthy.
# Docker (before Engine 25's start_interval) probes only every `interval`: a service that became
# ready just after a probe waited out the next interval before its dependents started. With
# patience, a probe during a start watches most of its interval; once healthy, the first ask answers.
# Bash's /dev/tcp rather than `python3 -c "urllib..."`: Docker runs the probe every few seconds for
# the stack's whole life, and a Python start costs about 0.1 s of CPU each time, which made the
# probes of an idle stack a quarter of its CPU (measured in the issue 16 note).
set -euo pipefail
port=$1 path=$2 patience=${3:-0}

ok() {
  local status=""
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 || return 1
  read -r -t 4 _ status _ <&3 || true
  exec 3<&-
  [ "$status" = 200 ]
}

now_us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }
deadline=$(($(now_us) + patience * 1000000))
until ok 2>/dev/null; do
  [ "$(now_us)" -lt "$deadline" ] || exit 1
  sleep 0.25
done
