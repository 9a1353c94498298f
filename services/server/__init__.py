"""prefect-server's process: Prefect's app behind the login throttle (see __main__ and login_throttle)."""
