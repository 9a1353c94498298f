"""./scripts/upgrade [REF]: one command from the running release to REF, and back again on any failure.

    ./scripts/upgrade              the newest tag of the remote (git fetch --tags origin)
    ./scripts/upgrade v0.3.0       a tag, branch or commit
    ./scripts/upgrade --dry-run    what would change: commits, image inputs, locked versions, migrations

Steps: refuse unless the checkout is clean and the stack healthy with no flow run in progress ->
stop the worker (no new runs) -> ./scripts/backup -> tag the current images `:previous` -> check out
REF -> build -> stop the server and run Prefect's migrations (no statement timeout; the whole step
gets --migration-timeout, default an hour) -> ./scripts/up of REF (new settings merged into .env,
wait for health) -> run the platform-check/self-check deployment.
On a failure after the backup: the previous commit is checked out again, its images re-tagged from
`:previous`, and, once the database may have changed (migrations began), the backup is restored,
so the stack runs the previous release with its data; then the command exits 1 naming the failed
step. After a success, this project's old dangling images and Docker's build cache older than a
week are pruned (UPGRADE_PRUNE_BUILD_CACHE=false keeps the cache).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.lib import backup, restore
from scripts.lib.s3 import S3Error
from scripts.lib.stack import OpsError, Stack, elapsed, exclusive, say

SELF_CHECK = "platform-check/self-check"
PREVIOUS_TAG = "previous"
LOCKED = re.compile(r'^\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', re.MULTILINE)
IMAGE_INPUTS = ("docker/", "services/", "scripts/lib/", "pyproject.toml", "uv.lock", "docker-compose.yml")


def log(message: str) -> None:
    say("upgrade", message)


class UpgradeFailed(OpsError):
    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step}: {cause}")
        self.step = step


def previous_name(image: str) -> str:
    """registry/name:tag -> registry/name:previous (the tag after the last '/' only)."""
    name = image.rsplit("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return f"{name}:{PREVIOUS_TAG}"


def locked_versions(lock_text: str) -> dict[str, str]:
    return dict(LOCKED.findall(lock_text))


def version_changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changes = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changes.append(f"{name} {old or '(new)'} -> {new or '(removed)'}")
    return changes


@dataclass
class Plan:
    current: str
    target: str
    branch: str  # the branch checked out now ("" when detached): a rollback returns to it
    ref: str
    commits: list[str] = field(default_factory=list)
    image_inputs_changed: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    prefect: tuple[str, str] = ("", "")


def resolve_ref(stack: Stack, ref: str | None) -> str:
    if ref:
        return ref
    remote = stack.git("remote")
    if "origin" not in remote.split():
        raise OpsError("no REF given and this checkout has no remote 'origin': name a tag or commit")
    log("fetching tags from origin")
    stack.run(["git", "fetch", "--quiet", "--tags", "origin"], timeout=300)
    listed = stack.run(
        ["git", "ls-remote", "--tags", "--refs", "--sort=-v:refname", "origin"], timeout=120
    ).stdout
    tags = [line.split("refs/tags/", 1)[1] for line in listed.splitlines() if "refs/tags/" in line]
    if not tags:
        raise OpsError("origin has no tags: name the commit to upgrade to")
    return tags[0]


def make_plan(stack: Stack, ref: str | None) -> Plan:
    if not stack.git("rev-parse", "--git-dir"):
        raise OpsError(f"{stack.root} is not a git checkout: an upgrade checks out another commit")
    ref = resolve_ref(stack, ref)
    target = stack.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if not target:
        stack.run(["git", "fetch", "--quiet", "origin", ref], check=False, timeout=300)
        target = stack.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") or stack.git(
            "rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"
        )
    if not target:
        raise OpsError(f"{ref!r} is no tag, branch or commit here or on origin")
    current = stack.git("rev-parse", "HEAD")
    plan = Plan(
        current=current, target=target, branch=stack.git("symbolic-ref", "-q", "--short", "HEAD"), ref=ref
    )
    plan.commits = stack.git(
        "log", "--oneline", "--no-decorate", "-n", "30", f"{current}..{target}"
    ).splitlines()
    changed = stack.git("diff", "--name-only", current, target, "--", *IMAGE_INPUTS).splitlines()
    plan.image_inputs_changed = changed
    before = locked_versions(stack.git("show", f"{current}:uv.lock"))
    after = locked_versions(stack.git("show", f"{target}:uv.lock"))
    plan.versions = version_changes(before, after)
    plan.prefect = (before.get("prefect", "?"), after.get("prefect", "?"))
    return plan


def describe(plan: Plan, revision: str) -> list[str]:
    short = plan.target[:12]
    lines = [f"from {plan.current[:12]} to {plan.ref} ({short}): {len(plan.commits)} commit(s)"]
    lines += [f"  {commit}" for commit in plan.commits]
    if plan.image_inputs_changed:
        lines.append(
            f"images are rebuilt: {len(plan.image_inputs_changed)} file(s) they are built from changed"
        )
        lines += [f"  {path}" for path in plan.image_inputs_changed[:20]]
    else:
        lines.append("no image input changed: the rebuild reuses every cached layer")
    lines.append(
        "locked versions: " + ("unchanged" if not plan.versions else f"{len(plan.versions)} change(s)")
    )
    lines += [f"  {change}" for change in plan.versions]
    old, new = plan.prefect
    if old == new:
        lines.append(f"database migrations: none (Prefect stays {old}; database at revision {revision})")
    else:
        lines.append(
            f"database migrations: Prefect {old} -> {new}: prefect-migrate applies its new revisions to the "
            f"database (now at {revision}); a big database can take many minutes"
        )
    return lines


def tag_previous(stack: Stack, images: dict[str, str]) -> tuple[list[str], list[str]]:
    """Tags every built image that exists `:previous`; returns (images tagged, the image ids the old
    `:previous` tags pointed at). Images of profiles never started (the proxy without TLS) are absent."""
    tagged, replaced = [], []
    for image in sorted(set(images.values())):
        if not stack.image_exists(image):
            continue
        previous = previous_name(image)
        old = stack.run(["docker", "image", "inspect", "-f", "{{.Id}}", previous], check=False).stdout.strip()
        if old:
            replaced.append(old)
        stack.run(["docker", "tag", image, previous])
        tagged.append(image)
    if not tagged:
        raise OpsError("none of the stack's images exists: run ./scripts/up first")
    return tagged, replaced


def retag_previous(stack: Stack, images: list[str]) -> None:
    for image in images:
        stack.run(["docker", "tag", previous_name(image), image])


def checkout(stack: Stack, commit: str, branch: str = "") -> None:
    if branch and stack.git("rev-parse", branch) == commit:
        stack.run(["git", "checkout", "--quiet", branch])
    else:
        stack.run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit])
    stack.reload()


def prune(stack: Stack, replaced: list[str]) -> None:
    """What upgrades leave behind: the release before the previous one, dangling builds, old cache."""
    for image_id in replaced:
        stack.run(["docker", "image", "rm", image_id], check=False)  # refused while in use: fine
    label = f"label=com.docker.compose.project={stack.project}"
    stack.run(["docker", "image", "prune", "--force", "--filter", label], check=False)
    if stack.setting("UPGRADE_PRUNE_BUILD_CACHE", "true").lower() != "false":
        stack.run(
            ["docker", "builder", "prune", "--force", "--filter", "until=168h"], check=False, timeout=600
        )


def upgrade(stack: Stack, plan: Plan, migration_timeout: float, timeout: float) -> Path:
    """Runs the upgrade (the caller holds `exclusive`); returns the pre-upgrade backup's path."""
    started = time.monotonic()
    running = stack.running()
    if "prefect-server" not in running or "postgres" not in running:
        raise OpsError("the stack is not running: start it (./scripts/up) and upgrade from a healthy stack")
    busy = stack.busy_flow_runs()
    if busy:
        raise OpsError(f"flow runs are in progress ({', '.join(busy)}): wait for them, then upgrade")
    images = stack.built_images()
    worker_was_running = "prefect-worker" in running
    log("stopping the worker: no new flow run starts during the upgrade")
    stack.compose("stop", "-t", "30", "prefect-worker")
    try:
        log("backing up first (./scripts/backup)")
        archive = backup.run(stack)
        log(f"backup: {archive}")
        tagged, replaced = tag_previous(stack, images)
    except BaseException:
        if worker_was_running:
            stack.wait_healthy([], timeout)
        raise
    log(f"current images tagged :{PREVIOUS_TAG}: {', '.join(tagged)}")
    database_touched = False
    step = "checking out the new code"
    try:
        log(f"checking out {plan.ref} ({plan.target[:12]})")
        checkout(stack, plan.target)
        step = "building the images"
        log("building the images")
        stack.compose("build", "--quiet", timeout=3600)
        step = "migrating the database"
        log("stopping the server and migrating Prefect's database (no statement timeout)")
        stack.compose("stop", "-t", "30", "prefect-server")
        database_touched = True
        migrate = stack.compose("run", "--rm", "prefect-migrate", check=False, timeout=migration_timeout)
        if migrate.returncode != 0:
            raise OpsError(
                f"prefect-migrate exited {migrate.returncode}: {(migrate.stdout + migrate.stderr)[-1500:]}"
            )
        step = "starting the new release"
        log("starting the new release (./scripts/up --no-build of the new code)")
        restore.start_stack(stack, timeout)
        step = "running the self-check"
        log(f"running {SELF_CHECK}")
        result = stack.ops_json("run-deployment", SELF_CHECK, "--timeout", "600", timeout=900)
        if result["state"] != "COMPLETED":
            raise OpsError(f"{SELF_CHECK} ended {result['state']}: {result.get('message')}")
    except BaseException as exc:
        log(f"FAILED while {step}: {exc}")
        try:
            _roll_back(stack, plan, tagged, archive if database_touched else None, timeout)
        except BaseException as rollback_exc:
            raise OpsError(
                f"the upgrade failed while {step} ({exc}) and so did the rollback ({rollback_exc}). "
                f"By hand: git checkout {plan.branch or plan.current}; "
                + "; ".join(f"docker tag {previous_name(i)} {i}" for i in tagged)
                + f"; ./scripts/restore {archive}"
            ) from None
        raise UpgradeFailed(step, exc) from None
    log(f"upgraded to {plan.ref} in {elapsed(started)}; pruning old images")
    prune(stack, replaced)
    return archive


def _roll_back(stack: Stack, plan: Plan, images: list[str], archive: Path | None, timeout: float) -> None:
    log(f"rolling back to {plan.current[:12]}")
    stack.compose("down", "-t", "30", "--remove-orphans", check=False)
    checkout(stack, plan.current, plan.branch)
    retag_previous(stack, images)
    log("previous images tagged back in place")
    if archive is not None:
        log(f"restoring the pre-upgrade database and data from {archive}")
        restore.restore(stack, archive, timeout)
    else:
        restore.start_stack(stack, timeout)
    log("rolled back: the previous release runs with its data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./scripts/upgrade", description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", nargs="?", help="tag, branch or commit (default: the newest tag of origin)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    parser.add_argument("--migration-timeout", type=float, default=3600, help="seconds for migrations (3600)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for health (900)")
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        with exclusive(stack, "upgrade"):
            plan = make_plan(stack, args.ref)
            revision = (
                stack.alembic_revision() if "postgres" in stack.running() else "unknown (stack stopped)"
            )
            for line in describe(plan, revision):
                log(line)
            if args.dry_run:
                print(plan.target)
                return 0
            if plan.target == plan.current:
                log(f"already at {plan.ref}: nothing to do")
                print(plan.target)
                return 0
            if stack.git("status", "--porcelain", "--untracked-files=no"):
                raise OpsError("the checkout has local changes to tracked files: commit or stash them first")
            upgrade(stack, plan, args.migration_timeout, args.timeout)
    except UpgradeFailed as exc:
        log(f"FAILED at {exc}")
        log("rolled back: the previous release runs with its data")
        return 1
    except (OpsError, S3Error, OSError, subprocess.TimeoutExpired) as exc:
        log(f"FAILED: {exc}")
        return 1
    print(plan.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
