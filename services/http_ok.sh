#!/usr/bin/env bash
# A container's healthcheck: exits 0 when http://127.0.0.1:PORT/PATH answers 200, else non-zero.
#   usage: http_ok.sh PORT PATH        e.g. http_ok.sh 4200 /api/ready
# Bash's /dev/tcp rather than `python3 -c "urllib..."`: Docker runs the probe every few seconds for
# the stack's whole life, and a Python start costs about 0.1 s of CPU each time, which made the
# probes of an idle stack a quarter of its CPU (measured in the issue 16 note).
set -euo pipefail
port=$1 path=$2
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
read -r -t 4 _ status _ <&3
[ "$status" = 200 ]
