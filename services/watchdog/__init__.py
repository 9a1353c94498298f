"""The stack's watchdog (compose service ``watchdog``): brings back long-running services that
Docker's restart policy leaves stopped.

``restart: unless-stopped`` restarts a service that crashes, but Docker counts a ``docker kill``
as a manual stop and leaves the container Exited for good (measured: with ``always`` too). The
watchdog looks at this project's containers every WATCHDOG_SECONDS and starts again any
long-running service that was killed (exited with a non-zero code while not restarting). A service
the operator stopped stays stopped: ``docker stop`` and ``docker compose stop SERVICE`` end it with
code 0, and ``./scripts/down`` and ``docker compose stop``/``down`` stop the watchdog first (it
depends on the services it watches, so compose stops it before them). The worker restarts a killed
watchdog the same way, so neither stays down.
"""
