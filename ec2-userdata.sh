#!/usr/bin/env bash
# prefect-platform host bootstrap: paste into an EC2 instance's user data (or run as root on an
# existing host) to get the platform running, secured, and back after every reboot.
# Amazon Linux 2023, Ubuntu 22.04/24.04, Debian 12. Idempotent: re-running changes nothing.
# Log: /var/log/prefect-platform-bootstrap.log (cloud-init also keeps /var/log/cloud-init-output.log).
set -euo pipefail

# ---- Settings: Terraform/CloudFormation template the defaults; the environment may override ----
# Code: a git URL (https://, ssh, file://) checked out at REPO_REF, or a .tar.gz/.tgz URL
# (https:// such as a presigned S3 URL, file://, or s3://bucket/key when the AWS CLI is present).
REPO_URL="${REPO_URL:-https://github.com/your-org/prefect-platform.git}"
REPO_REF="${REPO_REF:-main}"
# Secrets Manager secret (name or ARN) holding a JSON object of .env keys; empty = generate all.
SECRET_ID="${SECRET_ID:-prefect-platform/prod}"
INSTALL_DIR="${INSTALL_DIR:-/opt/prefect-platform}"
SERVICE_USER="${SERVICE_USER:-prefect}"
# Host address of the server's plain HTTP (UI/API): loopback. Other machines use HTTPS (below) or
# SSM port forwarding; plain HTTP on the network would carry the password in clear.
PREFECT_BIND_ADDRESS="${PREFECT_BIND_ADDRESS:-127.0.0.1}"
# HTTPS: a DNS name pointing at this instance (its Elastic IP) and the ACME account's contact, here
# or as keys of the secret. With a name the stack serves https://NAME with a Let's Encrypt
# certificate (TLS_MODE=acme; the security group opens 80 and 443); without one the UI stays on
# loopback and the bootstrap prints the SSM port-forwarding command to reach it.
PUBLIC_HOSTNAME="${PUBLIC_HOSTNAME:-}"
ACME_EMAIL="${ACME_EMAIL:-}"
# API URL as the browser sees it; /api keeps working when the public IP changes (stop/start).
PREFECT_UI_API_URL="${PREFECT_UI_API_URL:-/api}"
# Swap: a file of SWAP_SIZE_MB on hosts with at most SWAP_WHEN_RAM_AT_MOST_MB of RAM (0 = never).
SWAP_SIZE_MB="${SWAP_SIZE_MB:-2048}"
SWAP_WHEN_RAM_AT_MOST_MB="${SWAP_WHEN_RAM_AT_MOST_MB:-4096}"
# Rotation of every container's logs, flow-run containers included (Docker's daemon.json).
DOCKER_LOG_MAX_SIZE="${DOCKER_LOG_MAX_SIZE:-10m}"
DOCKER_LOG_MAX_FILE="${DOCKER_LOG_MAX_FILE:-3}"
# false = prepare everything but do not build or start the stack (tests; AMI baking).
START_STACK="${START_STACK:-true}"
# ---- End of settings -----------------------------------------------------------------------------

LOG_FILE=/var/log/prefect-platform-bootstrap.log
UNIT=prefect-platform.service
STEP="starting"

log() { printf '%s bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

failed() {
  log "FAILED (exit $1) during: $STEP. Nothing after this step ran; see $LOG_FILE." >&2
  log "Fix the cause, then re-run: sudo bash /var/lib/cloud/instance/user-data.txt" >&2
  exit "$1"
}
die() {
  log "ERROR: $*" >&2
  failed 1
}

service_home() { getent passwd "$SERVICE_USER" | cut -d: -f6; }
# Runs a command as the service user, with its own HOME (git and docker write config there).
as_service_user() { runuser -u "$SERVICE_USER" -- env HOME="$(service_home)" "$@"; }

install_prerequisites() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl)
  command -v git >/dev/null || missing+=(git)
  [[ -e /etc/ssl/certs/ca-certificates.crt || -e /etc/pki/tls/certs/ca-bundle.crt ]] || missing+=(ca-certificates)
  if ((${#missing[@]} == 0)); then
    log "prerequisites present (python3, curl, git, CA certificates)"
  elif command -v apt-get >/dev/null; then
    log "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  elif command -v dnf >/dev/null; then
    log "installing ${missing[*]} with dnf"
    dnf install -y "${missing[@]}"
  else
    die "missing ${missing[*]} and no apt-get or dnf to install them"
  fi
}

ensure_service_user() {
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    log "service user $SERVICE_USER exists"
  else
    useradd --system --create-home --home-dir "/var/lib/$SERVICE_USER" --shell /usr/sbin/nologin \
      --comment "prefect-platform stack" "$SERVICE_USER"
    log "created system user $SERVICE_USER (home /var/lib/$SERVICE_USER)"
  fi
  if [[ ! -d $INSTALL_DIR ]]; then
    install -d -m 0755 -o "$SERVICE_USER" -g "$SERVICE_USER" "$INSTALL_DIR"
  fi
}

fetch_git() {
  if [[ ! -d $INSTALL_DIR/.git ]]; then
    [[ -z "$(ls -A "$INSTALL_DIR")" ]] ||
      die "$INSTALL_DIR exists, is not empty and is not a git checkout: move it away or set INSTALL_DIR"
    as_service_user git init -q "$INSTALL_DIR"
    as_service_user git -C "$INSTALL_DIR" remote add origin "$REPO_URL"
  fi
  as_service_user git -C "$INSTALL_DIR" fetch -q --depth 1 origin "$REPO_REF"
  local head wanted
  head=$(as_service_user git -C "$INSTALL_DIR" rev-parse -q --verify HEAD || true)
  wanted=$(as_service_user git -C "$INSTALL_DIR" rev-parse FETCH_HEAD)
  if [[ $head == "$wanted" ]]; then
    log "code: $INSTALL_DIR already at $REPO_REF ($wanted)"
  else
    # A checkout that would overwrite local edits fails here rather than losing them.
    as_service_user git -C "$INSTALL_DIR" -c advice.detachedHead=false checkout -q --detach FETCH_HEAD
    log "code: $INSTALL_DIR now at $REPO_REF ($wanted)"
  fi
}

fetch_tarball() {
  local tmp stamp="$INSTALL_DIR/.bootstrap-tarball.sha256" sum
  tmp=$(mktemp -d)
  case "$REPO_URL" in
    s3://*)
      command -v aws >/dev/null ||
        die "REPO_URL is s3:// but the AWS CLI is missing: use a presigned https:// URL instead"
      aws s3 cp --only-show-errors "$REPO_URL" "$tmp/code.tar.gz"
      ;;
    *) curl -fsSL --retry 3 -o "$tmp/code.tar.gz" "$REPO_URL" ;;
  esac
  sum=$(sha256sum "$tmp/code.tar.gz" | cut -d' ' -f1)
  if [[ -f $stamp && "$(cat "$stamp")" == "$sum" ]]; then
    log "code: $INSTALL_DIR already holds this tarball (sha256 $sum)"
  else
    mkdir "$tmp/x"
    tar -xzf "$tmp/code.tar.gz" -C "$tmp/x"
    local src="$tmp/x" entries=("$tmp"/x/*)
    # A tarball with one top-level folder (GitHub archives, git archive --prefix) is unwrapped.
    if ((${#entries[@]} == 1)) && [[ -d ${entries[0]} ]]; then src=${entries[0]}; fi
    [[ -f $src/.env.example ]] || die "the tarball at $REPO_URL holds no .env.example: is it the platform's code?"
    # Copied over the install dir: .env and local data, which no tarball holds, are kept.
    cp -a "$src/." "$INSTALL_DIR/"
    printf '%s\n' "$sum" >"$stamp"
    chown -R "$SERVICE_USER:$SERVICE_USER" "$INSTALL_DIR"
    log "code: unpacked $REPO_URL into $INSTALL_DIR (sha256 $sum)"
  fi
  rm -rf "$tmp"
}

write_env() {
  local settings=(--set "PREFECT_BIND_ADDRESS=$PREFECT_BIND_ADDRESS" --set "PREFECT_UI_API_URL=$PREFECT_UI_API_URL"
    --force "PLATFORM_DIR=$INSTALL_DIR")
  # Only when given: an empty value here would hide the secret's.
  [[ -z $PUBLIC_HOSTNAME ]] || settings+=(--set "PUBLIC_HOSTNAME=$PUBLIC_HOSTNAME")
  [[ -z $ACME_EMAIL ]] || settings+=(--set "ACME_EMAIL=$ACME_EMAIL")
  if [[ -n $SECRET_ID ]]; then
    as_service_user python3 "$INSTALL_DIR/scripts/bootstrap/secrets-to-env" --secret-id "$SECRET_ID" \
      --env "$INSTALL_DIR/.env" --example "$INSTALL_DIR/.env.example" "${settings[@]}"
  else
    log "SECRET_ID is empty: generating every secret locally (they live only in $INSTALL_DIR/.env)"
    as_service_user python3 "$INSTALL_DIR/scripts/lib/envfile.py" ensure \
      --env "$INSTALL_DIR/.env" --example "$INSTALL_DIR/.env.example" "${settings[@]}"
  fi
}

env_get() { python3 "$INSTALL_DIR/scripts/lib/envfile.py" get "$1" --env "$INSTALL_DIR/.env"; }

# A public host name (from the user data or the secret) turns on HTTPS with Let's Encrypt, unless
# .env already names another TLS mode (internal, files). Checked here, before any heavy install.
configure_https() {
  local hostname mode
  hostname=$(env_get PUBLIC_HOSTNAME)
  mode=$(env_get TLS_MODE)
  if [[ -z $hostname ]]; then
    log "HTTPS: no PUBLIC_HOSTNAME: the UI stays on this host (TLS_MODE=${mode:-off}), reached through SSM port forwarding"
    return
  fi
  if [[ ${mode:-off} == off ]]; then
    [[ -n $(env_get ACME_EMAIL) ]] ||
      die "PUBLIC_HOSTNAME is $hostname but ACME_EMAIL is empty: set ACME_EMAIL (the Let's Encrypt account's contact) in the user data or the secret"
    as_service_user python3 "$INSTALL_DIR/scripts/lib/envfile.py" ensure --env "$INSTALL_DIR/.env" \
      --example "$INSTALL_DIR/.env.example" --force TLS_MODE=acme --force PREFECT_BIND_ADDRESS=127.0.0.1
    mode=acme
  fi
  log "HTTPS: TLS_MODE=$mode for $hostname (the security group must open 443, and 80 for redirects and ACME)"
}

ensure_docker_group() {
  getent group docker >/dev/null || groupadd --system docker
  if id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx docker; then
    log "$SERVICE_USER is in the docker group"
  else
    usermod -aG docker "$SERVICE_USER"
    log "added $SERVICE_USER to the docker group"
  fi
}

configure_log_rotation() {
  local out
  out=$(python3 "$INSTALL_DIR/scripts/bootstrap/docker-log-rotation" --file /etc/docker/daemon.json \
    --max-size "$DOCKER_LOG_MAX_SIZE" --max-file "$DOCKER_LOG_MAX_FILE")
  log "$out"
  # The engine reads daemon.json only at start; restart it only when the file changed.
  if [[ $out == *updated && -d /run/systemd/system ]] && systemctl is-active --quiet docker.service; then
    systemctl restart docker.service
    log "restarted docker.service to apply log rotation"
  fi
}

ui_url() {
  local ip port hostname id
  hostname=$(env_get PUBLIC_HOSTNAME)
  if [[ $(env_get TLS_MODE) != off && -n $hostname ]]; then
    port=$(env_get HTTPS_HOST_PORT)
    if [[ ${port:-443} == 443 ]]; then printf 'https://%s' "$hostname"; else printf 'https://%s:%s' "$hostname" "$port"; fi
    return
  fi
  port=$(env_get PREFECT_HOST_PORT)
  port=${port:-4200}
  case "$(env_get PREFECT_BIND_ADDRESS)" in
    127.0.0.1 | localhost | ::1 | "")
      id=$(python3 "$INSTALL_DIR/scripts/bootstrap/imds.py" instance-id 2>/dev/null || true)
      printf 'http://localhost:%s through SSM port forwarding, from your machine: ' "$port"
      printf 'aws ssm start-session --target %s --document-name AWS-StartPortForwardingSession' "${id:-<instance-id>}"
      printf ' --parameters portNumber=%s,localPortNumber=%s' "$port" "$port"
      ;;
    *)
      ip=$(python3 "$INSTALL_DIR/scripts/bootstrap/imds.py" public-ipv4 2>/dev/null || true)
      [[ -n $ip ]] || ip=$(hostname -I 2>/dev/null | awk '{print $1}')
      printf 'http://%s:%s' "${ip:-<this-host>}" "$port"
      ;;
  esac
}

main() {
  set -E
  trap 'failed $?' ERR
  log "bootstrap of prefect-platform: repo $REPO_URL ref $REPO_REF into $INSTALL_DIR"

  STEP="installing prerequisites"
  install_prerequisites
  STEP="creating the service user"
  ensure_service_user
  STEP="fetching the code from $REPO_URL"
  case "$REPO_URL" in
    *.tar.gz | *.tgz | *.tar.gz\?* | *.tgz\?*) fetch_tarball ;;
    *) fetch_git ;;
  esac
  # Secrets come before any heavy install: a wrong SECRET_ID or role fails within seconds.
  STEP="writing $INSTALL_DIR/.env${SECRET_ID:+ from Secrets Manager}"
  write_env
  STEP="configuring HTTPS"
  configure_https
  STEP="installing Docker"
  "$INSTALL_DIR/scripts/bootstrap/install-docker"
  ensure_docker_group
  STEP="configuring swap"
  if ((SWAP_WHEN_RAM_AT_MOST_MB > 0)); then
    "$INSTALL_DIR/scripts/bootstrap/ensure-swap" "$SWAP_SIZE_MB" "$SWAP_WHEN_RAM_AT_MOST_MB"
  fi
  STEP="configuring Docker log rotation"
  configure_log_rotation
  STEP="installing the systemd unit"
  "$INSTALL_DIR/scripts/bootstrap/install-systemd-unit" "$INSTALL_DIR" "$SERVICE_USER"
  STEP="installing the daily backup timer"
  "$INSTALL_DIR/scripts/bootstrap/install-backup-timer" "$INSTALL_DIR" "$SERVICE_USER"

  if [[ $START_STACK == true ]]; then
    STEP="starting the stack (scripts/up)"
    cd "$INSTALL_DIR"
    as_service_user ./scripts/up
    # The stack already runs; starting the unit marks it active so shutdown stops it cleanly.
    if [[ -d /run/systemd/system ]]; then systemctl start "$UNIT"; fi
  else
    log "START_STACK=$START_STACK: stack not started (start it with: systemctl start $UNIT)"
  fi
  STEP="done"
  log "bootstrap complete. Prefect UI: $(ui_url)"
  log "UI login: type user:password, the whole value of PREFECT_API_AUTH_STRING in $INSTALL_DIR/.env;" \
    "read it with: sudo grep ^PREFECT_API_AUTH_STRING= $INSTALL_DIR/.env"
}

# Every line goes to the log file and to stdout (cloud-init's output log). The pipeline keeps
# main's exit status, so cloud-init reports a failed bootstrap as failed.
if [[ $(id -u) -ne 0 ]]; then
  echo "bootstrap: ERROR: run as root (cloud-init does; on a host: sudo bash $0)" >&2
  exit 1
fi
touch "$LOG_FILE" && chmod 0640 "$LOG_FILE"
main "$@" 2>&1 | tee -a "$LOG_FILE"
exit "${PIPESTATUS[0]}"
