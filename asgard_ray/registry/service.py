"""The MLflow Model Registry: register runs' models as versions, list and describe models, aliases.

MLflow's ``register_model`` is not idempotent: the same run registered twice becomes two versions.
``ModelRegistry.register`` first looks for a version of that run and returns it instead. Each new
version carries the run's lineage tags (feature columns, views, label, classes...), so scoring and
monitoring can read them from the version alone; user tags can never overwrite them.

Concurrent registrations of one run (several Serve replicas, CLI, ``ray job submit`` drivers) are
serialised per model and run without depending on one process: each takes a lease on
``<registry state>/<model>/<run_id>`` with an S3 conditional PUT (``storage.OutputLease``), then
looks for a version of the run and creates one only if there is none. So N parallel requests end
with exactly one version, and no version number is ever created and deleted on the way: versions
stay contiguous. MLflow allocates the numbers of different runs in one transaction each
(``max + 1``), so parallel first registrations of different runs get 1..N. The first creation of
the registered model is raced: ``RESOURCE_ALREADY_EXISTS`` means another request won, and this one
proceeds. A failed request removes the registered model only if it created it and the model still
has no version at all, so it never deletes another request's work.

A version also keeps its training data: the Iceberg snapshots the run read (its
``asgard.gold.<table>.snapshot_id`` tags) are tagged ``asgard-<model>-v<version>``, so snapshot
expiry keeps them. The tag needs the version number, so it is set right after the version is
created, best effort (see ``ModelRegistry._tag_snapshots``).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from asgard_ray import lineage
from asgard_ray.config import Settings
from asgard_ray.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from asgard_ray.registry.schemas import (
    AliasResponse,
    ModelDetail,
    ModelList,
    ModelSummary,
    ModelVersionInfo,
    RegisterModelRequest,
    RegisterModelResponse,
)
from asgard_ray.types import check_model_name

__all__ = ["ModelRegistry", "ResolvedModel", "resolve_model_version"]

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[^'\"\\]+$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$")
REGISTER_WAIT_S = 120.0
"""How long a registration waits for a parallel registration of the same run to finish."""
REGISTER_LEASE_S = 20.0
"""Lifetime of a registration lease: a request that died holding it blocks the run's registration this long."""


class ResolvedModel(NamedTuple):
    """A concrete model version: unpacks as ``(version, run_id, model_uri, tags)``."""

    version: str
    run_id: str | None
    model_uri: str
    tags: dict[str, str]


def _client(settings: Settings) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """Turn MLflow's 'does not exist' and 'invalid value' errors into domain errors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        text = str(exc.message).lower()
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in text or "does not exist" in text:
            raise NotFound(f"{what} not found") from exc
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise InvalidRequest(f"{what}: {exc.message}") from exc
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":
            raise Conflict(f"{what} already exists") from exc
        raise


def _check_name(name: str) -> str:
    """The one ``ModelName`` rule (shared with scoring and monitoring), as a 422."""
    try:
        return check_model_name(name)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def _lineage_tags(run: Any) -> dict[str, str]:
    return {k: v for k, v in run.data.tags.items() if k.startswith("asgard.") and k != "asgard.warnings"}


def resolve_model_version(settings: Settings, name: str, version_or_alias: str | int | None = None) -> ResolvedModel:
    """Resolve a version number, an alias (``champion``) or ``latest``/None to a concrete version.

    Returns:
        ``(version, run_id, model_uri, tags)`` with ``model_uri`` = ``models:/<name>/<version>`` and
        the version's tags, completed with the training run's lineage tags when missing.

    Raises:
        NotFound: Unknown model, version or alias.
    """
    client = _client(settings)
    _check_name(name)
    ref = "latest" if version_or_alias is None else str(version_or_alias).strip()
    with _mlflow_errors(f"model {name!r}"):
        client.get_registered_model(name)
    if ref.lower() == "latest":
        versions = client.search_model_versions(f"name='{name}'")
        if not versions:
            raise NotFound(f"model {name!r} has no versions; register one with POST /mlops/registry")
        mv = max(versions, key=lambda v: int(v.version))
    elif ref.isdigit():
        with _mlflow_errors(f"version {ref} of model {name!r}"):
            mv = client.get_model_version(name, ref)
    else:
        with _mlflow_errors(f"alias {ref!r} of model {name!r}"):
            mv = client.get_model_version_by_alias(name, ref)
    tags = dict(mv.tags or {})
    if mv.run_id and lineage.TAG_FEATURE_COLUMNS not in tags:
        try:
            tags = {**_lineage_tags(client.get_run(mv.run_id)), **tags}
        except Exception:  # the run may be gone; the version still resolves
            log.warning("run %s of %s v%s is not readable", mv.run_id, name, mv.version)
    return ResolvedModel(str(mv.version), mv.run_id, f"models:/{name}/{mv.version}", tags)


class ModelRegistry:
    """Register, list and describe models, and manage aliases."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def client(self) -> Any:
        """A fresh MLflow client (cheap; keeps no global tracking state)."""
        return _client(self.settings)

    def _model_source(self, run: Any) -> tuple[str, str | None]:
        """The run's logged model: ``(source URI, model id)``, or 422 if it logged none."""
        client = self.client
        run_id = run.info.run_id
        models = client.search_logged_models(experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id='{run_id}'")
        named = [m for m in models if m.name == lineage.MODEL_ARTIFACT] or list(models)
        if named:
            latest = max(named, key=lambda m: m.creation_timestamp or 0)
            return f"models:/{latest.model_id}", latest.model_id
        artifacts = {a.path for a in client.list_artifacts(run_id, lineage.MODEL_ARTIFACT)}
        if f"{lineage.MODEL_ARTIFACT}/MLmodel" in artifacts:  # logged the MLflow 2 way
            return f"runs:/{run_id}/{lineage.MODEL_ARTIFACT}", None
        raise InvalidRequest(f"run {run_id} has no logged model; train with POST /mlops/models and register that run")

    def register(self, request: RegisterModelRequest) -> RegisterModelResponse:
        """Register the run's model as a new version, or return the version it already has.

        Raises:
            NotFound: Unknown run.
            InvalidRequest: The run has no model or did not finish.
        """
        name = _check_name(request.model_name)
        if not _RUN_ID.match(request.run_id):
            raise NotFound(f"run {request.run_id!r} not found")
        client = self.client
        with _mlflow_errors(f"run {request.run_id!r}"):
            run = client.get_run(request.run_id)
        if run.info.status != "FINISHED":
            raise InvalidRequest(f"run {request.run_id} is {run.info.status}; only a FINISHED training run can be registered")
        source, model_id = self._model_source(run)
        with self._run_lock(name, request.run_id) as registered:
            if registered is not None:  # another request registered the run while this one waited
                return self._answer(name, request.run_id, registered, "already_registered")
            return self._register_locked(name, request, run, source, model_id)

    @contextmanager
    def _run_lock(self, name: str, run_id: str) -> Iterator[Any]:
        """Hold the registration lease of (model, run): one request at a time creates its version.

        Yields ``None`` with the lease held, or, without it, the run's version that another request
        registered while this one waited (checked about once a second, so twenty requests of one run
        do not queue behind each other's MLflow round trips).

        Raises:
            ServiceUnavailable: Another request held it for longer than ``REGISTER_WAIT_S``.
        """
        from asgard_ray.storage import OutputLease

        lease = OutputLease(
            self.settings, self.settings.state_uri("registry", name, run_id), f"register-{uuid.uuid4().hex[:12]}", ttl_s=REGISTER_LEASE_S
        )
        deadline = time.monotonic() + REGISTER_WAIT_S
        delay = 0.02
        next_check = time.monotonic() + 1.0
        registered = None
        while True:
            try:
                lease.acquire()
                break
            except Conflict:
                now = time.monotonic()
                if now > deadline:
                    raise ServiceUnavailable(
                        f"run {run_id} is being registered as {name} by another request; retry in a few seconds"
                    ) from None
                if now >= next_check:
                    next_check = now + 1.0
                    registered = next((v for v in self._run_versions(name, run_id) if getattr(v, "status", "READY") == "READY"), None)
                    if registered is not None:
                        break
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        if registered is not None:
            yield registered
            return
        try:
            yield None
        finally:
            lease.release()

    def _register_locked(
        self, name: str, request: RegisterModelRequest, run: Any, source: str, model_id: str | None
    ) -> RegisterModelResponse:
        client = self.client
        existing = self._run_versions(name, request.run_id)
        if existing:
            mv = existing[0]
            log.info("run %s already registered as %s v%s", request.run_id, name, mv.version)
            if lineage.TAG_GOLD_SNAPSHOT_REF not in (mv.tags or {}):  # an earlier tagging failed: retry it
                self._tag_snapshots(name, mv, run)
            return self._answer(name, request.run_id, mv, "already_registered")
        created_model = self._ensure_model(name, request.description)
        # lineage last: a user tag can never replace what scoring and monitoring trust
        tags = {**request.tags, **_lineage_tags(run)}
        try:
            with _mlflow_errors(f"model {name!r}"):
                mv = client.create_model_version(
                    name, source=source, run_id=request.run_id, tags=tags, description=request.description, model_id=model_id
                )
        except Exception:
            if created_model:
                self._drop_if_empty(name)
            raise
        log.info("registered run %s as %s v%s", request.run_id, name, mv.version)
        self._tag_snapshots(name, mv, run)
        return self._answer(name, request.run_id, mv, "registered")

    def _tag_snapshots(self, name: str, mv: Any, run: Any) -> None:
        """Tag the gold snapshots the run was trained on ``asgard-<model>-v<version>``, so expiry keeps them.

        Best effort: the version is already registered and usable, so a catalog failure does not
        undo it. The failure is logged and recorded on the version (``asgard.gold_snapshot_tag_error``);
        registering the same run again retries the tags (idempotent) and clears the error. On
        success the version records the tag's name (``asgard.gold_snapshot_tag``).
        """
        snapshots = lineage.snapshots_from_tags(run.data.tags)
        if not snapshots:
            return
        from asgard_ray.gold import resolve_table, snapshot_tag, tag_snapshot

        client = self.client
        tag = snapshot_tag(name, mv.version)
        try:
            for table, snapshot_id in sorted(snapshots.items()):
                tag_snapshot(self.settings, resolve_table(self.settings, table, snapshot_id=snapshot_id, format="iceberg"), tag)
        except Exception as exc:
            log.warning("%s v%s: could not tag gold snapshots %s as %s: %s", name, mv.version, snapshots, tag, exc, exc_info=True)
            try:
                client.set_model_version_tag(
                    name, str(mv.version), lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR, f"{type(exc).__name__}: {exc}"[:4000]
                )
            except Exception:
                log.warning("%s v%s: could not record the tagging failure either", name, mv.version, exc_info=True)
            return
        client.set_model_version_tag(name, str(mv.version), lineage.TAG_GOLD_SNAPSHOT_REF, tag)
        if lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR in (mv.tags or {}):
            client.delete_model_version_tag(name, str(mv.version), lineage.TAG_GOLD_SNAPSHOT_TAG_ERROR)
        log.info("%s v%s: tagged gold snapshots %s as %s", name, mv.version, snapshots, tag)

    def _run_versions(self, name: str, run_id: str) -> list[Any]:
        """The run's versions of the model, lowest version first."""
        found = self.client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
        return sorted(found, key=lambda v: int(v.version))

    @staticmethod
    def _answer(name: str, run_id: str, mv: Any, status: str) -> RegisterModelResponse:
        return RegisterModelResponse(
            model_name=name,
            version=str(mv.version),
            run_id=run_id,
            status=status,  # type: ignore[arg-type]
            model_uri=f"models:/{name}/{mv.version}",
            source=mv.source,
        )

    def _ensure_model(self, name: str, description: str | None) -> bool:
        """Create the registered model unless it exists; True only if this call created it."""
        client = self.client
        try:
            with _mlflow_errors(f"model {name!r}"):
                client.get_registered_model(name)
            return False
        except NotFound:
            pass
        try:
            with _mlflow_errors(f"model {name!r}"):
                client.create_registered_model(name, description=description)
        except Conflict:  # created by a parallel request between our get and create: use it
            log.info("model %s was created by a parallel request", name)
            return False
        return True

    def _drop_if_empty(self, name: str) -> None:
        """Undo this request's creation of the registered model, unless another request added a version."""
        client = self.client
        try:
            if client.search_model_versions(f"name='{name}'"):
                log.info("model %s keeps versions registered by other requests; not removed", name)
                return
            client.delete_registered_model(name)
            log.info("removed the empty model %s this request created", name)
        except Exception:  # the original error matters more; an empty model is harmless
            log.warning("could not remove the empty model %s", name, exc_info=True)

    def _summary(self, rm: Any, versions: list[Any]) -> dict[str, Any]:
        latest = max(versions, key=lambda v: int(v.version)) if versions else None
        return {
            "name": rm.name,
            "description": rm.description or None,
            "latest_version": str(latest.version) if latest else None,
            "latest_run_id": latest.run_id if latest else None,
            "aliases": {k: str(v) for k, v in (rm.aliases or {}).items()},
            "tags": dict(rm.tags or {}),
            "created_at": _ts(rm.creation_timestamp),
            "updated_at": _ts(rm.last_updated_timestamp),
        }

    def list_models(self) -> ModelList:
        """Every registered model with its latest version."""
        client = self.client
        models = []
        for rm in client.search_registered_models(max_results=1000):
            versions = list(client.search_model_versions(f"name='{rm.name}'")) if _SAFE.match(rm.name) else []
            models.append(ModelSummary(**self._summary(rm, versions)))
        models.sort(key=lambda m: m.name)
        return ModelList(models=models, total=len(models))

    def get_model(self, name: str) -> ModelDetail:
        """A model's versions (newest first) with run ids, metrics, tags and aliases; 404 if unknown."""
        client = self.client
        _check_name(name)
        with _mlflow_errors(f"model {name!r}"):
            rm = client.get_registered_model(name)
        versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
        infos = []
        for mv in versions:
            metrics: dict[str, float] = {}
            if mv.run_id:
                try:
                    metrics = dict(client.get_run(mv.run_id).data.metrics)
                except Exception:
                    log.warning("run %s of %s v%s is not readable", mv.run_id, name, mv.version)
            infos.append(
                ModelVersionInfo(
                    version=str(mv.version),
                    run_id=mv.run_id,
                    status=str(mv.status),
                    description=mv.description or None,
                    source=mv.source,
                    tags=dict(mv.tags or {}),
                    aliases=list(mv.aliases or []),
                    metrics=metrics,
                    created_at=_ts(mv.creation_timestamp),
                )
            )
        return ModelDetail(**self._summary(rm, versions), versions=infos)

    def set_alias(self, name: str, alias: str, version: str | int) -> AliasResponse:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere)."""
        client = self.client
        _check_name(name)
        if not _ALIAS.match(alias) or alias.lower() == "latest" or (alias.lower().startswith("v") and alias[1:].isdigit()):
            raise InvalidRequest(f"alias {alias!r} must start with a letter and may not be 'latest' or look like a version (v1)")
        version = str(version).strip()
        if not version.isdigit():
            raise InvalidRequest(f"version {version!r} must be a version number")
        with _mlflow_errors(f"version {version} of model {name!r}"):
            mv = client.get_model_version(name, version)
        client.set_registered_model_alias(name, alias, version)
        log.info("alias %s of %s -> v%s", alias, name, version)
        return AliasResponse(model_name=name, alias=alias, version=version, run_id=mv.run_id, model_uri=f"models:/{name}@{alias}")

    def delete_alias(self, name: str, alias: str) -> AliasResponse:
        """Remove an alias; returns where it pointed."""
        client = self.client
        _check_name(name)
        with _mlflow_errors(f"alias {alias!r} of model {name!r}"):
            mv = client.get_model_version_by_alias(name, alias)
        client.delete_registered_model_alias(name, alias)
        return AliasResponse(
            model_name=name, alias=alias, version=str(mv.version), run_id=mv.run_id, model_uri=f"models:/{name}/{mv.version}"
        )
