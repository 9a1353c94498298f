"""Flow code of prefect-platform.

Mounted read-only into every flow-run container at /opt/prefect/flows (PYTHONPATH=/opt/prefect),
so modules import each other as ``flows.<module>`` both there and from a local checkout.
"""
