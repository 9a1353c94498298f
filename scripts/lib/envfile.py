#!/usr/bin/env python3
"""The one reader and writer of the stack's .env. Standard library only: runs on any host (and on
Amazon Linux 2023's Python 3.9), and inside the flow-run image (services/flow_runner/entrypoint.py).

Reading (`parse`, `envfile.py get KEY`) follows Compose's rules for the simple lines .env holds:
`KEY=value`, an optional `export `, surrounding single or double quotes removed, comments and
blank lines ignored; the last assignment of a key wins.

Writing: one place for the rules every caller (scripts/up, scripts/bootstrap/secrets-to-env) shares:
- an existing value is never changed unless --overwrite is given;
- a variable of .env.example missing from .env is added; `__GENERATE__` in its value becomes a
  fresh random secret (so no default password ever exists);
- the file is written atomically (temp file + rename) with mode 0600: a crash leaves the old file.
- values are never printed.

Usage:
  envfile.py get KEY [--env .env]     prints the value (empty when unset); exit 1 when .env is missing
  envfile.py dump [--env .env]        prints every KEY=value, one per line (values are one line each):
                                      for a shell that needs many (scripts/up reads .env once)
  envfile.py ensure --env .env --example .env.example [--set KEY=VALUE ...]
                    [--from-json FILE] [--overwrite] [--force KEY=VALUE ...]
  --set/--from-json values fill missing keys (or replace existing ones with --overwrite);
  --force values always replace (for derived facts such as PLATFORM_DIR, never for secrets).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from files import write_atomically

PLACEHOLDER = "__GENERATE__"
LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class EnvFileError(Exception):
    """A problem with the input that the user must fix; the message says how."""


def generate_secret() -> str:
    # URL-safe without '-' or '_' ambiguity issues in user:password strings and URLs.
    return secrets.token_hex(24)


def _raw_pairs(text: str) -> dict[str, str]:
    """KEY -> the value as written (quotes kept): what merging copies from .env.example."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        match = LINE.match(raw)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse(text: str) -> dict[str, str]:
    """KEY -> value as Compose reads it (quotes removed)."""
    return {key: unquote(value) for key, value in _raw_pairs(text).items()}


def read(path: Path) -> dict[str, str]:
    """The settings of an .env file; raises EnvFileError when it does not exist."""
    try:
        return parse(path.read_text())
    except FileNotFoundError:
        raise EnvFileError(f"{path} not found; run ./scripts/up once to create it") from None


def fill_placeholders(value: str) -> str:
    while PLACEHOLDER in value:
        value = value.replace(PLACEHOLDER, generate_secret(), 1)
    return value


def check_value(key: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise EnvFileError(f"value of {key} contains a line break; .env values must be single-line")
    return value


def merge(
    current_text: str | None,
    example_text: str,
    overrides: dict[str, str],
    overwrite: bool,
    forced: dict[str, str] | None = None,
) -> str:
    """Returns the new .env text: current lines kept in place, missing variables appended."""
    lines = current_text.splitlines() if current_text is not None else example_text.splitlines()
    present: dict[str, int] = {}
    for index, raw in enumerate(lines):
        match = LINE.match(raw)
        if match:
            present[match.group(1)] = index

    def set_line(key: str, value: str, force: bool) -> None:
        value = check_value(key, value)
        if key in present:
            if force:
                lines[present[key]] = f"{key}={value}"
        else:
            present[key] = len(lines)
            lines.append(f"{key}={value}")

    for key, value in overrides.items():
        set_line(key, value, force=overwrite or current_text is None)
    for key, value in (forced or {}).items():
        set_line(key, value, force=True)
    for key, value in _raw_pairs(example_text).items():
        set_line(key, value, force=False)
    # Placeholders are filled last, only where no value was provided.
    for key, index in present.items():
        match = LINE.match(lines[index])
        if match and PLACEHOLDER in match.group(2):
            lines[index] = f"{key}={fill_placeholders(match.group(2))}"
    return "\n".join(lines) + "\n"


def load_json_overrides(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EnvFileError(f"{path} is not valid JSON ({exc}); expected an object of KEY: value") from exc
    if not isinstance(data, dict):
        raise EnvFileError(f"{path} must hold a JSON object of KEY: value pairs")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not LINE.match(f"{key}=x"):
            raise EnvFileError(f"{path}: {key!r} is not a valid variable name")
        if not isinstance(value, (str, int, float, bool)):  # tuple: AL2023 runs Python 3.9
            raise EnvFileError(f"{path}: value of {key} must be a string or number")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def ensure(
    env: Path,
    example: Path,
    overrides: dict[str, str],
    overwrite: bool = False,
    forced: dict[str, str] | None = None,
) -> bool:
    """Creates or merges ``env``; returns True when the file changed."""
    if not example.is_file():
        raise EnvFileError(f"{example} not found; run from the platform's checkout")
    current = env.read_text() if env.exists() else None
    new_text = merge(current, example.read_text(), overrides, overwrite, forced)
    changed = new_text != current
    if changed:
        write_atomically(env, new_text, 0o600)
    elif env.stat().st_mode & 0o077:
        env.chmod(0o600)  # tighten a hand-made file
    return changed


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not LINE.match(f"{key}=x"):
            raise EnvFileError(f"{flag} {key!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="print one setting's value")
    get.add_argument("key")
    get.add_argument("--env", type=Path, default=Path(".env"))
    dump = sub.add_parser("dump", help="print every KEY=value, one per line")
    dump.add_argument("--env", type=Path, default=Path(".env"))
    cmd = sub.add_parser("ensure", help="create or merge .env")
    cmd.add_argument("--env", type=Path, required=True)
    cmd.add_argument("--example", type=Path, required=True)
    cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--from-json", type=Path)
    cmd.add_argument("--overwrite", action="store_true", help="replace existing values with given ones")
    cmd.add_argument("--force", action="append", default=[], metavar="KEY=VALUE", help="always replace")
    args = parser.parse_args(argv)
    if args.command in ("get", "dump"):
        try:
            values = read(args.env)
            if args.command == "get":
                print(values.get(args.key, ""))
            else:
                sys.stdout.write("".join(f"{key}={value}\n" for key, value in values.items()))
        except EnvFileError as exc:
            print(f"envfile: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        overrides = load_json_overrides(args.from_json) if args.from_json else {}
        overrides.update(parse_pairs(args.set, "--set"))
        forced = parse_pairs(args.force, "--force")
        changed = ensure(args.env, args.example, overrides, args.overwrite, forced)
    except EnvFileError as exc:
        print(f"envfile: {exc}", file=sys.stderr)
        return 2
    print(f"envfile: {args.env} {'updated' if changed else 'unchanged'} (mode 0600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
