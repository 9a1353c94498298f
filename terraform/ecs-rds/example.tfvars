# A throwaway environment: apply succeeds as is (against moto in the tests, or a real account,
# where it serves plain HTTP on the load balancer's name). For production: set certificate_arn and
# public_hostname, narrow ingress_cidrs, and leave the deletion and recovery settings at their
# defaults.
region = "us-east-1"
name   = "prefect-demo"

ingress_cidrs = ["0.0.0.0/0"]

work_pool_name     = "ecs-pool"
flow_run_image_tag = "0.1.0"

db_deletion_protection         = false
db_skip_final_snapshot         = true
ecr_force_delete               = true
secret_recovery_window_in_days = 0

tags = { Environment = "demo" }
