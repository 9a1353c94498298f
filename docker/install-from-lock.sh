#!/usr/bin/env bash
# Installs the locked dependencies into /opt/venv inside an image build, so host (uv sync) and
# containers run the same versions. Usage: install-from-lock.sh [uv sync options, e.g. --group flows]
# Expects pyproject.toml and uv.lock in the current directory, and scripts/lib/uv_pin.py copied to
# /usr/local/lib. uv is installed at the version pyproject.toml pins, used, then removed: the image
# keeps only the virtualenv.
set -euo pipefail
python3 -m pip install --no-cache-dir --root-user-action=ignore "uv$(python3 /usr/local/lib/uv_pin.py)"
# Byte-compiled at build time: flow-run containers run as a user that cannot write __pycache__,
# and compiling prefect on every start would add seconds to every run.
UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON=/usr/bin/python3 UV_PYTHON_DOWNLOADS=never \
UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1 \
  uv sync --frozen --no-default-groups --no-install-project "$@"
python3 -m pip uninstall -y -q --root-user-action=ignore uv
