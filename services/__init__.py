"""Code that runs inside the stack's own containers (the control plane and the flow-run wrapper).

Nothing here imports ``flows/``: the team's code is loaded only by flow-run containers and by the
deployment step, which run it in its own environment.
"""

from services.api_auth import prefer_api_key

# Every entry point (init, deploy, worker, flow-run engine) imports this package before Prefect.
prefer_api_key()
