"""The wrapper every flow-run container starts with (docker/flow-runner's entrypoint)."""
