# A throwaway environment: apply succeeds as is (against moto in the tests, or a real account).
# For production, set repo_ref to a tag, narrow ingress_cidrs or set public_hostname, and leave
# the *_force_destroy and recovery settings at their defaults.
region   = "us-east-1"
name     = "prefect-demo"
repo_url = "https://github.com/your-org/prefect-platform.git"
repo_ref = "main"

ingress_ports = [80, 443]
ingress_cidrs = ["0.0.0.0/0"]

public_hostname = "prefect.example.com"
acme_email      = "ops@example.com"

backup_prefix                  = "prefect-demo/"
backup_bucket_force_destroy    = true
secret_recovery_window_in_days = 0

tags = { Environment = "demo" }
