"""python -m services.deploy: `prefect deploy --all` from the mounted flows folder."""

from __future__ import annotations

import subprocess
import sys

from services.contract import FLOWS_DIR


def log(message: str) -> None:
    print(f"prefect-deploy: {message}", flush=True)


def register_deployments() -> list[str]:
    result = subprocess.run(
        ["prefect", "--no-prompt", "deploy", "--all"],
        cwd=FLOWS_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        print(result.stdout, result.stderr, sep="\n", file=sys.stderr)
        sys.exit(
            "prefect-deploy: `prefect deploy --all` failed in flows/ (output above): fix the file it "
            "names, or flows/prefect.yaml"
        )
    return [line.split("'")[1] for line in result.stdout.splitlines() if "Deployment '" in line]


def main() -> None:
    names = register_deployments()
    log(f"deployments registered from flows/prefect.yaml: {', '.join(names) or '(none reported)'}")


if __name__ == "__main__":
    main()
