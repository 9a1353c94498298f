#!/bin/sh
# Entrypoint of the proxy image: checks the TLS settings, writes the TLS snippet of the Caddyfile
# for TLS_MODE, then runs Caddy as the `caddy` user. `proxy-entrypoint --check` only checks
# (./scripts/up runs it before starting the stack, so bad settings stop it with a clear message).
#   TLS_MODE         acme | internal | files (off: the stack runs without this proxy)
#   PUBLIC_HOSTNAME  the name clients use; the certificate is issued for it
#   ACME_EMAIL       acme: contact address for the ACME account (expiry and policy notices)
#   ACME_CA_URL      acme: the ACME directory (default: Let's Encrypt production)
#   HTTPS_HOST_PORT  the host port of HTTPS, for redirects (default 443)
#   PREFECT_BIND_ADDRESS  where the server's plain HTTP is published: must be loopback in TLS modes
# Mounted by compose: /run/tls/cert.pem, /run/tls/key.pem (files mode) and /run/tls/acme-ca-root.pem
# (the root of a private ACME CA); /dev/null when not configured.
set -eu

die() {
	echo "proxy: $*" >&2
	exit 2
}

tls_mode=${TLS_MODE:-off}
hostname=${PUBLIC_HOSTNAME:-}
https_port=${HTTPS_HOST_PORT:-443}
snippet=/config/tls.caddy

case "$tls_mode" in
acme | internal | files) ;;
off) die "TLS_MODE=off: the stack serves plain HTTP without this proxy; run ./scripts/up to apply the setting" ;;
*) die "TLS_MODE must be off, acme, internal or files (got '$tls_mode')" ;;
esac

[ -n "$hostname" ] || die "TLS_MODE=$tls_mode needs PUBLIC_HOSTNAME (the name clients use, e.g. prefect.example.com) in .env"
case "$hostname" in
*[!A-Za-z0-9.-]* | .* | *. | -* | *..*) die "PUBLIC_HOSTNAME must be a host name such as prefect.example.com (got '$hostname')" ;;
esac
case "${PREFECT_BIND_ADDRESS:-127.0.0.1}" in
127.0.0.1 | localhost | ::1) ;;
*) die "TLS_MODE=$tls_mode: PREFECT_BIND_ADDRESS must stay 127.0.0.1, so plain HTTP serves this host only (got '$PREFECT_BIND_ADDRESS'); other machines use https://$hostname" ;;
esac
case "$https_port" in
'' | *[!0-9]*) die "HTTPS_HOST_PORT must be a port number (got '$https_port')" ;;
esac

# PEM file mounted by compose: present and holding the expected block, or a message naming the setting.
require_pem() { # file setting kind
	[ -s "$1" ] || die "TLS_MODE=$tls_mode needs $2: the path of a PEM $3 file on the host (it is empty or missing)"
	grep -q -- "-----BEGIN .*$3-----" "$1" || die "$2 does not hold a PEM $3 (no '-----BEGIN ...$3-----' line)"
}

tls_lines=""
case "$tls_mode" in
internal)
	tls_lines="tls internal"
	;;
acme)
	email=${ACME_EMAIL:-}
	case "$email" in
	?*@?*.?*) ;;
	*) die "TLS_MODE=acme needs ACME_EMAIL, the ACME account's contact address (got '$email')" ;;
	esac
	ca_url=${ACME_CA_URL:-https://acme-v02.api.letsencrypt.org/directory}
	case "$ca_url" in
	https://*) ;;
	*) die "ACME_CA_URL must be an https:// ACME directory URL (got '$ca_url')" ;;
	esac
	ca_root=""
	if [ -s /run/tls/acme-ca-root.pem ]; then
		require_pem /run/tls/acme-ca-root.pem ACME_CA_ROOT CERTIFICATE
		ca_root="ca_root /run/tls/acme-ca-root.pem"
	fi
	tls_lines=$(printf 'tls %s {\n\tca %s\n\t%s\n}' "$email" "$ca_url" "$ca_root")
	;;
files)
	require_pem /run/tls/cert.pem TLS_CERT_FILE CERTIFICATE
	require_pem /run/tls/key.pem TLS_KEY_FILE "PRIVATE KEY"
	tls_lines="tls /config/tls/cert.pem /config/tls/key.pem"
	;;
esac

[ "${1:-}" = "--check" ] && {
	echo "proxy: TLS_MODE=$tls_mode for $hostname: settings are valid"
	exit 0
}

# Caddy runs unprivileged: the files mode's key (often root-only on the host) is copied for it.
if [ "$tls_mode" = files ]; then
	install -d -o caddy -g caddy -m 0700 /config/tls
	install -o caddy -g caddy -m 0644 /run/tls/cert.pem /config/tls/cert.pem
	install -o caddy -g caddy -m 0600 /run/tls/key.pem /config/tls/key.pem
fi
printf '%s\n' "$tls_lines" >"$snippet"

export PUBLIC_HOSTNAME="$hostname"
if [ "$https_port" = 443 ]; then
	export HTTPS_PORT_SUFFIX=""
else
	export HTTPS_PORT_SUFFIX=":$https_port"
fi
exec setpriv --reuid=caddy --regid=caddy --init-groups -- caddy run --config /etc/caddy/Caddyfile --adapter caddyfile
