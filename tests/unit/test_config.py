"""Settings: the seed's variable names, embedded defaults and derived URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from asgard_ray.config import Mode, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch


def test_seed_variables_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://mlflow-service.asgard.svc.cluster.local:5000")
    clean_env.setenv("FEAST_REPO_PATH", "/tmp/feast_repo")
    clean_env.setenv("S3_BUCKET", "mlflow-artifacts")
    clean_env.setenv("AWS_REGION", "eu-west-1")
    clean_env.setenv("TRINO_PORT", "8081")
    clean_env.setenv("GOLD_SCHEMA", "gold_v2")
    s = Settings()
    assert s.tracking_uri == "http://mlflow-service.asgard.svc.cluster.local:5000"
    assert s.feast_repo == Path("/tmp/feast_repo")
    assert s.s3_bucket == "mlflow-artifacts"
    assert s.aws_region == "eu-west-1"
    assert s.trino_port == 8081
    assert s.gold_uri("customer_aggregates") == "s3://mlflow-artifacts/gold_v2/customer_aggregates"


def test_embedded_defaults_are_loopback(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.asgard_mode is Mode.EMBEDDED
    assert s.s3_endpoint == "http://127.0.0.1:9000"
    assert s.tracking_uri == "http://127.0.0.1:5000"
    assert s.dashboard_url == "http://127.0.0.1:8265"
    assert s.api_url == "http://127.0.0.1:8000"


def test_production_without_endpoint_means_aws(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASGARD_MODE", "production")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "a-real-secret")
    s = Settings()
    assert s.s3_endpoint is None
    assert "S3_ENDPOINT_URL" not in s.worker_env()


def test_output_buckets_parse_from_json(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASGARD_OUTPUT_BUCKETS", '["a", "b"]')
    assert Settings().asgard_output_buckets == ["a", "b"]


def test_secret_is_not_in_repr(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    assert "very-secret-value" not in repr(Settings())


def test_bad_port_is_rejected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRINO_PORT", "not-a-port")
    with pytest.raises(ValueError, match="trino_port"):
        Settings()


def test_production_refuses_the_default_s3_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASGARD_MODE", "production")
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY"):
        Settings()


def test_to_env_carries_secret_values_not_masks(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    clean_env.setenv("ASGARD_API_KEY", "s3cret-key-123")
    clean_env.setenv("ASGARD_API_READ_KEYS", '["ro-1", "ro-2"]')
    env = Settings(asgard_home=Path("rel-home")).to_env()
    assert env["ASGARD_API_KEY"] == "s3cret-key-123"
    assert json.loads(env["ASGARD_API_READ_KEYS"]) == ["ro-1", "ro-2"]
    assert "*" not in json.dumps(env)
    assert Path(env["ASGARD_HOME"]).is_absolute()
    assert env["RAY_AUTH_TOKEN_PATH"] == str((Path("rel-home") / "ray" / "auth_token").absolute())
    # a child that reads this environment gets the same settings back, secrets included
    for key, value in env.items():
        clean_env.setenv(key, value)
    child = Settings()
    assert child.asgard_api_key is not None and child.asgard_api_key.get_secret_value() == "s3cret-key-123"
    assert [k.get_secret_value() for k in child.asgard_api_read_keys] == ["ro-1", "ro-2"]


def test_token_path_lives_under_home_in_embedded_mode(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(asgard_home=tmp_path).token_path == tmp_path / "ray" / "auth_token"
    assert Settings(asgard_mode="production", aws_secret_access_key="x").token_path is None


@pytest.mark.parametrize(
    ("mode", "ack", "wal_dir", "expected"),
    [
        ("embedded", None, None, "home/monitoring-wal"),  # auto: the S3 server's disk is this disk
        ("production", None, None, None),  # auto: a lost node would take its log along
        ("embedded", "s3", None, None),
        ("production", "wal", "/mnt/pv/wal", "/mnt/pv/wal"),  # a persistent volume on the actor's node
    ],
)
def test_monitoring_acknowledgement_follows_the_mode(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: str, ack: str | None, wal_dir: str | None, expected: str | None
) -> None:
    clean_env.setenv("ASGARD_MODE", mode)
    clean_env.setenv("ASGARD_HOME", str(tmp_path / "home"))
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "a-real-secret")
    for name, value in (("ASGARD_MONITORING_ACK", ack), ("ASGARD_MONITORING_WAL_DIR", wal_dir)):
        if value is not None:
            clean_env.setenv(name, value)
    got = Settings().monitoring_wal_dir
    assert got == (None if expected is None else Path(expected) if expected.startswith("/") else tmp_path / expected)


def test_monitoring_ack_rejects_unknown_values(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ASGARD_MONITORING_ACK", "memory")
    with pytest.raises(ValueError, match="ASGARD_MONITORING_ACK|asgard_monitoring_ack"):
        Settings()
