# One EC2 host that runs the whole docker-compose stack, bootstrapped by the project's own
# ec2-userdata.sh. Reached through SSM Session Manager (no SSH), with a role that may read one
# secret and write one backup prefix, and nothing else.
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition = data.aws_partition.current.partition
  # NAME=${NAME:-'value'}: the value is the default, the environment of a re-run still wins
  # (`sudo REPO_REF=v0.2.0 bash /var/lib/cloud/instance/user-data.txt`), as in the script itself.
  settings_lines = flatten([
    for k in sort(keys(var.bootstrap_settings)) : [
      "${k}=$${${k}:-'${replace(var.bootstrap_settings[k], "'", "'\\''")}'}",
      "export ${k}",
    ]
  ])
  user_data = join("\n", concat(
    ["#!/usr/bin/env bash", "# ---- Settings from Terraform (terraform/modules/compose-host) ----"],
    local.settings_lines,
    ["# ---- The project's ec2-userdata.sh, unchanged ----", var.bootstrap_script],
  ))
}

# ---- Network access: the front door's ports, SSH closed unless asked for ----
resource "aws_security_group" "host" {
  name        = "${var.name}-host"
  description = "prefect-platform host: front door ports in, everything out"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name}-host" }
}

resource "aws_vpc_security_group_ingress_rule" "front_door" {
  for_each          = { for pair in setproduct(var.ingress_ports, var.ingress_cidrs) : "${pair[0]}-${pair[1]}" => pair }
  security_group_id = aws_security_group.host.id
  description       = "prefect-platform front door"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.ssh_cidrs)
  security_group_id = aws_security_group.host.id
  description       = "SSH (prefer SSM Session Manager)"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.value
}

# Out: package mirrors, Docker's repository, the git remote, Secrets Manager, SSM, S3, warehouses.
resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.host.id
  description       = "all outbound"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

# ---- Identity: one secret, one backup prefix, SSM ----
data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "host" {
  name               = "${var.name}-host"
  description        = "prefect-platform host: read its secret, write its backups, SSM"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

data "aws_iam_policy_document" "host" {
  statement {
    sid       = "ReadPlatformSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.secret_arn]
  }

  dynamic "statement" {
    for_each = var.secret_kms_key_arn == null ? [] : [var.secret_kms_key_arn]
    content {
      sid       = "DecryptItOnlyThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
      }
    }
  }

  statement {
    sid       = "WriteBackups"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["arn:${local.partition}:s3:::${var.backup_bucket}/${var.backup_prefix}*"]
  }

  statement {
    sid       = "ListBackups"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.backup_bucket}"]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.backup_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "host" {
  name   = "platform"
  role   = aws_iam_role.host.id
  policy = data.aws_iam_policy_document.host.json
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.host.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "host" {
  name = "${var.name}-host"
  role = aws_iam_role.host.name
}

# ---- The host ----
resource "aws_instance" "host" {
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.host.id]
  iam_instance_profile   = aws_iam_instance_profile.host.name
  user_data              = local.user_data
  # A public address from the first boot: the bootstrap downloads packages before the Elastic IP
  # is associated (which then replaces this address).
  associate_public_ip_address = true

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
    # 2 hops: containers (a bridge network away) reach the instance role's credentials, which
    # ec2-userdata.sh and the AwsSecret block use from inside containers.
    http_put_response_hop_limit = 2
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    kms_key_id            = var.ebs_kms_key_id
    delete_on_termination = true
  }

  tags        = { Name = var.name }
  volume_tags = { Name = "${var.name}-root" }

  lifecycle {
    # A newer AMI (the default follows Amazon Linux's latest) must not replace a running host and
    # its data; replace it on purpose with `terraform apply -replace=...`.
    ignore_changes = [ami]
    precondition {
      condition     = length(local.user_data) <= 16384
      error_message = "The user data exceeds EC2's 16 KiB limit."
    }
  }

  depends_on = [aws_iam_role_policy.host]
}

resource "aws_eip" "host" {
  count    = var.elastic_ip ? 1 : 0
  domain   = "vpc"
  instance = aws_instance.host.id
  tags     = { Name = var.name }
}
