"""ec2-userdata.sh run for real inside a Debian 12 container, as cloud-init would run it.

Real: the script, every helper it calls, git, useradd, systemd (PID 1) and its unit handling,
IMDSv2 (a local fake that enforces tokens) and Secrets Manager (moto), both on loopback.
Not real: the Docker engine (none can run nested here): a recording test double answers
`docker version` / `docker compose version` (so the "already installed" detection path runs)
and logs what the systemd unit asks of it. The stack itself is therefore not started
(START_STACK=false); tests/e2e covers `scripts/up` on a real engine.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scripts.bootstrap.conftest import REGION, closed_port, create_secret
from tests.scripts.bootstrap.container_host import ContainerHost, build_image
from tests.scripts.bootstrap.fake_imds import FakeImds, InstanceMetadata
from tests.scripts.bootstrap.test_install_docker import COMPOSE_VERSION
from tests.support import REPO

pytestmark = pytest.mark.bootstrap

INSTALL_DIR = "/opt/prefect-platform"
LOG = "/var/log/prefect-platform-bootstrap.log"


def make_fixture_repo(target: Path) -> str:
    """The working tree as a git repo (branch main) plus a tarball of it; returns the commit."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    present = [f.decode() for f in files if f and (REPO / f.decode()).is_file()]
    repo = target / "repo"
    repo.mkdir(parents=True)
    pack = subprocess.run(["tar", "-cf", "-", "-C", str(REPO), *present], capture_output=True, check=True)
    subprocess.run(["tar", "-xf", "-", "-C", str(repo)], input=pack.stdout, check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fixture"], check=True)
    subprocess.run(
        ["tar", "-czf", str(target / "repo.tar.gz"), "--exclude=.git", "-C", str(target), "repo"], check=True
    )
    subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def image(docker_engine: None) -> str:
    return build_image()


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    target = tmp_path_factory.mktemp("bootstrap-src")
    return target, make_fixture_repo(target)


@pytest.fixture(scope="module")
def module_imds() -> Iterator[FakeImds]:
    with FakeImds(InstanceMetadata(region=REGION)) as server:
        yield server


@pytest.fixture(scope="module")
def secret(secrets_client) -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    # POSTGRES_PASSWORD is left out on purpose: the bootstrap must generate it.
    values = {
        "PREFECT_API_AUTH_STRING": f"admin:ui-{uuid.uuid4().hex}",
        "SNOWFLAKE_PASSWORD": f"sf-{uuid.uuid4().hex}",
    }
    return create_secret(secrets_client, f"prefect-platform/test-{uuid.uuid4().hex[:8]}", values), values


def userdata_env(imds_endpoint: str, moto_endpoint: str, secret_id: str, **extra: str) -> dict[str, str]:
    env = {
        "REPO_URL": "file:///src/repo",
        "REPO_REF": "main",
        "SECRET_ID": secret_id,
        "START_STACK": "false",
        # The test machine has more RAM than a t3.small: raise the threshold so the swap path runs.
        "SWAP_WHEN_RAM_AT_MOST_MB": "100000000",
        "SWAP_SIZE_MB": "64",
        "IMDS_ENDPOINT": imds_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
    }
    env.update(extra)
    return env


def parse_env(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", text, re.M))


@pytest.fixture(scope="module")
def host(
    request: pytest.FixtureRequest,
    image: str,
    fixture_repo: tuple[Path, str],
) -> Iterator[ContainerHost]:
    box = ContainerHost(image, fixture_repo[0], systemd=True)
    # An admin's existing engine setting that the bootstrap must keep.
    box.sh('mkdir -p /etc/docker && echo \'{"data-root": "/var/lib/docker"}\' > /etc/docker/daemon.json')
    yield box
    if request.module.__dict__.get("_any_test_failed"):
        print(f"\n--- {box.name}: bootstrap log and journal ---\n{box.logs()}")
    box.remove()


@pytest.fixture(scope="module")
def first_run(
    host: ContainerHost, module_imds: FakeImds, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> subprocess.CompletedProcess[str]:
    return host.run_userdata(userdata_env(module_imds.endpoint, moto_endpoint, secret[0]))


def test_first_run_succeeds_and_logs_the_ui_url(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    log = host.read(LOG)
    # No PUBLIC_HOSTNAME: plain HTTP stays on loopback, reached through SSM (instance id from IMDS).
    assert (
        "bootstrap complete. Prefect UI: http://localhost:4200 through SSM port forwarding, from your"
        " machine: aws ssm start-session --target i-0123456789abcdef0 --document-name"
        " AWS-StartPortForwardingSession --parameters portNumber=4200,localPortNumber=4200"
    ) in log
    assert "HTTPS: no PUBLIC_HOSTNAME" in log
    assert "sudo grep ^PREFECT_API_AUTH_STRING= /opt/prefect-platform/.env" in log
    assert "START_STACK=false: stack not started" in log


def test_docker_is_detected_not_reinstalled(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    log = host.read(LOG)
    assert f"install-docker: found Docker 27.3.1 and Compose {COMPOSE_VERSION}: nothing to install" in log
    assert "install-docker: Docker Engine 27.3.1 is running" in log
    assert "apt-get" not in log and "Docker not found" not in log


def test_env_holds_the_secret_generated_values_and_ec2_settings(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost, secret: tuple[str, dict[str, str]]
) -> None:
    assert host.sh(f"stat -c '%a %U %G' {INSTALL_DIR}/.env").stdout.strip() == "600 prefect prefect"
    env = parse_env(host.read(f"{INSTALL_DIR}/.env"))
    example = parse_env(host.read(f"{INSTALL_DIR}/.env.example"))
    assert set(example) <= set(env)
    assert env["PREFECT_API_AUTH_STRING"] == secret[1]["PREFECT_API_AUTH_STRING"]
    assert env["SNOWFLAKE_PASSWORD"] == secret[1]["SNOWFLAKE_PASSWORD"]
    assert re.fullmatch(r"[0-9a-f]{48}", env["POSTGRES_PASSWORD"]), "missing secret was not generated"
    assert (env["PREFECT_BIND_ADDRESS"], env["TLS_MODE"]) == ("127.0.0.1", "off")
    assert env["PREFECT_UI_API_URL"] == "/api"
    assert env["PLATFORM_DIR"] == INSTALL_DIR
    assert not [k for k, v in env.items() if "__GENERATE__" in v]


def test_no_secret_value_reaches_any_log(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost, secret: tuple[str, dict[str, str]]
) -> None:
    generated = parse_env(host.read(f"{INSTALL_DIR}/.env"))["POSTGRES_PASSWORD"]
    everything = first_run.stdout + first_run.stderr + host.logs()
    for value in [*secret[1].values(), generated, secret[1]["PREFECT_API_AUTH_STRING"].split(":")[1]]:
        assert value not in everything


def test_code_is_checked_out_as_the_service_user(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost, fixture_repo: tuple[Path, str]
) -> None:
    head = host.sh(f"runuser -u prefect -- git -C {INSTALL_DIR} rev-parse HEAD").stdout.strip()
    assert head == fixture_repo[1]
    assert (
        host.sh(f"stat -c %U {INSTALL_DIR} {INSTALL_DIR}/docker-compose.yml").stdout.split()
        == ["prefect"] * 2
    )
    groups = host.sh("id -nG prefect").stdout.split()
    assert "docker" in groups
    assert host.sh("getent passwd prefect | cut -d: -f7").stdout.strip() == "/usr/sbin/nologin"


def test_swap_file_and_fstab_entry(first_run: subprocess.CompletedProcess[str], host: ContainerHost) -> None:
    assert host.sh("stat -c '%a %U %s' /swapfile").stdout.strip() == f"600 root {64 * 1024 * 1024}"
    # mkswap's signature sits at the end of the first 4 KiB page.
    assert host.sh("dd if=/swapfile bs=1 skip=4086 count=10 status=none").stdout == "SWAPSPACE2"
    fstab = host.read("/etc/fstab").splitlines()
    assert fstab.count("/swapfile none swap sw 0 0") == 1
    # An unprivileged container may not swapon: the bootstrap warns and carries on.
    assert "cannot enable swap here" in host.read(LOG)
    assert host.read("/etc/sysctl.d/60-prefect-platform-swap.conf").strip() == "vm.swappiness=10"


def test_docker_log_rotation_merged_into_daemon_json(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    assert json.loads(host.read("/etc/docker/daemon.json")) == {
        "data-root": "/var/lib/docker",
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }
    assert "restarted docker.service to apply log rotation" in host.read(LOG)


def test_systemd_unit_is_valid_and_enabled(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    verify = host.sh("systemd-analyze verify /etc/systemd/system/prefect-platform.service")
    assert verify.returncode == 0, verify.stderr
    assert "prefect-platform.service" not in verify.stderr, verify.stderr
    assert host.sh("systemctl is-enabled prefect-platform.service").stdout.strip() == "enabled"
    unit = host.read("/etc/systemd/system/prefect-platform.service")
    for line in [
        "Requires=docker.service",
        "After=docker.service network-online.target",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "User=prefect",
        f"WorkingDirectory={INSTALL_DIR}",
        "ExecStart=/usr/bin/docker compose up -d --wait --remove-orphans",
        f"ExecStop={INSTALL_DIR}/scripts/down",
        "WantedBy=multi-user.target",
    ]:
        assert line in unit.splitlines()


def test_unit_starts_and_stops_the_stack_as_the_service_user(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    host.sh(": > /var/log/fake-docker.log")
    assert host.sh("systemctl start prefect-platform.service").returncode == 0
    assert host.sh("systemctl is-active prefect-platform.service").stdout.strip() == "active"
    assert host.sh("systemctl stop prefect-platform.service").returncode == 0
    assert host.sh("systemctl is-active prefect-platform.service").stdout.strip() == "inactive"
    calls = host.read("/var/log/fake-docker.log").splitlines()
    assert calls == [
        f"user=prefect cwd={INSTALL_DIR} args=compose up -d --wait --remove-orphans",
        # scripts/down: nothing to drain (the fake server is not running), then compose down.
        f"user=prefect cwd={INSTALL_DIR} args=compose ps -q prefect-server",
        f"user=prefect cwd={INSTALL_DIR} args=compose down --remove-orphans",
    ]


SNAPSHOT_ROOTS = ("/etc", INSTALL_DIR, "/var/lib/prefect", "/swapfile")
# git fetch rewrites FETCH_HEAD on every run by design; HEAD is compared on its own.
SNAPSHOT_EXCLUDES = (f"{INSTALL_DIR}/.git", "/etc/ld.so.cache")


def test_second_run_changes_nothing(
    first_run: subprocess.CompletedProcess[str],
    host: ContainerHost,
    module_imds: FakeImds,
    moto_endpoint: str,
    secret: tuple[str, dict[str, str]],
) -> None:
    before = host.snapshot(*SNAPSHOT_ROOTS, exclude=SNAPSHOT_EXCLUDES)
    head = host.sh(f"git -C {INSTALL_DIR} rev-parse HEAD").stdout
    second = host.run_userdata(userdata_env(module_imds.endpoint, moto_endpoint, secret[0]))
    assert second.returncode == 0, second.stdout + second.stderr
    after = host.snapshot(*SNAPSHOT_ROOTS, exclude=SNAPSHOT_EXCLUDES)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert changed == [], f"second run changed: {changed}"
    assert host.sh(f"git -C {INSTALL_DIR} rev-parse HEAD").stdout == head
    assert "already at main" in second.stdout
    assert "envfile: /opt/prefect-platform/.env unchanged" in second.stdout
    assert "docker-log-rotation: /etc/docker/daemon.json unchanged" in second.stdout
    assert "restarted docker.service" not in second.stdout


def test_start_stack_runs_scripts_up_then_activates_the_unit(
    first_run: subprocess.CompletedProcess[str],
    host: ContainerHost,
    module_imds: FakeImds,
    moto_endpoint: str,
    secret: tuple[str, dict[str, str]],
) -> None:
    """START_STACK=true with the docker double: proves order, user and directory, not the stack."""
    host.sh(": > /var/log/fake-docker.log")
    env = userdata_env(module_imds.endpoint, moto_endpoint, secret[0], START_STACK="true")
    result = host.run_userdata(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up: the platform is running." in result.stdout
    calls = [c for c in host.read("/var/log/fake-docker.log").splitlines() if "args=compose" in c]
    as_prefect = f"user=prefect cwd={INSTALL_DIR} args="
    assert calls[-3:] == [
        f"{as_prefect}compose build --quiet",
        f"{as_prefect}compose up -d --wait --wait-timeout 300",
        f"{as_prefect}compose up -d --wait --remove-orphans",  # the unit, now active
    ]
    assert host.sh("systemctl is-active prefect-platform.service").stdout.strip() == "active"


def test_stack_stops_at_shutdown_and_starts_at_boot(
    first_run: subprocess.CompletedProcess[str], host: ContainerHost
) -> None:
    host.sh(": > /var/log/fake-docker.log")
    host.reboot()
    calls = [c for c in host.read("/var/log/fake-docker.log").splitlines() if "args=compose" in c]
    as_prefect = f"user=prefect cwd={INSTALL_DIR} args="
    assert calls == [
        f"{as_prefect}compose ps -q prefect-server",  # scripts/down: is there a server to drain through?
        f"{as_prefect}compose down --remove-orphans",
        f"{as_prefect}compose up -d --wait --remove-orphans",
    ]
    assert host.sh("systemctl is-active prefect-platform.service").stdout.strip() == "active"


def test_failing_rerun_keeps_the_configured_host_intact(
    first_run: subprocess.CompletedProcess[str],
    host: ContainerHost,
    module_imds: FakeImds,
    moto_endpoint: str,
) -> None:
    before = host.snapshot(INSTALL_DIR, exclude=(f"{INSTALL_DIR}/.git",))
    result = host.run_userdata(userdata_env(module_imds.endpoint, moto_endpoint, "prefect-platform/renamed"))
    assert result.returncode == 1
    assert host.snapshot(INSTALL_DIR, exclude=(f"{INSTALL_DIR}/.git",)) == before


# --- Failure modes on a fresh host: one container, one install dir per case ------------------


@pytest.fixture(scope="module")
def plain_host(image: str, fixture_repo: tuple[Path, str]) -> Iterator[ContainerHost]:
    """A fresh host without systemd as PID 1 (like a chroot or a container)."""
    box = ContainerHost(image, fixture_repo[0], systemd=False)
    yield box
    box.remove()


@pytest.fixture(scope="module")
def role_less_imds() -> Iterator[FakeImds]:
    with FakeImds(InstanceMetadata(region=REGION, role=None)) as server:
        yield server


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing secret", "not found in region eu-west-1 (ResourceNotFoundException)"),
        ("no instance role", "this instance has no IAM role"),
        ("IMDS unreachable", "cannot reach the instance metadata service"),
    ],
)
def test_failure_is_clear_and_writes_no_env(
    case: str,
    message: str,
    plain_host: ContainerHost,
    module_imds: FakeImds,
    role_less_imds: FakeImds,
    moto_endpoint: str,
    secret: tuple[str, dict[str, str]],
) -> None:
    install_dir = f"/opt/pp-{case.replace(' ', '-')}"
    secret_id, imds_endpoint = secret[0], module_imds.endpoint
    if case == "missing secret":
        secret_id = "prefect-platform/does-not-exist"
    elif case == "no instance role":
        imds_endpoint = role_less_imds.endpoint
    else:
        imds_endpoint = f"http://127.0.0.1:{closed_port()}"
    env = userdata_env(imds_endpoint, moto_endpoint, secret_id, INSTALL_DIR=install_dir)

    result = plain_host.run_userdata(env)

    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], result.stdout
    assert f"FAILED (exit 1) during: writing {install_dir}/.env from Secrets Manager" in result.stdout
    assert message in plain_host.read(LOG)
    assert plain_host.sh(f"ls -A {install_dir} | grep '^\\.env' | grep -v '^\\.env\\.example$'").stdout == ""
    # Nothing after the failed step ran.
    assert not plain_host.exists("/etc/systemd/system/prefect-platform.service")
    assert not plain_host.exists("/swapfile")


def test_tarball_source_without_systemd(
    plain_host: ContainerHost, module_imds: FakeImds, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> None:
    env = userdata_env(
        module_imds.endpoint,
        moto_endpoint,
        secret[0],
        REPO_URL="file:///src/repo.tar.gz",
        INSTALL_DIR="/opt/pp-tar",
    )
    first = plain_host.run_userdata(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "code: unpacked file:///src/repo.tar.gz into /opt/pp-tar" in first.stdout
    assert plain_host.exists("/opt/pp-tar/scripts/up") or plain_host.exists("/opt/pp-tar/docker-compose.yml")
    env_file = parse_env(plain_host.read("/opt/pp-tar/.env"))
    assert env_file["SNOWFLAKE_PASSWORD"] == secret[1]["SNOWFLAKE_PASSWORD"]
    # Without systemd running, the unit is still installed and enabled for the next boot.
    assert plain_host.exists("/etc/systemd/system/multi-user.target.wants/prefect-platform.service")
    second = plain_host.run_userdata(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already holds this tarball" in second.stdout


def test_a_public_hostname_turns_on_https_with_acme(
    plain_host: ContainerHost,
    module_imds: FakeImds,
    moto_endpoint: str,
    secrets_client,  # type: ignore[no-untyped-def]
) -> None:
    """The host name from the user data, the ACME contact from the secret: acme mode, loopback plain port."""
    values = {"PREFECT_API_AUTH_STRING": f"admin:{uuid.uuid4().hex}", "ACME_EMAIL": "ops@example.com"}
    secret_id = create_secret(secrets_client, f"prefect-platform/tls-{uuid.uuid4().hex[:8]}", values)
    env = userdata_env(
        module_imds.endpoint,
        moto_endpoint,
        secret_id,
        INSTALL_DIR="/opt/pp-https",
        PUBLIC_HOSTNAME="prefect.example.com",
        PREFECT_BIND_ADDRESS="0.0.0.0",  # an old default: HTTPS puts the plain port back on loopback
    )
    result = plain_host.run_userdata(env)
    assert result.returncode == 0, result.stdout + result.stderr
    written = parse_env(plain_host.read("/opt/pp-https/.env"))
    assert (written["TLS_MODE"], written["PUBLIC_HOSTNAME"], written["ACME_EMAIL"]) == (
        "acme",
        "prefect.example.com",
        "ops@example.com",
    )
    assert written["PREFECT_BIND_ADDRESS"] == "127.0.0.1"
    assert "HTTPS: TLS_MODE=acme for prefect.example.com" in result.stdout
    assert "bootstrap complete. Prefect UI: https://prefect.example.com" in result.stdout
    again = plain_host.run_userdata(env)
    assert again.returncode == 0 and "envfile: /opt/pp-https/.env unchanged" in again.stdout, again.stdout


def test_a_public_hostname_without_acme_email_stops_before_docker(
    plain_host: ContainerHost, module_imds: FakeImds, moto_endpoint: str, secret: tuple[str, dict[str, str]]
) -> None:
    env = userdata_env(
        module_imds.endpoint,
        moto_endpoint,
        secret[0],
        INSTALL_DIR="/opt/pp-https-no-email",
        PUBLIC_HOSTNAME="prefect.example.com",
    )
    result = plain_host.run_userdata(env)
    assert result.returncode == 1
    assert "PUBLIC_HOSTNAME is prefect.example.com but ACME_EMAIL is empty" in result.stdout
    assert "FAILED (exit 1) during: configuring HTTPS" in result.stdout
    assert "install-docker" not in result.stdout
