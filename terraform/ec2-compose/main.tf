# The single-host layout: the whole docker-compose stack on one EC2 instance, bootstrapped by the
# project's ec2-userdata.sh (read from the checkout, not copied), with its secret and backups.
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  create_vpc    = var.vpc_id == null
  backup_bucket = coalesce(var.backup_bucket, "${var.name}-backups-${data.aws_caller_identity.current.account_id}")
  secret_arn    = var.secret_arn == null ? module.secret[0].arn : var.secret_arn
  # The project's own bootstrap script: ../../ec2-userdata.sh from this stack.
  bootstrap_script = file("${path.root}/../../ec2-userdata.sh")
  bootstrap_settings = merge(
    {
      REPO_URL      = var.repo_url
      REPO_REF      = var.repo_ref
      SECRET_ID     = local.secret_arn
      BACKUP_S3_URI = "s3://${local.backup_bucket}/${var.backup_prefix}"
    },
    var.public_hostname == null ? {} : { PUBLIC_HOSTNAME = var.public_hostname },
    var.acme_email == null ? {} : { ACME_EMAIL = var.acme_email },
    var.bootstrap_settings,
  )
}

check "network_inputs" {
  assert {
    condition     = (var.vpc_id == null) == (var.subnet_id == null)
    error_message = "Set vpc_id and subnet_id together (existing network), or neither (a VPC is created)."
  }
}

module "network" {
  source     = "../modules/network"
  count      = local.create_vpc ? 1 : 0
  name       = var.name
  cidr_block = var.vpc_cidr
  az_count   = 1
}

module "secret" {
  source                  = "../modules/platform-secret"
  count                   = var.secret_arn == null ? 1 : 0
  name                    = "${var.name}/platform"
  description             = "prefect-platform .env values for the ${var.name} host (JSON object of .env keys)"
  recovery_window_in_days = var.secret_recovery_window_in_days
  generated = {
    PREFECT_API_AUTH_STRING = "admin:%s"
    POSTGRES_PASSWORD       = "%s"
  }
}

data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

module "host" {
  source              = "../modules/compose-host"
  name                = var.name
  vpc_id              = local.create_vpc ? module.network[0].vpc_id : var.vpc_id
  subnet_id           = local.create_vpc ? module.network[0].public_subnet_ids[0] : var.subnet_id
  ami_id              = var.ami_id == null ? nonsensitive(data.aws_ssm_parameter.al2023[0].value) : var.ami_id
  instance_type       = var.instance_type
  root_volume_size_gb = var.root_volume_size_gb
  ebs_kms_key_id      = var.ebs_kms_key_id
  ingress_ports       = var.ingress_ports
  ingress_cidrs       = var.ingress_cidrs
  ssh_cidrs           = var.ssh_cidrs
  secret_arn          = local.secret_arn
  secret_kms_key_arn  = var.secret_kms_key_arn
  backup_bucket       = local.backup_bucket
  backup_prefix       = var.backup_prefix
  bootstrap_script    = local.bootstrap_script
  bootstrap_settings  = local.bootstrap_settings
  # The bucket's policy is in place before the host can write.
  depends_on = [aws_s3_bucket_policy.backups]
}

# ---- Backup bucket (when none is given): private, encrypted, versioned, TLS only ----
resource "aws_s3_bucket" "backups" {
  count         = var.backup_bucket == null ? 1 : 0
  bucket        = local.backup_bucket
  force_destroy = var.backup_bucket_force_destroy
}

resource "aws_s3_bucket_public_access_block" "backups" {
  count                   = length(aws_s3_bucket.backups)
  bucket                  = aws_s3_bucket.backups[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  count  = length(aws_s3_bucket.backups)
  bucket = aws_s3_bucket.backups[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  count  = length(aws_s3_bucket.backups)
  bucket = aws_s3_bucket.backups[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Versioning: a backup overwritten or deleted by mistake (or by a compromised host) stays
# recoverable until the noncurrent version expires.
resource "aws_s3_bucket_versioning" "backups" {
  count  = length(aws_s3_bucket.backups)
  bucket = aws_s3_bucket.backups[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  count  = var.backup_bucket == null && var.backup_retention_days > 0 ? 1 : 0
  bucket = aws_s3_bucket.backups[0].id
  rule {
    id     = "expire-backups"
    status = "Enabled"
    filter {
      prefix = var.backup_prefix
    }
    expiration {
      days = var.backup_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }
  depends_on = [aws_s3_bucket_versioning.backups]
}

data "aws_iam_policy_document" "backups_tls_only" {
  count = length(aws_s3_bucket.backups)
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.backups[0].arn, "${aws_s3_bucket.backups[0].arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "backups" {
  count      = length(aws_s3_bucket.backups)
  bucket     = aws_s3_bucket.backups[0].id
  policy     = data.aws_iam_policy_document.backups_tls_only[0].json
  depends_on = [aws_s3_bucket_public_access_block.backups]
}
