"""Credential resolution: environment variables, and a prefect-aws AwsSecret block backed by Secrets
Manager (moto on loopback) whose rotation is picked up by the next resolver without a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from flows.credentials import BLOCK_ENV, CredentialResolver, MissingCredentialsError
from flows.warehouses import WarehouseConfigError, resolve_warehouse
from tests.flows.elt_testkit import DuckWarehouse

SNOWFLAKE_BASE = {
    "WAREHOUSE": "snowflake",
    "SNOWFLAKE_ACCOUNT": "xy12345.eu-central-1",
    "SNOWFLAKE_USER": "loader",
    "SNOWFLAKE_DATABASE": "ANALYTICS",
    "SNOWFLAKE_WAREHOUSE": "TRANSFORMING",
}


# --- environment ---------------------------------------------------------------------------------


def test_duckdb_is_the_default_and_its_path_comes_from_duckdb_path(tmp_path: Path) -> None:
    default = resolve_warehouse(environ={})
    assert default.kind == "duckdb" and default.path == (Path.cwd() / "data" / "warehouse.duckdb")
    custom = resolve_warehouse(environ={"WAREHOUSE": "DuckDB", "DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    assert custom.path == tmp_path / "w.duckdb"
    assert custom.dbt_env() == {"DUCKDB_PATH": str(tmp_path / "w.duckdb"), "DUCKDB_MEMORY_LIMIT": "384MB"}
    assert resolve_warehouse(environ={"DUCKDB_MEMORY_LIMIT": "1GB"}).memory_limit == "1GB"
    with pytest.raises(WarehouseConfigError, match="DUCKDB_MEMORY_LIMIT must be a size like 384MB"):
        resolve_warehouse(environ={"DUCKDB_MEMORY_LIMIT": "lots"})


def test_unknown_warehouse_is_rejected() -> None:
    with pytest.raises(
        WarehouseConfigError, match="WAREHOUSE must be 'duckdb' or 'snowflake', got 'bigquery'"
    ):
        resolve_warehouse(environ={"WAREHOUSE": "bigquery"})


def test_snowflake_names_every_missing_variable_and_no_value() -> None:
    with pytest.raises(MissingCredentialsError) as err:
        resolve_warehouse(environ={"WAREHOUSE": "snowflake", "SNOWFLAKE_USER": "loader"})
    message = str(err.value)
    for name in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_DATABASE", "SNOWFLAKE_WAREHOUSE", "SNOWFLAKE_PASSWORD"):
        assert name in message
    assert "SNOWFLAKE_PRIVATE_KEY" in message  # the key-pair alternative is named too
    assert "loader" not in message and "SNOWFLAKE_USER," not in message


def test_snowflake_password_auth_drives_dlt_and_dbt() -> None:
    wh = resolve_warehouse(environ={**SNOWFLAKE_BASE, "SNOWFLAKE_PASSWORD": "pw-123"})
    assert (wh.kind, wh.dbt_target, wh.auth) == ("snowflake", "snowflake", "password")
    assert "pw-123" not in repr(wh) and "pw-123" not in wh.describe()
    env = wh.dbt_env()
    assert env["SNOWFLAKE_PASSWORD"] == "pw-123" and env["SNOWFLAKE_PRIVATE_KEY"] == ""
    credentials = wh.dlt_destination().configuration(None, accept_partial=True).credentials
    assert (credentials.host, credentials.username, credentials.database) == (
        "xy12345.eu-central-1",
        "loader",
        "ANALYTICS",
    )
    assert credentials.password == "pw-123" and credentials.private_key is None


def test_snowflake_key_pair_auth(tmp_path: Path) -> None:
    key = tmp_path / "rsa_key.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n")
    wh = resolve_warehouse(environ={**SNOWFLAKE_BASE, "SNOWFLAKE_PRIVATE_KEY_PATH": str(key)})
    assert wh.auth == "key-pair"
    assert wh.dbt_env()["SNOWFLAKE_PRIVATE_KEY_PATH"] == str(key) and wh.dbt_env()["SNOWFLAKE_PASSWORD"] == ""
    with pytest.raises(WarehouseConfigError, match="SNOWFLAKE_PRIVATE_KEY_PATH=/nope is not a readable file"):
        resolve_warehouse(environ={**SNOWFLAKE_BASE, "SNOWFLAKE_PRIVATE_KEY_PATH": "/nope"})


def test_resolver_require_names_missing_credentials() -> None:
    resolver = CredentialResolver({"SQL_SOURCE_URL": ""})
    with pytest.raises(
        MissingCredentialsError, match="the sql source needs SQL_SOURCE_URL: set it in the environment"
    ):
        resolver.require(["SQL_SOURCE_URL"], "the sql source")


# --- AwsSecret block (Secrets Manager on loopback) ----------------------------------------------


@pytest.fixture(scope="module")
def secrets_manager() -> Iterator[object]:
    # One server per module: prefect-aws caches boto3 clients, endpoint included.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://{host}:{port}")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "eu-central-1")
        try:
            yield boto3.client("secretsmanager", region_name="eu-central-1")
        finally:
            server.stop()


def _save_block(name: str, secret_name: str) -> None:
    from prefect_aws import AwsCredentials
    from prefect_aws.secrets_manager import AwsSecret

    AwsSecret(aws_credentials=AwsCredentials(region_name="eu-central-1"), secret_name=secret_name).save(
        name, overwrite=True
    )


def test_block_values_win_over_the_environment_and_rotation_needs_no_restart(
    secrets_manager, monkeypatch: pytest.MonkeyPatch, warehouse: DuckWarehouse
) -> None:
    secrets_manager.create_secret(
        Name="prefect-platform/flows", SecretString=json.dumps({"SNOWFLAKE_PASSWORD": "from-aws-v1"})
    )
    _save_block("flows-credentials", "prefect-platform/flows")
    env = {**SNOWFLAKE_BASE, "SNOWFLAKE_PASSWORD": "from-env", BLOCK_ENV: "flows-credentials"}

    resolver = CredentialResolver(env)
    assert resolver.get("SNOWFLAKE_PASSWORD") == "from-aws-v1"
    assert resolver.source_of("SNOWFLAKE_PASSWORD") == "aws-secret-block"
    # Names not in the secret fall back to the environment.
    assert (
        resolver.get("SNOWFLAKE_USER") == "loader" and resolver.source_of("SNOWFLAKE_USER") == "environment"
    )
    assert resolve_warehouse(environ=env).password == "from-aws-v1"

    # Rotation: the next resolver (= the next flow run) reads the new version.
    secrets_manager.put_secret_value(
        SecretId="prefect-platform/flows", SecretString=json.dumps({"SNOWFLAKE_PASSWORD": "from-aws-v2"})
    )
    assert CredentialResolver(env).get("SNOWFLAKE_PASSWORD") == "from-aws-v2"


def test_block_can_supply_what_the_environment_lacks(secrets_manager) -> None:
    secrets_manager.create_secret(
        Name="sf-keypair",
        SecretString=json.dumps(
            {"SNOWFLAKE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nabc\n", "EMPTY": None}
        ),
    )
    _save_block("sf-keypair-block", "sf-keypair")
    wh = resolve_warehouse(environ={**SNOWFLAKE_BASE, BLOCK_ENV: "sf-keypair-block"})
    assert wh.auth == "key-pair"


def test_block_misconfiguration_is_explained(secrets_manager) -> None:
    with pytest.raises(MissingCredentialsError, match="no AwsSecret block of that name"):
        CredentialResolver({BLOCK_ENV: "no-such-block"})
    secrets_manager.create_secret(Name="not-json", SecretString="hunter2")
    _save_block("not-json-block", "not-json")
    with pytest.raises(MissingCredentialsError, match="must be a JSON object") as err:
        CredentialResolver({BLOCK_ENV: "not-json-block"})
    assert "hunter2" not in str(err.value)
