"""Platform settings: the one reader of the environment.

Field names match the seed guide's environment variables (``MLFLOW_TRACKING_URI``, ``S3_BUCKET``,
``TRINO_HOST``, ...); pydantic-settings matches them case-insensitively. Library code receives a
``Settings`` instance; only entrypoints (``jobs/*``, the Serve app, the CLI, test fixtures) build one.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_S3_SECRET", "Mode", "Settings"]

DEFAULT_S3_SECRET = "asgard-secret"
"""The embedded S3 server's secret: fine on loopback, refused in production."""


class Mode(StrEnum):
    """Where the platform runs."""

    EMBEDDED = "embedded"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Asgard settings, read from the environment (and an optional ``.env`` file)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # --- mode and embedded state -------------------------------------------------------------
    asgard_mode: Mode = Mode.EMBEDDED
    """``embedded`` runs everything on loopback from ``asgard up``; ``production`` points at real services."""
    asgard_home: Path = Path(".asgard")
    """Folder for the embedded stack's state: pid files, logs, the MLflow database, the S3 server's objects."""

    # --- MLflow ------------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = None
    """MLflow tracking server URI; embedded default is the local server on ``mlflow_port``."""
    mlflow_artifact_location: str | None = None
    """Artifact root for experiments the platform creates; default is the server's proxied root."""

    # --- Feast -------------------------------------------------------------------------------
    feast_repo_path: Path | None = None
    """Feast repo folder (``feature_store.yaml`` is written there); default ``<home>/feast_repo``."""
    feast_project: str = "asgard"
    """Feast project name."""

    # --- S3 ----------------------------------------------------------------------------------
    aws_access_key_id: str = "asgard"
    """S3 access key (the embedded server accepts any)."""
    aws_secret_access_key: str = Field(default=DEFAULT_S3_SECRET, repr=False)
    """S3 secret key (the embedded default is refused in production mode)."""
    aws_region: str = "us-east-1"
    """S3 region."""
    s3_bucket: str = "asgard"
    """The platform's bucket: gold tables, Feast registry, MLflow artifacts, monitoring log."""
    s3_endpoint_url: str | None = None
    """S3 endpoint; embedded default is the local server on ``s3_port``. Unset in production means AWS."""
    asgard_output_buckets: list[str] = ["asgard", "my-bucket"]
    """Buckets batch scoring may write to (the seed's examples write to ``my-bucket``)."""
    asgard_input_buckets: list[str] | None = None
    """Buckets or ``bucket/prefix`` entries requests may read from; default the platform bucket plus the output buckets."""
    asgard_local_root: Path | None = None
    """Development only: a host folder requests may name as ``local://<relative>`` (realpath-confined); unset: none."""
    asgard_output_lease_ttl_s: float = Field(default=60.0, gt=0)
    """Seconds an output-path lease (``<output_path>/_lease.json``) lives without a heartbeat; a dead job's lease expires after this."""

    # --- gold layer (production path: Iceberg through Trino) ----------------------------------
    trino_host: str = "trino.data-platform.svc.cluster.local"
    """Trino host serving the Iceberg gold layer (production)."""
    trino_port: int = 8080
    """Trino port."""
    trino_catalog: str = "iceberg"
    """Trino catalog of the gold layer."""
    gold_schema: str = "gold"
    """Namespace of the gold tables in the Iceberg catalog (and Trino's schema); Parquet-folder tables live under ``s3://<bucket>/<GOLD_SCHEMA>/``."""
    asgard_gold_catalog: Literal["sql", "rest", "glue", "hive"] = "sql"
    """Iceberg catalog type (pyiceberg): ``sql`` (embedded default: SQLite under ``ASGARD_HOME``), ``rest``, ``glue`` or ``hive``."""
    asgard_gold_catalog_uri: str | None = None
    """Catalog URI: a SQLAlchemy URL (sql), the REST endpoint (rest) or a thrift URI (hive); default SQLite under ``<home>/iceberg``."""
    asgard_gold_warehouse: str | None = None
    """Warehouse location of new Iceberg tables; default ``s3://<bucket>/warehouse``."""
    asgard_gold_catalog_properties: dict[str, str] = {}
    """Extra pyiceberg catalog properties (JSON object), non-secret ones only (``rest.sigv4-enabled``, ``glue.region``...)."""
    asgard_gold_catalog_credential: SecretStr | None = None
    """The REST catalog's OAuth client credential (``client_id:client_secret``) or token; from the environment, never stored."""
    asgard_gold_target_file_mb: int = Field(default=32, ge=1, le=1024)
    """Target data-file size of the gold tables the platform writes (``write.target-file-size-bytes``)."""

    # --- Ray and ports -------------------------------------------------------------------------
    ray_address: str | None = None
    """Ray cluster to join; default ``auto`` (the head that ``asgard up`` started)."""
    ray_namespace: str = "asgard"
    """Namespace for named actors (monitoring, job tracking)."""
    asgard_api_host: str = "127.0.0.1"
    """Host the Serve HTTP proxy binds."""
    asgard_api_port: int = 8000
    """Port of the control API."""
    asgard_s3_port: int = 9000
    """Port of the embedded S3 server."""
    asgard_mlflow_port: int = 5000
    """Port of the embedded MLflow server."""
    asgard_ray_port: int = 6379
    """GCS port of the embedded Ray head."""
    asgard_dashboard_port: int = 8265
    """Port of the Ray dashboard (and the Jobs API)."""
    asgard_num_cpus: int | None = None
    """CPUs the embedded Ray head offers; default all."""
    ray_auth_token_path: Path | None = None
    """Ray auth token file; embedded default ``<home>/ray/auth_token``, created by ``asgard up`` (0600)."""

    # --- API security and limits --------------------------------------------------------------
    asgard_api_key: SecretStr | None = None
    """Write-scope API key; when any key is set, every route but ``/mlops/health`` needs ``Authorization: Bearer``."""
    asgard_api_read_keys: list[SecretStr] = []
    """Read-only API keys (JSON list): GET routes only; mutating routes answer 403."""
    asgard_api_key_file: Path | None = None
    """File with one ``<scope>:<key>`` per line (scope ``write`` or ``read``), for keys mounted from a secret."""
    asgard_max_body_bytes: int = 10 * 1024 * 1024
    """Largest request body accepted; larger gets 413 (point big entity sets at ``entities_source``)."""

    # --- job admission (the jobs core: a running limit per kind, a FIFO queue behind it) -----------
    asgard_max_running_jobs_training: int = Field(default=2, ge=1)
    """Training jobs running at once; more wait in the training queue."""
    asgard_max_running_jobs_scoring: int = Field(default=4, ge=1)
    """Batch-scoring jobs running at once; more wait in the scoring queue."""
    asgard_max_running_jobs_monitoring: int = Field(default=4, ge=1)
    """Drift (monitoring compute) jobs running at once; more wait in the monitoring queue."""
    asgard_max_running_jobs_materialize: int = Field(default=1, ge=1)
    """Materialization jobs running at once (each writes the online store); more wait in the queue."""
    asgard_max_queued_jobs_training: int = Field(default=1000, ge=0)
    """Training jobs waiting behind the running ones; past it a request gets 429 with ``Retry-After``."""
    asgard_max_queued_jobs_scoring: int = Field(default=1000, ge=0)
    """Batch-scoring jobs waiting behind the running ones; past it a request gets 429 with ``Retry-After``."""
    asgard_max_queued_jobs_monitoring: int = Field(default=1000, ge=0)
    """Drift jobs waiting behind the running ones; past it a request gets 429 with ``Retry-After``."""
    asgard_max_queued_jobs_materialize: int = Field(default=1000, ge=0)
    """Materialization jobs waiting behind the running one; past it a request gets 429 with ``Retry-After``."""

    asgard_job_pending_timeout_s: float = Field(default=300.0, gt=0)
    """How long a started job may wait for the CPUs it asked for; past it the job fails with what it waited for."""
    asgard_cluster_autoscaling: bool = False
    """Whether the Ray cluster adds nodes on demand (KubeRay autoscaler): then work larger than today's nodes is not refused."""

    # --- training work limits (checked before a training job starts; 422 past them) -------------------
    asgard_fast_path_rows: int = Field(default=5_000, ge=0)
    """Training and scoring requests with at most this many entity rows run on a warm worker (no Ray Data,
    no trial tasks, no new process); 0 turns the fast path off. Chosen by ``bench/interactive.py``."""
    asgard_fast_path_trials: int = Field(default=8, ge=1)
    """Most trials (a fixed grid) a fast-path training request may run, one after another on the warm worker."""
    asgard_warm_workers: int | None = Field(default=None, ge=0, le=16)
    """Warm workers the job supervisor keeps for small jobs (each holds MLflow, pandas and the three frameworks,
    ~0.5 GB); default one per CPU (``ASGARD_NUM_CPUS``, else the CPUs of the node the supervisor starts on), 1-4.
    A small job finding them all busy waits for one."""
    asgard_max_classes: int = Field(default=100, ge=2)
    """Most distinct values a classification target may have; more is a 422 (train a regression instead)."""
    asgard_max_trials: int = Field(default=200, ge=1)
    """Most trials one training request may run, counted after the grid product (samples x grid combinations)."""
    asgard_max_estimators: int = Field(default=5000, ge=1)
    """Largest tree or boosting-round count per fit (n_estimators, max_iter, n_estimators x num_parallel_tree)."""
    asgard_max_tree_depth: int = Field(default=64, ge=1)
    """Largest max_depth a training request may set or tune."""
    asgard_max_leaves: int = Field(default=4096, ge=2)
    """Largest leaf count per tree (num_leaves, max_leaves, max_leaf_nodes)."""
    asgard_max_bins: int = Field(default=1024, ge=2)
    """Largest histogram bin count (xgboost max_bin)."""

    # --- training execution modes (in-memory trials vs data-parallel workers) -------------------
    asgard_train_distributed_rows: int = Field(default=1_000_000, ge=1)
    """Training sets with at least this many entity rows train data-parallel (xgboost/lightgbm) by default."""
    asgard_train_max_workers: int = Field(default=16, ge=1)
    """Most workers one data-parallel trial may ask for (``execution.num_workers``)."""
    asgard_train_default_workers: int = Field(default=2, ge=1)
    """Workers per data-parallel trial when a request does not name ``execution.num_workers``."""
    asgard_train_cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs (and threads) each data-parallel worker reserves; the default 2 workers x 1 CPU fit a 2-CPU node."""
    asgard_train_max_failures: int = Field(default=2, ge=0)
    """Restarts of a data-parallel trial after a worker dies; each resumes from the trial's last checkpoint."""
    asgard_train_checkpoint_s: float = Field(default=60.0, gt=0)
    """Seconds between the checkpoints of a data-parallel trial (a fit shorter than this writes none)."""
    asgard_train_cpus_per_trial: float | None = Field(default=None, gt=0)
    """CPUs (and threads) each in-memory trial holds; default: a lone trial gets every CPU of the largest node,
    many trials one CPU each, side by side."""
    asgard_train_storage_uri: str | None = None
    """Where data-parallel trials keep checkpoints (every node must reach it); default ``s3://<bucket>/training/runs``."""

    # --- monitoring memory and retention ---------------------------------------------------------
    asgard_monitoring_retention_days: int = Field(default=365, ge=0)
    """Days of monitoring records kept on S3; older date partitions are deleted (0 keeps everything)."""
    asgard_monitoring_memory_records: int = Field(default=50_000, ge=1)
    """Most records the monitoring actor holds in memory; older history is paged from S3."""
    asgard_monitoring_memory_mb: int = Field(default=128, ge=1)
    """Most serialized megabytes of records the monitoring actor holds in memory (Python needs ~4x that)."""
    asgard_monitoring_ack: Literal["auto", "wal", "s3"] = "auto"
    """When the monitoring actor acknowledges a write. ``wal``: once it is fsynced to the actor node's
    write-ahead log (``ASGARD_MONITORING_WAL_DIR``); it reaches S3 milliseconds later, and the log is
    replayed after a crash. ``s3``: once its S3 PUT returned. ``auto``: ``wal`` in embedded mode (the S3
    server keeps its objects on the same disk), ``s3`` in production (a lost node would take its log along)."""
    asgard_monitoring_wal_dir: Path | None = None
    """The monitoring write-ahead log's folder; default ``<ASGARD_HOME>/monitoring-wal``. On a cluster
    (``ASGARD_MONITORING_ACK=wal``), a persistent volume mounted on the node that runs the actor."""

    # --- real-time serving (the prediction app, asgard_ray.serving) -----------------------------------
    asgard_serve_max_rows: int = Field(default=1000, ge=1)
    """Most rows (entities or instances) one real-time request may carry; more get 413 (use /mlops/serve/batch)."""
    asgard_serve_timeout_s: float = Field(default=30.0, gt=0)
    """How long the control route waits for the prediction deployment before answering 503."""
    asgard_serve_alias_poll_s: float = Field(default=1.0, gt=0)
    """How often a prediction replica reads the aliases it serves from the registry (a moved alias swaps then)."""
    asgard_serve_model_cache_size: int = Field(default=4, ge=1)
    """Model versions one prediction replica keeps loaded (least recently used goes first)."""
    asgard_serve_min_replicas: int = Field(default=1, ge=0)
    """Fewest prediction replicas (Serve autoscaling)."""
    asgard_serve_max_replicas: int = Field(default=2, ge=1)
    """Most prediction replicas (Serve autoscaling)."""
    asgard_serve_target_ongoing_requests: float = Field(default=32, gt=0)
    """Ongoing requests per prediction replica the autoscaler aims for."""
    asgard_serve_max_ongoing_requests: int = Field(default=64, ge=1)
    """Requests one prediction replica runs at once (Serve's default of 5 collapses throughput under load)."""
    asgard_serve_max_queued_requests: int = Field(default=256, ge=-1)
    """Requests queued for the prediction deployment before Serve sheds load with 503 (-1: no limit)."""
    asgard_serve_num_cpus: float = Field(default=0.0, ge=0)
    """CPUs one prediction replica reserves (fractional; 0 leaves the cores to training and scoring)."""
    asgard_serve_sample_rate: float = Field(default=0.01, ge=0, le=1)
    """Share of real-time predictions sampled into the monitoring actor (0 turns sampling off)."""
    feast_online_store: Literal["sqlite", "redis"] = "sqlite"
    """Feast online store: SQLite under the Feast repo (embedded) or Redis (production)."""
    feast_redis_connection_string: SecretStr | None = None
    """Redis connection for the online store (``host:port,password=...,ssl=true``), when ``feast_online_store=redis``."""
    feast_registry_type: Literal["file", "sql"] = "file"
    """Feast registry: one file on S3 (embedded; one writer at a time) or Feast's SQL registry (production; concurrent writers)."""
    feast_registry_path: SecretStr | None = None
    """The SQL registry's SQLAlchemy URL (``postgresql+psycopg://user:password@host:5432/feast``) when ``feast_registry_type=sql``."""
    feast_offline_store: Literal["ray", "trino"] = "ray"
    """Feast offline store in ``feature_store.yaml``: Ray (default) or Trino over the gold Iceberg catalog (``TRINO_*``, production)."""
    trino_user: str = "asgard"
    """Trino user of Feast's Trino offline store."""
    trino_password: SecretStr | None = None
    """Trino password (basic auth over https) for Feast's Trino offline store; from the environment, never stored."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def s3_endpoint(self) -> str | None:
        """The S3 endpoint to use: explicit, else the embedded server, else AWS (None)."""
        if self.s3_endpoint_url:
            return self.s3_endpoint_url
        if self.asgard_mode is Mode.EMBEDDED:
            return f"http://127.0.0.1:{self.asgard_s3_port}"
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI to use."""
        return self.mlflow_tracking_uri or f"http://127.0.0.1:{self.asgard_mlflow_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dashboard_url(self) -> str:
        """The Ray dashboard (and Jobs API) URL."""
        return f"http://127.0.0.1:{self.asgard_dashboard_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def api_url(self) -> str:
        """The control API's base URL."""
        return f"http://{self.asgard_api_host}:{self.asgard_api_port}"

    @property
    def feast_repo(self) -> Path:
        """The Feast repo folder."""
        return (self.feast_repo_path or self.asgard_home / "feast_repo").absolute()

    @property
    def monitoring_wal_dir(self) -> Path | None:
        """Where the monitoring actor keeps its write-ahead log, or None when it acknowledges after the S3 PUT."""
        wal = self.asgard_monitoring_ack == "wal" or (self.asgard_monitoring_ack == "auto" and self.embedded)
        return (self.asgard_monitoring_wal_dir or self.asgard_home / "monitoring-wal").absolute() if wal else None

    @property
    def warm_workers(self) -> int:
        """The warm-worker pool size: ``ASGARD_WARM_WORKERS``, else one per CPU of this node, 1-4."""
        if self.asgard_warm_workers is not None:
            return self.asgard_warm_workers
        return min(4, max(1, self.asgard_num_cpus or os.cpu_count() or 1))

    @property
    def embedded(self) -> bool:
        """Whether the platform runs on the embedded stack."""
        return self.asgard_mode is Mode.EMBEDDED

    def s3_uri(self, *parts: str) -> str:
        """Build ``s3://<bucket>/<parts...>`` in the platform bucket."""
        key = "/".join(p.strip("/") for p in parts if p)
        return f"s3://{self.s3_bucket}/{key}"

    def gold_uri(self, table_name: str) -> str:
        """Location of a Parquet-folder gold table (``source.format: parquet``) under the platform bucket."""
        return self.s3_uri(self.gold_schema, table_name)

    @property
    def gold_catalog_uri(self) -> str | None:
        """The Iceberg catalog's URI: explicit, else (sql) SQLite under ``<home>/iceberg``."""
        if self.asgard_gold_catalog_uri:
            return self.asgard_gold_catalog_uri
        if self.asgard_gold_catalog == "sql":
            return f"sqlite:///{(self.asgard_home / 'iceberg' / 'catalog.db').absolute()}"
        return None

    @property
    def gold_warehouse(self) -> str:
        """Where new Iceberg tables are placed."""
        return self.asgard_gold_warehouse or self.s3_uri("warehouse")

    def state_locations(self) -> dict[str, str]:
        """Every S3 location that holds platform state, by what it holds: the one list of them.

        Every writer of platform state takes its prefix from here (``state_uri``), and the path
        resolver refuses requests that would write under any of these (``storage.paths``), so a new
        kind of state is refused to requests the day it is added. Each value is a canonical
        ``s3://bucket/prefix`` (locations that are not on S3, such as a local checkpoint folder, are
        left out: no request can name them).
        """
        places = {
            "gold": self.s3_uri(self.gold_schema),
            "warehouse": self.gold_warehouse,
            "feast": self.s3_uri("feast"),
            "mlflow_artifacts": self.s3_uri("mlflow-artifacts"),
            "mlflow_artifact_location": self.mlflow_artifact_location or "",
            "jobs": self.s3_uri("jobs"),
            "monitoring": self.s3_uri("monitoring"),
            "registry": self.s3_uri("registry"),
            "training": self.asgard_train_storage_uri or self.s3_uri("training"),
            "scoring_staging": self.s3_uri("predictions-staging"),
        }
        out = {}
        for name, uri in places.items():
            text = uri.strip().replace("s3a://", "s3://", 1).rstrip("/")
            if text.startswith("s3://") and "/" in text[5:]:
                out[name] = text
        return out

    def state_uri(self, area: str, *parts: str) -> str:
        """A key under one of the ``state_locations`` (``state_uri("jobs", kind, "x.json")``).

        Raises:
            KeyError: ``area`` is not a state location.
        """
        key = "/".join(p.strip("/") for p in parts if p)
        root = self.state_locations()[area]
        return f"{root}/{key}" if key else root

    @property
    def token_path(self) -> Path | None:
        """The Ray auth token file this process and its children use (None: Ray's own lookup)."""
        if self.ray_auth_token_path:
            return self.ray_auth_token_path.absolute()
        return (self.asgard_home / "ray" / "auth_token").absolute() if self.embedded else None

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Settings:
        if self.asgard_mode is Mode.PRODUCTION and self.aws_secret_access_key == DEFAULT_S3_SECRET:
            raise ValueError(
                "AWS_SECRET_ACCESS_KEY is the embedded S3 server's default; production mode needs the real secret "
                "(from a Kubernetes Secret or the environment)"
            )
        return self

    def to_env(self) -> dict[str, str]:
        """Every setting as an environment variable, for a child process that builds its own ``Settings``.

        This is the one place where secrets are unwrapped for a child: a ``SecretStr`` travels as its
        value (never its masked form), paths as absolute paths, lists as JSON. Unset fields are left out.
        """

        def text(value: Any) -> str:
            if isinstance(value, SecretStr):
                return value.get_secret_value()
            if isinstance(value, Path):
                return str(value.absolute())
            if isinstance(value, list):
                return json.dumps([v.get_secret_value() if isinstance(v, SecretStr) else v for v in value])
            if isinstance(value, dict):
                return json.dumps(value)
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(getattr(value, "value", value))

        env = {name.upper(): text(getattr(self, name)) for name in type(self).model_fields if getattr(self, name) is not None}
        if self.token_path:
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        return env

    def worker_env(self) -> dict[str, str]:
        """Environment that Ray workers need to reach S3 and MLflow (for ``runtime_env``)."""
        env = {
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_REGION": self.aws_region,
            "AWS_DEFAULT_REGION": self.aws_region,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "S3_BUCKET": self.s3_bucket,
            "ASGARD_MODE": self.asgard_mode.value,
            "ASGARD_S3_PORT": str(self.asgard_s3_port),
            "ASGARD_MLFLOW_PORT": str(self.asgard_mlflow_port),
            "GOLD_SCHEMA": self.gold_schema,
            # the gold catalog, resolved: a process that builds Settings() from this env (a job
            # entrypoint, a worker) must find the same catalog, not one under its own working folder
            "ASGARD_GOLD_CATALOG": self.asgard_gold_catalog,
            "ASGARD_GOLD_WAREHOUSE": self.gold_warehouse,
            "TRINO_CATALOG": self.trino_catalog,
        }
        if self.gold_catalog_uri:
            env["ASGARD_GOLD_CATALOG_URI"] = self.gold_catalog_uri
        if self.asgard_gold_catalog_properties:
            env["ASGARD_GOLD_CATALOG_PROPERTIES"] = json.dumps(self.asgard_gold_catalog_properties)
        if self.asgard_gold_catalog_credential is not None:
            env["ASGARD_GOLD_CATALOG_CREDENTIAL"] = self.asgard_gold_catalog_credential.get_secret_value()
        if self.s3_endpoint:
            env["S3_ENDPOINT_URL"] = self.s3_endpoint
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint
            env["FEAST_S3_ENDPOINT_URL"] = self.s3_endpoint
            env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_endpoint
        return env
