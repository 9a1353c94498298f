"""The stack's Docker-pool worker (compose service prefect-worker)."""
