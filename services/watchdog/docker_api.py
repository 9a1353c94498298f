"""The few Docker Engine API calls the watchdog needs, over the socket, with the standard library
(the docker SDK alone would triple the watchdog's memory)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import quote

SOCKET = "/var/run/docker.sock"


class DockerError(RuntimeError):
    """The engine refused a call or could not be reached."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class DockerApi:
    def __init__(self, socket_path: str = SOCKET, timeout: float = 30) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request(method, path, headers={"Host": "docker"})
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise DockerError(f"the Docker engine at {self.socket_path} does not answer: {exc}") from exc
        finally:
            connection.close()
        if response.status >= 400:
            raise DockerError(f"{method} {path}: {response.status} {body.decode(errors='replace').strip()}")
        return json.loads(body) if body else None

    def containers(self, labels: list[str]) -> list[dict[str, Any]]:
        """All containers (running or not) carrying every one of ``labels`` (``key=value``)."""
        filters = quote(json.dumps({"label": labels}))
        return self.request("GET", f"/containers/json?all=1&filters={filters}")

    def inspect(self, container_id: str) -> dict[str, Any]:
        return self.request("GET", f"/containers/{container_id}/json")

    def start(self, container_id: str) -> None:
        self.request("POST", f"/containers/{container_id}/start")
