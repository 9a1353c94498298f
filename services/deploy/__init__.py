"""prefect-deploy: register the deployments of flows/prefect.yaml (`prefect deploy --all`).

A one-shot on the flow-run image, not the init's platform image: registering a deployment imports
its flow (for the parameter schema), and the team's code imports what only the flow-run image
holds. So the control plane never loads the team's code; this step runs it in its own environment.
"""
