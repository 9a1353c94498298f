"""Any dbt project in flows/dbt/<name>/, made runnable on the platform.

A project folder is mounted read-only in the stack, yet dbt writes next to it (target/, logs/,
dbt_packages/, package-lock.yml) and reads its own profiles.yml. So each project gets a workspace
under DATA_DIR/dbt/<name>/:

    project/     the project as dbt sees it: a symlink to every file and folder of flows/dbt/<name>/,
                 plus a writable packages folder (dbt_packages/ or the project's packages-install-path)
                 and package-lock.yml. Links, not copies: an edited model is seen by the next run.
    profiles/    profiles.yml generated from the platform's profile (flows/dbt/profiles.yml) for the
                 warehouse WAREHOUSE selects, under the profile name the project asks for.
    <target>-<schema>/target, logs   dbt's output, kept so the next run parses partially.

Packages (packages.yml or dependencies.yml) are installed with `dbt deps` only when their
definition changed since the last install; `local:` packages are links into flows/, so they work
offline and an edited local package needs no reinstall. Standard library, PyYAML and dbt only.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flows.errors import PermanentError

PROJECTS_DIR = Path(__file__).resolve().parent / "dbt"
PLATFORM_PROFILE = PROJECTS_DIR / "profiles.yml"
PACKAGE_FILES = ("packages.yml", "dependencies.yml")
LOCK_FILE = "package-lock.yml"
# What dbt writes into a project folder, or reads from it but must not on the platform.
NOT_LINKED = frozenset({"target", "logs", "profiles.yml", ".user.yml", LOCK_FILE})
DEPS_MARKER = ".platform-deps.sha256"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DbtProjectError(PermanentError, ValueError):
    """A dbt project is missing, malformed, or its packages cannot be installed."""


def projects_dir(env: Mapping[str, str] | None = None) -> Path:
    """DBT_PROJECTS_DIR, the folder of dbt projects (default flows/dbt)."""
    value = ((os.environ if env is None else env).get("DBT_PROJECTS_DIR") or "").strip()
    return Path(value).expanduser().resolve() if value else PROJECTS_DIR


def project_names(root: Path | None = None) -> list[str]:
    """The projects in ``root`` (default: projects_dir()): folders holding a dbt_project.yml."""
    root = projects_dir() if root is None else root
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "dbt_project.yml").is_file())


def find_project(name: str, root: Path | None = None) -> Path:
    """<root>/<name> (default root: projects_dir()); a missing or misspelt name fails naming the
    projects there are."""
    root = projects_dir() if root is None else root
    if NAME.match(name) and (root / name / "dbt_project.yml").is_file():
        return root / name
    known = ", ".join(project_names(root)) or "none yet"
    shown = "flows/dbt" if root == PROJECTS_DIR else str(root)
    raise DbtProjectError(
        f"No dbt project {name!r} in {shown}/ (projects there: {known}). Pass one of those as "
        f"`project`, or add a folder {shown}/{name}/ holding its dbt_project.yml."
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DbtProjectError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DbtProjectError(f"{path} must be a YAML mapping")
    return data


def _hash_files(paths: list[Path], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def platform_profile(
    profile_name: str,
    warehouse_kind: str,
    schema: str,
    threads: int | None,
    template: Path = PLATFORM_PROFILE,
) -> dict[str, Any]:
    """The profiles.yml content that points ``profile_name`` at the platform's warehouse."""
    outputs = _read_yaml(template).get("platform", {}).get("outputs", {})
    if warehouse_kind not in outputs:
        raise DbtProjectError(
            f"flows/dbt/profiles.yml has no output for WAREHOUSE={warehouse_kind}: add one under "
            "platform.outputs."
        )
    output = {**outputs[warehouse_kind], "schema": schema}
    if threads is not None:
        output["threads"] = threads
    return {profile_name: {"target": warehouse_kind, "outputs": {warehouse_kind: output}}}


@dataclass(frozen=True)
class DbtWorkspace:
    """One project's place under DATA_DIR/dbt/<name>/ (see the module's docstring)."""

    source: Path
    root: Path

    @classmethod
    def for_project(cls, name: str, data_dir: Path, projects: Path | None = None) -> DbtWorkspace:
        return cls(source=find_project(name, projects), root=data_dir / "dbt" / name)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def project_dir(self) -> Path:
        return self.root / "project"

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    def run_dir(self, target: str, schema: str) -> Path:
        """target/ and logs/ of one warehouse target and schema (kept: partial parsing)."""
        return self.root / f"{target}-{schema}"

    def config(self) -> dict[str, Any]:
        return _read_yaml(self.source / "dbt_project.yml")

    @property
    def profile_name(self) -> str:
        """The profile dbt_project.yml asks for (``platform`` if it names none or a templated one)."""
        profile = self.config().get("profile")
        return profile if isinstance(profile, str) and profile and "{" not in profile else "platform"

    @property
    def packages_file(self) -> str | None:
        return next((name for name in PACKAGE_FILES if (self.source / name).is_file()), None)

    @property
    def packages_dir_name(self) -> str:
        """First folder of the project's packages-install-path (dbt_packages by default)."""
        path = self.config().get("packages-install-path") or "dbt_packages"
        return Path(str(path)).parts[0]

    def prepare(self, warehouse_kind: str, schema: str, threads: int | None) -> None:
        """Links the project into its workspace and writes the platform's profile for it."""
        self._link_project()
        self.profiles_dir.mkdir(parents=True, exist_ok=True)
        profile = platform_profile(self.profile_name, warehouse_kind, schema, threads)
        _write_if_changed(self.profiles_dir / "profiles.yml", yaml.safe_dump(profile, sort_keys=False))

    def _link_project(self) -> None:
        farm = self.project_dir
        farm.mkdir(parents=True, exist_ok=True)
        managed = self.packages_file is not None  # else a committed packages folder is linked as is
        skip = NOT_LINKED | ({self.packages_dir_name} if managed else set())
        wanted = {
            p.name: p for p in self.source.iterdir() if p.name not in skip and not p.name.startswith(".")
        }
        for entry in farm.iterdir():
            if entry.name not in wanted and entry.is_symlink():
                entry.unlink()
        for name, path in wanted.items():
            rewritten = _packages_with_absolute_locals(path, self.source) if name in PACKAGE_FILES else None
            if rewritten is not None:
                _replace(farm / name, lambda tmp, text=rewritten: tmp.write_text(text))
            elif not ((farm / name).is_symlink() and os.readlink(farm / name) == str(path)):
                _replace(farm / name, lambda tmp, target=path: tmp.symlink_to(target))
        lock = self.source / LOCK_FILE
        if lock.is_file():
            _write_if_changed(farm / LOCK_FILE, lock.read_text())
        if (
            not managed
            and (farm / self.packages_dir_name).is_dir()
            and not (farm / self.packages_dir_name).is_symlink()
        ):
            shutil.rmtree(farm / self.packages_dir_name)  # packages.yml was removed: drop what it installed

    def install_packages(
        self, run_deps: Callable[[Path, Path], None], dbt_version: str, log_dir: Path
    ) -> bool:
        """`dbt deps` when the package definition changed since the last install; True if it ran."""
        if self.packages_file is None:
            return False
        installed = self.project_dir / self.packages_dir_name
        # The project's own package definition and committed lock, if any, and dbt's version.
        key = _hash_files([self.source / self.packages_file, self.source / LOCK_FILE], extra=dbt_version)
        marker = installed / DEPS_MARKER
        if marker.is_file() and marker.read_text() == key:
            return False
        run_deps(self.project_dir, log_dir)
        installed.mkdir(parents=True, exist_ok=True)
        marker.write_text(key)
        return True


def _packages_with_absolute_locals(path: Path, project: Path) -> str | None:
    """packages.yml with `local:` paths that leave the project made absolute, or None if none do.

    dbt resolves a local path against the project folder; the workspace is elsewhere, so a path
    like ../shared_macros must point at flows/dbt/shared_macros explicitly.
    """
    data = _read_yaml(path)
    changed = False
    for entry in data.get("packages") or []:
        local = entry.get("local") if isinstance(entry, Mapping) else None
        if isinstance(local, str) and "{" not in local and not Path(local).is_absolute():
            resolved = (project / local).resolve()
            if not resolved.is_relative_to(project.resolve()):
                entry["local"] = str(resolved)
                changed = True
    if not changed:
        return None
    return f"# Generated from {path} (local paths made absolute).\n" + yaml.safe_dump(data, sort_keys=False)


def _replace(path: Path, create: Callable[[Path], Any]) -> None:
    """Creates ``path`` through a temporary name, then renames it over whatever was there."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    create(tmp)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_symlink():
        path.unlink()
    if not (path.is_file() and path.read_text() == text):
        path.write_text(text)


def dbt_env(warehouse_env: Mapping[str, str]) -> dict[str, str]:
    """Variables of every dbt invocation: the warehouse's, and no usage tracking (runs are offline)."""
    return {**warehouse_env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
