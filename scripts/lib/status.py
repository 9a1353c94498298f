"""./scripts/status: is the platform healthy? One screen, exit 0 when it is, 1 with the reasons if not.

    ./scripts/status           a line per check, then `status: healthy` or `status: UNHEALTHY: ...`
    ./scripts/status --json    the same as one JSON object (checks, problems, raw facts)

Checks (fail = exit 1; warn = shown, exit 0):
  services     every service of the stack running and healthy, one-shots exited 0
  versions     Prefect (image and server), Postgres, the checkout's commit
  worker       the work pool ready, a worker online whose last heartbeat is recent (polling)
  runs         flow runs of the last 24 h by state (failed or crashed ones: warn)
  late/stuck   runs Late for over 5 min, Running longer than STATUS_STUCK_RUN_HOURS, Pending or
               Cancelling for over 15 min
  deployments  each deployment's last run (informational)
  database     size and biggest tables
  disk         the data volume's size and the free space on Docker's disk (fail under 5% or 1 GiB)
  backup       age of the newest archive in BACKUP_DIR against BACKUP_MAX_AGE_HOURS
  tls          days until the proxy's certificate expires, when TLS_MODE is on
Facts from inside the stack come from `prefect-ops probe` (services/ops/probe.py), Postgres's from
psql; judging them is `evaluate`, a pure function.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from scripts.lib.archive import archive_time, list_archives
from scripts.lib.stack import OpsError, Stack

LATE_AFTER_SECONDS = 300
PENDING_AFTER_SECONDS = 900
HEARTBEAT_STALE_SECONDS = 120
DISK_FAIL_FRACTION, DISK_FAIL_BYTES, DISK_WARN_FRACTION = 0.05, 1 << 30, 0.15
TLS_FAIL_DAYS, TLS_WARN_DAYS = 7, 21
DB_SQL = (
    "SELECT json_build_object('version', current_setting('server_version'),"
    " 'bytes', pg_database_size(current_database()),"
    " 'alembic_revision', (SELECT version_num FROM alembic_version),"
    " 'tables', (SELECT json_agg(t) FROM (SELECT c.relname AS name, pg_total_relation_size(c.oid) AS bytes"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
    " AND n.nspname = 'public' ORDER BY 2 DESC LIMIT 5) t))"
)


@dataclass
class Check:
    name: str
    level: str  # ok | warn | fail | info
    summary: str
    details: list[str] = field(default_factory=list)


@dataclass
class Limits:
    backup_max_age_hours: int = 26
    stuck_run_hours: int = 4


def human(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "?"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.1f} {unit} ago" if unit != "min" else f"{seconds / span:.0f} min ago"
    return f"{seconds:.0f} s ago"


# --- collecting ------------------------------------------------------------------------------------
def _parse_time(text: str) -> datetime | None:
    text = text.strip().replace("Z", "+00:00")
    for candidate in (text, text[:19] + text[-6:] if len(text) > 25 else text):
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def tls_days_left(host: str, port: int, server_name: str, timeout: float = 5) -> float:
    """Days until the certificate served at host:port for server_name expires (not verified: we only
    read its date; a private CA is fine)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    # Nested, not parenthesized: Amazon Linux 2023's Python 3.9 runs this.
    with socket.create_connection((host, port), timeout=timeout) as raw:  # noqa: SIM117
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError("no certificate presented")
    return (der_not_after(der) - datetime.now(timezone.utc)).total_seconds() / 86400  # noqa: UP017


def _der(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``offset``."""
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return tag, offset, offset + length


def der_not_after(der: bytes) -> datetime:
    """notAfter of an X.509 certificate: Certificate > tbsCertificate > validity > notAfter."""
    _, cert, _ = _der(der, 0)
    _, tbs, _ = _der(der, cert)
    position = tbs
    tag, start, end = _der(der, position)
    if tag == 0xA0:  # explicit version
        position = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, position = _der(der, position)
    _, validity, _ = _der(der, position)
    _, _, after_not_before = _der(der, validity)
    tag, start, end = _der(der, after_not_before)
    text = der[start:end].decode()
    layout = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    return datetime.strptime(text, layout).replace(tzinfo=timezone.utc)  # noqa: UP017


def collect(stack: Stack) -> dict[str, Any]:
    facts: dict[str, Any] = {"project": stack.project, "time": datetime.now(timezone.utc).isoformat()}  # noqa: UP017
    config = stack.config()["services"]
    rows = stack.ps()
    facts["services"] = {
        name: {
            **rows.get(name, {"state": "missing", "health": "", "exit_code": None}),
            "one_shot": svc.get("restart") in (None, "no"),
            "healthcheck": bool(svc.get("healthcheck")) and not svc["healthcheck"].get("disable"),
        }
        for name, svc in config.items()
    }
    facts["commit"] = stack.git("describe", "--tags", "--always", "--dirty") or None
    running = stack.running(rows)
    facts["database"] = json.loads(stack.psql(DB_SQL)) if "postgres" in running else None
    try:
        facts["probe"] = stack.ops_json("probe", timeout=180)
    except (OpsError, subprocess.TimeoutExpired) as exc:
        facts["probe"] = {"error": str(exc)[:500]}
    archives = list_archives(stack.path_setting("BACKUP_DIR", "backups"), stack.project)
    newest = archives[-1] if archives else None
    when = archive_time(newest) if newest else None
    facts["backup"] = {
        "newest": str(newest) if newest else None,
        "age_seconds": (datetime.now(timezone.utc) - when).total_seconds() if when else None,  # noqa: UP017
        "bytes": newest.stat().st_size if newest else None,
        "count": len(archives),
    }
    volume = stack.volume_name("postgres-data")
    created = stack.run(["docker", "volume", "inspect", "-f", "{{.CreatedAt}}", volume], check=False).stdout
    created_at = _parse_time(created) if created.strip() else None
    facts["stack_age_seconds"] = (
        (datetime.now(timezone.utc) - created_at).total_seconds() if created_at else None  # noqa: UP017
    )
    tls_mode = stack.setting("TLS_MODE", "off")
    facts["tls"] = {"mode": tls_mode}
    if tls_mode != "off":
        try:
            port = int(stack.setting("HTTPS_HOST_PORT", "443"))
            facts["tls"]["days_left"] = tls_days_left("127.0.0.1", port, stack.setting("PUBLIC_HOSTNAME"))
        except (OSError, ValueError) as exc:
            facts["tls"]["error"] = str(exc)
    return facts


# --- judging -----------------------------------------------------------------------------------------
def _services(facts: dict[str, Any]) -> Check:
    bad, good = [], []
    for name, row in sorted(facts["services"].items()):
        if row["one_shot"]:
            if row["state"] == "exited" and row["exit_code"] == 0:
                continue
            if row["state"] == "running":  # a one-shot at work (an `up` in progress)
                good.append(f"{name} running")
                continue
            bad.append(
                f"{name} {row['state']}" + (f" (exit {row['exit_code']})" if row["state"] == "exited" else "")
            )
        elif row["state"] != "running":
            bad.append(f"{name} {row['state']}")
        elif row["healthcheck"] and row["health"] != "healthy":
            bad.append(f"{name} {row['health'] or 'without health'}")
        else:
            good.append(f"{name} up" + (" (healthy)" if row["healthcheck"] else ""))
    if bad:
        return Check("services", "fail", "; ".join(bad))
    return Check("services", "ok", ", ".join(good) + "; one-shots completed")


def _versions(facts: dict[str, Any]) -> Check:
    probe = facts.get("probe") or {}
    database = facts.get("database") or {}
    parts = [
        f"Prefect {probe.get('prefect_version', '?')} (server {probe.get('server_version', '?')})",
        f"Postgres {str(database.get('version', '?')).split(' ')[0]}",
        f"commit {facts.get('commit') or '? (not a git checkout)'}",
    ]
    if database.get("alembic_revision"):
        parts.append(f"schema {database['alembic_revision']}")
    return Check("versions", "info", ", ".join(parts))


def _api_problem(probe: dict[str, Any]) -> str | None:
    if probe.get("error"):
        return f"prefect-ops probe failed: {probe['error']}"
    if probe.get("api_error"):
        return f"the API does not answer: {probe['api_error']}"
    return None


def _worker(facts: dict[str, Any]) -> Check:
    probe = facts.get("probe") or {}
    problem = _api_problem(probe)
    if problem:
        return Check("worker", "fail", problem)
    pool = probe["work_pool"]
    online = [
        w
        for w in probe["workers"]
        if w["status"] == "ONLINE" and (w["heartbeat_age_seconds"] or 1e9) < HEARTBEAT_STALE_SECONDS
    ]
    seen = ", ".join(
        f"{w['name']} {w['status']} (heartbeat {ago(w['heartbeat_age_seconds'])})" for w in probe["workers"]
    )
    if pool.get("paused"):
        return Check(
            "worker", "fail", f"work pool {pool['name']} is paused: no run starts (resume it in the UI)"
        )
    if not online:
        return Check("worker", "fail", f"no worker polls {pool['name']}: {seen or 'none ever registered'}")
    return Check("worker", "ok", f"{pool['name']} {pool['status']}; {seen}")


def _runs(facts: dict[str, Any]) -> Check:
    probe = facts.get("probe") or {}
    if _api_problem(probe):
        return Check("runs", "info", "unknown (API not reachable)")
    counts = probe["runs_24h"]
    text = ", ".join(f"{n} {state}" for state, n in counts.items()) or "none"
    failed = sum(n for state, n in counts.items() if state in ("Failed", "Crashed", "TimedOut"))
    level = "warn" if failed else "ok"
    return Check("runs", level, f"last 24 h: {text}" + (f" ({failed} failed: see the UI)" if failed else ""))


def _late_and_stuck(facts: dict[str, Any], limits: Limits) -> Check:
    probe = facts.get("probe") or {}
    if _api_problem(probe):
        return Check("late/stuck", "info", "unknown (API not reachable)")
    problems = []

    def label(run: dict[str, Any]) -> str:
        return f"{run['deployment'] or 'no deployment'}: run {run['name']}"

    for run in probe["late_runs"]["runs"]:
        if (run["expected_start_age_seconds"] or 0) > LATE_AFTER_SECONDS:
            problems.append(f"{label(run)} Late, due {ago(run['expected_start_age_seconds'])}")
    for run in probe["unfinished_runs"]:
        state_age = run["state_age_seconds"] or 0
        if run["state"] == "Running" and (run["start_age_seconds"] or 0) > limits.stuck_run_hours * 3600:
            problems.append(f"{label(run)} Running, started {ago(run['start_age_seconds'])}")
        elif run["state"] in ("Pending", "Cancelling") and state_age > PENDING_AFTER_SECONDS:
            problems.append(f"{label(run)} {run['state']} since {ago(state_age)}")
    if problems:
        return Check("late/stuck", "fail", f"{len(problems)} run(s) not progressing", problems)
    unfinished = len(probe["unfinished_runs"])
    return Check("late/stuck", "ok", "none" + (f" ({unfinished} run(s) in progress)" if unfinished else ""))


def _deployments(facts: dict[str, Any]) -> Check:
    probe = facts.get("probe") or {}
    if _api_problem(probe):
        return Check("deployments", "info", "unknown (API not reachable)")
    lines = []
    for item in probe["last_runs"]:
        run = item["last_run"]
        when = ago(run["start_age_seconds"] or run["expected_start_age_seconds"]) if run else ""
        lines.append(f"{item['deployment']}: " + (f"{run['state']} {when}" if run else "never ran"))
    return Check("deployments", "info", f"{len(lines)} deployment(s), last runs below", lines)


def _database(facts: dict[str, Any]) -> Check:
    database = facts.get("database")
    if not database:
        return Check("database", "fail", "Postgres is not running")
    tables = ", ".join(f"{t['name']} {human(t['bytes'])}" for t in database.get("tables") or [])
    return Check("database", "info", f"{human(database['bytes'])}; biggest tables: {tables}")


def _disk(facts: dict[str, Any]) -> Check:
    volume = (facts.get("probe") or {}).get("data_volume") or {}
    if "disk_total_bytes" not in volume:
        return Check("disk", "warn", f"unknown ({volume.get('error') or 'the probe did not run'})")
    free, total = volume["disk_free_bytes"], volume["disk_total_bytes"]
    fraction = free / total if total else 0
    summary = f"data volume {human(volume['bytes'])}; {human(free)} free of {human(total)} ({fraction:.0%})"
    details = [
        f"an interrupted restore left {name} on the data volume"
        for name in volume.get("restore_leftovers", [])
    ]
    if fraction < DISK_FAIL_FRACTION or free < DISK_FAIL_BYTES:
        return Check("disk", "fail", f"disk almost full: {summary}", details)
    if fraction < DISK_WARN_FRACTION or details:
        return Check("disk", "warn", summary, details)
    return Check("disk", "ok", summary)


def _backup(facts: dict[str, Any], limits: Limits) -> Check:
    backup = facts["backup"]
    if limits.backup_max_age_hours == 0:
        return Check("backup", "info", f"not checked (BACKUP_MAX_AGE_HOURS=0); {backup['count']} archive(s)")
    limit = limits.backup_max_age_hours * 3600
    if backup["newest"] is None:
        young = facts.get("stack_age_seconds") is not None and facts["stack_age_seconds"] < limit
        if young:
            return Check("backup", "ok", "none yet (the stack is younger than BACKUP_MAX_AGE_HOURS)")
        return Check(
            "backup", "fail", "no backup in BACKUP_DIR: run ./scripts/backup (and schedule it, README)"
        )
    summary = f"newest {ago(backup['age_seconds'])} ({human(backup['bytes'])}, {backup['count']} kept)"
    if backup["age_seconds"] > limit:
        return Check(
            "backup", "fail", f"last good backup is too old: {summary}; limit {limits.backup_max_age_hours} h"
        )
    return Check("backup", "ok", summary)


def _tls(facts: dict[str, Any]) -> Check:
    tls = facts["tls"]
    if tls["mode"] == "off":
        return Check("tls", "info", "off (TLS_MODE=off)")
    if "days_left" not in tls:
        return Check(
            "tls", "fail", f"TLS_MODE={tls['mode']} but no certificate could be read: {tls.get('error')}"
        )
    days = tls["days_left"]
    level = "fail" if days < TLS_FAIL_DAYS else "warn" if days < TLS_WARN_DAYS else "ok"
    return Check("tls", level, f"certificate expires in {days:.0f} days ({tls['mode']})")


def evaluate(facts: dict[str, Any], limits: Limits) -> list[Check]:
    return [
        _services(facts),
        _versions(facts),
        _worker(facts),
        _runs(facts),
        _late_and_stuck(facts, limits),
        _deployments(facts),
        _database(facts),
        _disk(facts),
        _backup(facts, limits),
        _tls(facts),
    ]


def render(checks: list[Check], facts: dict[str, Any]) -> list[str]:
    lines = [f"prefect-platform status: project {facts['project']}, {facts['time'][:19]}Z"]
    for check in checks:
        mark = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "--"}[check.level]
        lines.append(f"  {check.name:<12} {mark:<5} {check.summary}")
        lines += [f"  {'':<12} {'':<5}   {detail}" for detail in check.details]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the screen")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stack = Stack()
    try:
        limits = Limits(
            backup_max_age_hours=stack.int_setting("BACKUP_MAX_AGE_HOURS", 26),
            stuck_run_hours=stack.int_setting("STATUS_STUCK_RUN_HOURS", 4, minimum=1),
        )
        facts = collect(stack)
    except (OpsError, OSError, subprocess.TimeoutExpired) as exc:
        problems = [f"cannot collect the status: {exc}"]
        print(
            json.dumps({"healthy": False, "problems": problems})
            if args.json
            else f"status: UNHEALTHY: {problems[0]}"
        )
        return 1
    checks = evaluate(facts, limits)
    problems = [
        f"{c.name}: {c.summary}" + (f" ({'; '.join(c.details)})" if c.details else "")
        for c in checks
        if c.level == "fail"
    ]
    facts["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(
            json.dumps(
                {
                    "healthy": not problems,
                    "problems": problems,
                    "checks": [asdict(c) for c in checks],
                    "facts": facts,
                }
            )
        )
    else:
        print("\n".join(render(checks, facts)))
        print("status: healthy" if not problems else "status: UNHEALTHY: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
