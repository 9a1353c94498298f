"""End to end: the proxy in TLS_MODE=internal (Caddy's own CA), used like a team would use it.

One stack for the module: HTTPS with a certificate for the host name, HTTP redirects, only the
proxy reachable from other machines, security headers, the UI in a real browser (chromium driven
by Playwright) running elt/daily from its Run button with no request leaving the stack, and last
(it blocks the test host's address for a minute) 60 wrong passwords answered 429 while another
address keeps working.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import pytest

from tests.support.browser import CHROMIUM_FLAGS, chromium_browser
from tests.support.proxy import (
    ProxyStack,
    assert_http_redirects_to_https,
    assert_only_the_proxy_is_reachable_from_other_machines,
    served_certificate,
)
from tests.support.stack import copy_checkout, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def stack(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ProxyStack]:
    root = tmp_path_factory.mktemp("clone")
    copy_checkout(root)
    stack = ProxyStack(root, tls_mode="internal", hostname="prefect.internal.test")
    with running(stack, request):
        yield stack


@pytest.fixture(scope="module")
def root_ca(stack: ProxyStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stack.caddy_root(tmp_path_factory.mktemp("ca") / "caddy-root.crt")


def test_up_prints_the_https_address_and_what_to_type_at_login(stack: ProxyStack) -> None:
    output = stack.up_result.stdout + stack.up_result.stderr  # type: ignore[attr-defined]
    assert stack.public_url in output, output
    assert "user:password" in output and "PREFECT_API_AUTH_STRING" in output, output
    assert stack.credentials[1] not in output


def test_https_serves_a_certificate_for_the_host_name_from_caddys_ca(
    stack: ProxyStack, root_ca: Path
) -> None:
    served_certificate(stack.https_port, stack.hostname, cafile=root_ca)  # raises unless valid
    with pytest.raises(ssl.SSLError):  # no certificate for names the stack is not
        served_certificate(stack.https_port, "other.example.com", cafile=root_ca, timeout=0)
    with pytest.raises(ssl.SSLCertVerificationError):  # nor trusted by public roots: it is private
        served_certificate(stack.https_port, stack.hostname, cafile=Path(certifi.where()), timeout=0)


def test_plain_http_redirects_to_https(stack: ProxyStack) -> None:
    assert_http_redirects_to_https(stack)


def test_only_the_proxy_is_reachable_from_other_machines(stack: ProxyStack) -> None:
    assert_only_the_proxy_is_reachable_from_other_machines(stack)


def test_security_headers_compression_and_relative_api_url(stack: ProxyStack, root_ca: Path) -> None:
    with stack.https(root_ca) as client:
        page = client.get("/", headers={"Accept-Encoding": "zstd, gzip"}, follow_redirects=True)
        settings = client.get("/ui-settings").json()
    assert page.status_code == 200 and "<html" in page.text.lower()
    headers = page.headers
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    csp = headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert headers["content-encoding"] in ("zstd", "gzip")
    assert "server" not in headers  # neither Caddy nor uvicorn announces itself
    # The UI calls the API on the origin it was loaded from: it follows PUBLIC_HOSTNAME by itself.
    assert settings["api_url"] == "/api"


class Steps:
    """Screenshots of each browser step, kept under $TEST_ARTIFACTS_DIR when the test fails."""

    def __init__(self, page: object, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)  # type: ignore[attr-defined]


def goto(page: Any, url: str) -> None:
    """page.goto, again if the host's network changed under the browser (outside a namespace)."""
    for attempt in range(5):
        try:
            page.goto(url)
            return
        except Exception as error:
            if "ERR_NETWORK_CHANGED" not in str(error) or attempt == 4:
                raise
            time.sleep(1)


def run_elt_daily_from_the_ui(page: Any, steps: Steps, stack: ProxyStack, credentials: str) -> str:
    """Signs in, opens the dashboard, runs elt/daily from its deployment page and opens the run's
    summary artifact, as a user would; returns the run's id."""
    from playwright.sync_api import expect

    goto(page, f"{stack.public_url}/")
    field = page.get_by_placeholder("admin:pass")  # the UI asks for the whole user:password
    loaded = time.monotonic()
    try:
        field.wait_for(timeout=60_000)  # under a second on a quiet host
    except Exception as error:
        body = page.locator("body").inner_text(timeout=5_000)[:1500]
        raise AssertionError(
            f"no login form {time.monotonic() - loaded:.0f} s after {page.url} loaded; "
            f"the page shows: {body!r}"
        ) from error
    print(f"login form shown {time.monotonic() - loaded:.1f} s after the page loaded")
    steps.shot("login")
    field.fill(credentials)
    page.get_by_role("button", name="Login").click()

    page.get_by_role("heading", name="Dashboard").or_(page.get_by_text("Dashboard").first).first.wait_for()
    page.get_by_text("docker-pool").first.wait_for(timeout=30_000)  # the API answered
    # The UI's calls made before the login fail; once signed in, its retries must succeed.
    expect(page.get_by_text("Unable to connect to Prefect server")).to_have_count(0, timeout=60_000)
    steps.shot("dashboard")

    page.get_by_role("link", name="Deployments").click()
    page.get_by_role("link", name="daily", exact=True).first.click()
    page.get_by_role("button", name="Run").first.wait_for()
    steps.shot("deployment")
    page.get_by_role("button", name="Run").first.click()
    page.get_by_role("menuitem", name="Quick run").click()
    page.get_by_role("button", name="View run").or_(page.get_by_role("link", name="View run")).first.click()
    page.wait_for_url(re.compile(r"/runs/flow-run/"))
    run_id = re.search(r"/flow-run/([0-9a-f-]{36})", page.url).group(1)  # type: ignore[union-attr]
    steps.shot("run-started")

    page.get_by_text("Completed", exact=True).first.wait_for(timeout=600_000)
    steps.shot("run-completed")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text(re.compile(r"^elt-summary-")).first.click()  # the key's timeline of versions
    page.get_by_role("link", name=re.compile(r"^[0-9a-f]{8}$")).first.click()  # this run's version
    page.get_by_text("customer_lifetime_value").first.wait_for(timeout=30_000)  # the table rendered
    steps.shot("artifact")
    return run_id


def test_the_ui_in_a_real_browser_runs_elt_daily_without_third_party_requests(
    stack: ProxyStack, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from playwright.sync_api import sync_playwright

    user, password = stack.credentials
    requests: list[str] = []
    refused: list[str] = []
    blocked_by_csp: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        with chromium_browser(tmp_path) as chromium, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium.executable,
                # The test name resolves to this host, as DNS would make it for a team's browser.
                args=[*CHROMIUM_FLAGS, f"--host-resolver-rules=MAP {stack.hostname} {chromium.host_address}"],
            )
            # The certificate itself is checked above against Caddy's root; the browser's own store
            # does not hold that root.
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
            context.on("request", lambda r: requests.append(r.url))
            # For the failure message: what the browser could not get.
            context.on("response", lambda r: r.status >= 400 and refused.append(f"{r.status} {r.url}"))
            context.on("requestfailed", lambda r: refused.append(f"{r.failure} {r.url}"))
            page = context.new_page()
            page.on("websocket", lambda ws: requests.append(ws.url))
            page.on(
                "console",
                lambda m: blocked_by_csp.append(m.text) if "Content Security Policy" in m.text else None,
            )
            steps = Steps(page, shots)
            try:
                run_id = run_elt_daily_from_the_ui(page, steps, stack, f"{user}:{password}")
            except BaseException:
                steps.shot("at-failure")
                raise
            browser.close()
    except BaseException:
        kept = Path(os.environ.get("TEST_ARTIFACTS_DIR") or tmp_path) / request.node.name
        shutil.copytree(shots, kept, dirs_exist_ok=True)
        print(f"screenshots of each step: {kept}; blocked by CSP: {blocked_by_csp}")
        print("responses >= 400 and failed requests:", *refused[-40:], sep="\n  ")
        raise

    with stack.client() as client:  # the run the browser started really completed, with its summary
        run = client.get(f"/flow_runs/{run_id}").raise_for_status().json()
        artifacts = client.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert run["state_type"] == "COMPLETED" and run["deployment_id"], run["state"]
    assert any(a["key"].startswith("elt-summary") for a in artifacts.json())

    # No request left the stack: every request and websocket went to the proxy's host and port.
    origin = f"{stack.hostname}:{stack.https_port}"
    assert requests, "no request was recorded"
    elsewhere = sorted({url for url in requests if urlsplit(url).netloc != origin})
    assert not elsewhere, elsewhere
    # What the CSP stopped: only connections to third-party hosts, never the UI's own scripts or
    # styles (those would break pages). Printed for the record.
    refused = sorted(set(re.findall(r"https?://[^/'\" ]+", " ".join(blocked_by_csp))))
    print(f"blocked by the proxy's CSP: {refused or 'nothing'}")
    assert all("connect-src" in line or "Fetch API cannot load" in line for line in blocked_by_csp), (
        blocked_by_csp
    )
    assert not [host for host in refused if stack.hostname in host], refused


def on_the_network(stack: ProxyStack, service: str, *command: str) -> str:
    """Output of a command in a throwaway container on the stack's network: another address than
    the test host's (which the throttle blocks), as a second client or an internal service has."""
    image = stack.image(service)
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            stack.project,
            "--entrypoint",
            command[0],
            image,
            *command[1:],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# Run by the platform image's Python, straight to prefect-server like the worker and flow runs.
SELF_CHECK = """
import sys, time, httpx
api = httpx.Client(base_url="http://prefect-server:4200/api", auth=tuple(sys.argv[1].split(":", 1)))
deployment = api.get("/deployments/name/platform-check/self-check").raise_for_status().json()
run = api.post(f"/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status().json()
for _ in range(240):
    state = api.get(f"/flow_runs/{run['id']}").raise_for_status().json()["state_type"]
    if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        break
    time.sleep(1)
print(state)
"""


def test_sixty_wrong_passwords_get_429_and_other_clients_are_not_slowed(
    stack: ProxyStack, root_ca: Path
) -> None:
    user, password = stack.credentials
    statuses = []
    with stack.https(root_ca) as client:
        for n in range(60):
            statuses.append(client.post("/api/flows/filter", json={}, auth=(user, f"guess-{n}")).status_code)
        right_but_blocked = client.post("/api/flows/filter", json={}, auth=(user, password))
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429] * 50, statuses
    assert right_but_blocked.status_code == 429 and int(right_but_blocked.headers["retry-after"]) > 0
    # Another address with the right password, through the proxy, during the block: served.
    other = on_the_network(
        stack,
        "proxy",
        *("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{user}:{password}"),
        *("-X", "POST", "-H", "Content-Type: application/json", "-d", "{}"),
        *("--connect-to", f"{stack.hostname}:443:proxy:443", f"https://{stack.hostname}/api/flows/filter"),
    )
    assert other == "200"
    # The worker and flow runs talk to the server directly: a run completes during the block.
    assert (
        on_the_network(stack, "prefect-server", "python3", "-c", SELF_CHECK, f"{user}:{password}")
        == "COMPLETED"
    )
    # Logged with time and address by the server, and each 429 by the proxy's access log.
    blocked = [line for line in stack.logs("prefect-server").splitlines() if "login throttle" in line]
    assert len(blocked) == 1 and "429" in blocked[0], blocked
    access = [
        json.loads(line.split("|", 1)[-1])
        for line in stack.logs("proxy").splitlines()
        if '"status":429' in line
    ]
    assert len(access) == 51 and all(entry["ts"] > 0 for entry in access), access
    address = access[0]["request"]["remote_ip"]
    assert f" {address} failed authentication" in blocked[0], (address, blocked)
    # The password appears in no log (Caddy writes Authorization headers redacted).
    assert password not in stack.compose("logs", "--no-color").stdout
