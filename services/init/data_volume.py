"""The shared data volume must belong to the flow user, or every flow run fails to write to it."""

from __future__ import annotations

import sys
from pathlib import Path

from services.contract import DATA_DIR, FLOW_UID, RESULTS_DIR
from services.init import log


def prepare_data_volume(data_dir: Path = Path(DATA_DIR), results_dir: Path = Path(RESULTS_DIR)) -> None:
    """Docker gives a new named volume the image's DATA_DIR ownership (uid FLOW_UID); check it."""
    for path in (data_dir, results_dir):
        try:
            path.mkdir(exist_ok=True)
            owned = path.stat().st_uid == FLOW_UID
        except PermissionError:
            owned = False
        if not owned:
            sys.exit(
                f"prefect-init: {path} on the data volume is not owned by uid {FLOW_UID}; fix it with "
                f"`docker run --rm -u 0 -v VOLUME:{DATA_DIR} IMAGE chown -R {FLOW_UID}:{FLOW_UID} {DATA_DIR}`"
            )
    log(f"data volume ready at {data_dir} (owner uid {FLOW_UID})")
