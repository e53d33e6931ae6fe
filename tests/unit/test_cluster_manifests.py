"""The deploy files under ``cluster/``: they parse, match the pins, and never carry a secret.

Unit tests only: no Ray cluster, no Kubernetes and no Docker engine. KubeRay manifests are checked
structurally here, and ``test_kuberay_manifests_match_crd_schemas`` validates them against KubeRay's own
CRD schemas, unknown fields rejected: by default the verbatim copy of KubeRay v1.7.0's CRDs in
``cluster/kuberay/crds`` (compared with ``../shared/kuberay-crds`` when that folder exists), or the
folder ``ASGARD_KUBERAY_CRDS`` names. It never skips.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from asgard_ray.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
CRDS = KUBERAY / "crds"
"""KubeRay v1.7.0's CRDs, verbatim (third-party files: not deploy files of ours)."""
SHARED_CRDS = ROOT.parent / "shared" / "kuberay-crds"
"""Where the project's shared reference copy lives, beside the repository (absent on a clean clone)."""
GRAFANA = CLUSTER / "grafana" / "asgard-dashboard.json"

RAY_KINDS = {"RayCluster", "RayJob", "RayService"}
API_VERSIONS = {
    "RayCluster": "ray.io/v1",
    "RayJob": "ray.io/v1",
    "RayService": "ray.io/v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
}
MLFLOW_SECRET = "asgard-mlflow"
SETTINGS_CONFIGMAP = "asgard-settings"
SETTINGS_SECRET = "asgard-secrets"
RAY_AUTH_SECRET = "asgard-ray-auth"
# Environment variables that are not Settings fields but that Ray, AWS SDKs or Python read.
KNOWN_EXTERNAL_ENV = {
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_ADDRESS",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "PYTHONUNBUFFERED",
}
SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^<replace-with-[a-z0-9-]+>$")


# --- helpers -------------------------------------------------------------------------------------


def _ray_pin() -> str:
    """The Ray version pinned in constraints.txt (the lock)."""
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith("ray=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("constraints.txt pins no ray version")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _image_tag() -> str:
    """The tag the Asgard image is built and referenced with: <project version>-ray<ray pin>."""
    return f"{_pyproject()['project']['version']}-ray{_ray_pin()}"


def _python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def docs() -> dict[Path, list[dict[str, Any]]]:
    """Every YAML document under cluster/, by file."""
    files = sorted(p for p in [*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")] if not p.is_relative_to(CRDS))
    return {path: _load(path) for path in files}


@pytest.fixture(scope="module")
def kube_docs(docs: dict[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [doc for path, ds in docs.items() if path.parent == KUBERAY for doc in ds]


def _named(kube_docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kube_docs if d["kind"] == kind}


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec inside a RayCluster, RayJob or RayService."""
    spec = doc["spec"]
    return {"RayCluster": lambda: spec, "RayJob": lambda: spec["rayClusterSpec"], "RayService": lambda: spec["rayClusterConfig"]}[
        doc["kind"]
    ]()


def _pod_specs(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", cluster_spec["headGroupSpec"]["template"]["spec"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]


def _containers(kube_docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in kube_docs:
        if doc["kind"] in RAY_KINDS:
            for group, pod in _pod_specs(_cluster_spec(doc)):
                for c in pod["containers"]:
                    yield f"{doc['kind']}/{doc['metadata']['name']}/{group}/{c['name']}", c


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "serve_config.yaml").read_text())


def _ray_up() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "ray-up-aws.yaml").read_text())


def _docker_env(run_options: list[str]) -> dict[str, str]:
    """``--env NAME=VALUE`` / ``-e NAME=VALUE`` pairs in docker run options."""
    env: dict[str, str] = {}
    for option in run_options:
        words = shlex.split(option)
        for flag, value in itertools.pairwise(words):
            if flag in ("--env", "-e"):
                name, _, val = value.partition("=")
                env[name] = val
    return env


# --- pins ----------------------------------------------------------------------------------------


def test_ray_pin_is_one_version_everywhere() -> None:
    """pyproject.toml, constraints.txt and the installed Ray agree."""
    pin = _ray_pin()
    deps = [d for d in _pyproject()["project"]["dependencies"] if re.match(r"ray(\[|=)", d)]
    assert deps and all(d.endswith(f"=={pin}") for d in deps), deps
    assert ray.__version__ == pin


def test_every_yaml_under_cluster_parses(docs: dict[Path, list[dict[str, Any]]]) -> None:
    names = {str(p.relative_to(CLUSTER)) for p in docs}
    expected = {
        "serve_config.yaml",
        "ray-up-aws.yaml",
        "kuberay/raycluster.yaml",
        "kuberay/rayservice.yaml",
        "kuberay/rayjob-train.yaml",
        "kuberay/rayjob-batch-score.yaml",
        "kuberay/configmap.yaml",
        "kuberay/secret.example.yaml",
        "kuberay/job-requests.yaml",
        "kuberay/mlflow-server.yaml",
        "prometheus/prometheus.yml",
    }
    assert expected <= names, expected - names
    for path, ds in docs.items():
        assert ds and all(isinstance(d, dict) for d in ds), path


def test_kuberay_kinds_and_api_versions(kube_docs: list[dict[str, Any]]) -> None:
    for doc in kube_docs:
        assert doc["kind"] in API_VERSIONS, doc["kind"]
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], doc["metadata"]["name"]
        assert doc["metadata"]["name"]
    kinds = [d["kind"] for d in kube_docs]
    assert kinds.count("RayCluster") == 1 and kinds.count("RayService") == 1 and kinds.count("RayJob") == 2
    # KubeRay names Services after the Ray CR (<name>-head-svc): one name per CR, or they collide
    ray_names = [d["metadata"]["name"] for d in kube_docs if d["kind"] in RAY_KINDS]
    assert len(ray_names) == len(set(ray_names)), ray_names


def test_ray_version_and_images_match_the_pin(kube_docs: list[dict[str, Any]]) -> None:
    pin, tag = _ray_pin(), _image_tag()
    for doc in kube_docs:
        if doc["kind"] in RAY_KINDS:
            assert _cluster_spec(doc)["rayVersion"] == pin, doc["metadata"]["name"]
    containers = dict(_containers(kube_docs))
    assert len(containers) >= 8
    for where, c in containers.items():
        assert c["image"] == f"asgard-ray:{tag}", where
    image = _ray_up()["docker"]["image"]
    assert image.rsplit("/", 1)[-1] == f"asgard-ray:{tag}"


def test_dockerfile_builds_on_the_pinned_ray_image() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms == [f"rayproject/ray:{_ray_pin()}-{_python_tag()}"]
    assert re.search(r"pip install .*-c constraints\.txt \.", text)
    assert f"-t asgard-ray:{_image_tag()}" in text  # the documented build command uses the tag the manifests use
    sources = [
        src for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE) for src in [w for w in line.split() if not w.startswith("--")][:-1]
    ]
    assert "jobs/" in sources and "asgard_ray/" in sources
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        assert any(line.startswith(f"!{src.rstrip('/')}") for line in ignore), f"{src} is excluded from the build context"


# --- settings and secrets --------------------------------------------------------------------------


def test_every_container_gets_settings_and_ray_token_from_kubernetes_objects(kube_docs: list[dict[str, Any]]) -> None:
    configmaps, secrets = _named(kube_docs, "ConfigMap"), _named(kube_docs, "Secret")
    assert SETTINGS_CONFIGMAP in configmaps and SETTINGS_SECRET in secrets and RAY_AUTH_SECRET in secrets
    assert "auth_token" in secrets[RAY_AUTH_SECRET]["stringData"]
    for where, c in _containers(kube_docs):
        refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
        assert refs == {("configMapRef", SETTINGS_CONFIGMAP), ("secretRef", SETTINGS_SECRET)}, where
    for doc in kube_docs:
        if doc["kind"] in RAY_KINDS:
            auth = _cluster_spec(doc)["authOptions"]
            assert auth == {"mode": "token", "secretName": RAY_AUTH_SECRET}, doc["metadata"]["name"]


def _env_names(kube_docs: list[dict[str, Any]]) -> dict[str, str]:
    """Every environment variable name the deploy files set, with where it is set."""
    names: dict[str, str] = {}
    for name in _named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]:
        names[name] = "configmap.yaml"
    for name in _named(kube_docs, "Secret")[SETTINGS_SECRET]["stringData"]:
        names[name] = "secret.example.yaml"
    for where, c in _containers(kube_docs):
        for e in c.get("env", []):
            names[e["name"]] = where
    for name in _docker_env(_ray_up()["docker"]["run_options"]):
        names[name] = "ray-up-aws.yaml"
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", (CLUSTER / "Dockerfile").read_text(), re.MULTILINE):
        for word in shlex.split(block.replace("\\\n", " ")):
            names[word.split("=", 1)[0]] = "Dockerfile"
    return names


def test_env_var_names_are_settings_fields_or_known(kube_docs: list[dict[str, Any]]) -> None:
    settings_names = {name.upper() for name in Settings.model_fields}
    worker_env = set(Settings().worker_env())
    names = _env_names(kube_docs)
    unknown = {n: where for n, where in names.items() if n not in settings_names | worker_env | KNOWN_EXTERNAL_ENV}
    assert not unknown, f"not a Settings field nor a known Ray/AWS variable: {unknown}"
    # the secret ones are Settings fields too, so the API reads them under the same names
    assert {"ASGARD_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= settings_names & set(names)


def test_configmap_is_a_valid_production_settings(kube_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    data = _named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-kubernetes-secret")  # production refuses the default
    settings = Settings()
    assert settings.asgard_mode.value == "production" and not settings.embedded
    assert settings.s3_endpoint is None  # production without S3_ENDPOINT_URL means AWS S3
    assert settings.s3_bucket in settings.asgard_output_buckets
    assert settings.tracking_uri == data["MLFLOW_TRACKING_URI"]
    assert settings.trino_port == int(data["TRINO_PORT"])


def test_no_secret_value_is_written_in_any_deploy_file(kube_docs: list[dict[str, Any]]) -> None:
    secrets = [d for d in kube_docs if d["kind"] == "Secret"]
    assert secrets
    for doc in secrets:
        assert "data" not in doc, "base64 data hides values from review; use stringData placeholders"
        for key, value in doc["stringData"].items():
            assert PLACEHOLDER.match(value), f"{doc['metadata']['name']}.{key} is not a placeholder"
    for key in _named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]:
        assert not SECRET_NAME.search(key), f"{key} belongs in the Secret, not the ConfigMap"
    for where, c in _containers(kube_docs):
        for e in c.get("env", []):
            assert "value" not in e or not SECRET_NAME.search(e["name"]), f"{where}: {e['name']} as a literal"
    for name in _docker_env(_ray_up()["docker"]["run_options"]):
        assert not SECRET_NAME.search(name) or name == "RAY_AUTH_MODE", f"ray-up-aws.yaml sets {name} literally"
    for path in [*CLUSTER.rglob("*")]:
        if path.is_file() and not path.is_relative_to(CRDS):
            text = path.read_text()
            assert not re.search(r"\bAKIA[0-9A-Z]{16}\b", text), f"AWS access key id in {path}"
            assert not re.search(r"\b[A-Za-z0-9]{32,}\b", text), f"token-like string in {path}"


def test_gold_catalog_and_trino_production_config(kube_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ConfigMap sets a REST gold catalog and Feast's Trino offline store; their secrets are in the Secret."""
    from asgard_ray.features.store import repo_config_dict, write_repo
    from asgard_ray.gold import catalog_properties

    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    data = _named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]
    secret = _named(kube_docs, "Secret")[SETTINGS_SECRET]["stringData"]
    assert {"ASGARD_GOLD_CATALOG_CREDENTIAL", "TRINO_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= set(secret)
    assert not {"ASGARD_GOLD_CATALOG_CREDENTIAL", "TRINO_PASSWORD"} & set(data)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # what the Secret injects at run time (values here are stand-ins, never from the repo)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stand-in-aws")
    monkeypatch.setenv("ASGARD_GOLD_CATALOG_CREDENTIAL", "client:stand-in-catalog")
    monkeypatch.setenv("TRINO_PASSWORD", "stand-in-trino")
    monkeypatch.setenv("FEAST_REDIS_CONNECTION_STRING", "redis:6379,password=stand-in-redis")
    monkeypatch.setenv("FEAST_REGISTRY_PATH", "postgresql+psycopg://feast:stand-in-registry@postgres:5432/feast")
    monkeypatch.setenv("FEAST_REPO_PATH", str(tmp_path / "feast_repo"))
    settings = Settings()
    assert settings.asgard_gold_catalog in ("rest", "glue", "hive")
    props = catalog_properties(settings)
    assert props["uri"] == data["ASGARD_GOLD_CATALOG_URI"] and props["credential"] == "client:stand-in-catalog"
    assert "credential" not in catalog_properties(settings, secrets=False)
    offline = repo_config_dict(settings)["offline_store"]
    assert offline["type"] == "trino" and offline["connector"] == {"type": "iceberg"}
    assert (offline["host"], str(offline["port"]), offline["catalog"]) == (data["TRINO_HOST"], data["TRINO_PORT"], data["TRINO_CATALOG"])
    assert offline["auth"]["config"]["password"] == "stand-in-trino"
    write_repo(settings)
    text = (settings.feast_repo / "feature_store.yaml").read_text()
    assert not re.search("stand-in", text), "a secret reached feature_store.yaml"


def test_secrets_reach_containers_only_through_secret_references(kube_docs: list[dict[str, Any]]) -> None:
    """Secret settings come from the Kubernetes Secret (``envFrom.secretRef`` or ``secretKeyRef``), never a literal."""
    secret_keys = set(_named(kube_docs, "Secret")[SETTINGS_SECRET]["stringData"])
    seen = 0
    for where, c in _containers(kube_docs):
        assert {"secretRef": {"name": SETTINGS_SECRET}} in c["envFrom"], where
        for e in c.get("env", []):
            if e["name"] in secret_keys or SECRET_NAME.search(e["name"]):
                assert "value" not in e, f"{where}: {e['name']} as a literal"
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] in _named(kube_docs, "Secret") and ref["key"], where
        seen += 1
    assert seen


# --- Serve -----------------------------------------------------------------------------------------


def test_serve_config_validates_against_rays_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    from asgard_ray.api.serve import DEPLOYMENT_NAME

    config = ServeDeploySchema.model_validate(_serve_config())
    app, predict = config.applications
    assert (app.name, app.route_prefix, app.import_path) == ("asgard", "/", "asgard_ray.api.serve:build_app")
    assert [d.name for d in app.deployments] == [DEPLOYMENT_NAME]
    assert config.http_options.host == "127.0.0.1"  # no API key in a plain `serve run`: loopback only
    deployment = app.deployments[0].model_dump(exclude_unset=True)
    assert {"autoscaling_config", "health_check_period_s", "max_ongoing_requests"} <= set(deployment)
    # real-time predictions: an application of its own, with the deployment options of the settings
    from asgard_ray.api.predict import DEPLOYMENT_NAME as PREDICT_DEPLOYMENT
    from asgard_ray.api.predict import PREDICT_APP, PREDICT_PREFIX, deployment_options

    assert (predict.name, predict.route_prefix, predict.import_path) == (
        PREDICT_APP,
        PREDICT_PREFIX,
        "asgard_ray.api.predict:build_predict_app",
    )
    (predict_deployment,) = predict.deployments
    assert predict_deployment.name == PREDICT_DEPLOYMENT
    wanted = deployment_options(Settings())
    got = predict_deployment.model_dump(exclude_unset=True)
    for key in ("max_ongoing_requests", "max_queued_requests", "ray_actor_options"):
        assert got[key] == wanted[key], key
    assert got["autoscaling_config"] == wanted["autoscaling_config"]


def test_serve_import_path_builds_the_app_and_takes_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Do what the Serve controller does with the config, without starting Ray."""
    from ray._common.utils import import_attr
    from ray.serve import Application
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.application_state import override_deployment_info
    from ray.serve._private.build_app import build_app
    from ray.serve._private.deploy_utils import deploy_args_to_deployment_info
    from ray.serve.schema import ServeDeploySchema

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("building the Serve app must not start Ray")

    ray_was_up = ray.is_initialized()  # another test in this process may have started Ray
    monkeypatch.setattr(ray, "init", no_ray)
    app_schema = ServeDeploySchema.model_validate(_serve_config()).applications[0]
    app = call_user_app_builder_with_args_if_necessary(import_attr(app_schema.import_path), app_schema.args)
    assert isinstance(app, Application)
    built = build_app(app, name=app_schema.name, default_runtime_env={})
    infos = {
        d.name: deploy_args_to_deployment_info(
            deployment_name=d.name,
            deployment_config_proto_bytes=d._deployment_config.to_proto_bytes(),
            replica_config_proto_bytes=d._replica_config.to_proto_bytes(),
            deployer_job_id="",
            app_name=app_schema.name,
            ingress=d.name == built.ingress_deployment_name,
            route_prefix="/",
        )
        for d in built.deployments
    }
    # raises if the config names a deployment that the app does not have, or options clash
    merged = override_deployment_info(infos, app_schema)
    wanted = app_schema.deployments[0]
    got = merged[wanted.name].deployment_config
    assert got.num_replicas is None  # "auto": the autoscaler owns the replica count
    wanted_scaling = wanted.model_dump(exclude_unset=True)["autoscaling_config"]
    assert got.autoscaling_config is not None
    assert got.autoscaling_config.min_replicas == wanted_scaling["min_replicas"]
    assert got.autoscaling_config.max_replicas == wanted_scaling["max_replicas"]
    assert got.autoscaling_config.target_ongoing_requests == wanted_scaling["target_ongoing_requests"]
    assert got.health_check_period_s == wanted.health_check_period_s
    assert got.max_ongoing_requests == wanted.max_ongoing_requests
    assert got.max_queued_requests == wanted.max_queued_requests
    assert merged[wanted.name].replica_config.ray_actor_options["num_cpus"] == 0
    assert ray.is_initialized() == ray_was_up


def test_rayservice_embeds_the_serve_config(kube_docs: list[dict[str, Any]]) -> None:
    from ray.serve.schema import ServeDeploySchema

    (service,) = _named(kube_docs, "RayService").values()
    embedded_text = service["spec"]["serveConfigV2"]
    assert isinstance(embedded_text, str), "KubeRay wants serveConfigV2 as a YAML string"
    embedded, local = yaml.safe_load(embedded_text), _serve_config()
    ServeDeploySchema.model_validate(embedded)
    assert embedded["applications"] == local["applications"]
    assert embedded["proxy_location"] == local["proxy_location"]
    # the one deliberate difference: the pod's proxy listens on the pod IP, behind the API key
    assert embedded["http_options"] == {**local["http_options"], "host": "0.0.0.0"}
    head = _cluster_spec(service)["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 8000 in {p["containerPort"] for p in head["ports"]}


# --- jobs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "script", "model"),
    [
        ("asgard-train", "train.py", "asgard_ray.training.schemas:TrainRequest"),
        ("asgard-batch-score", "batch_score.py", "asgard_ray.scoring.schemas:BatchScoreRequest"),
    ],
)
def test_rayjob_entrypoint_runs_a_job_file_with_a_valid_mounted_request(
    kube_docs: list[dict[str, Any]], name: str, script: str, model: str
) -> None:
    from ray._common.utils import import_attr

    job = _named(kube_docs, "RayJob")[name]
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["python", f"/home/ray/app/jobs/{script}"]  # WORKDIR + COPY jobs/ in the Dockerfile
    job_file = ROOT / "jobs" / script
    assert job_file.exists(), f"jobs/{script} is missing"
    usage = subprocess.run([sys.executable, str(job_file), "--help"], capture_output=True, text=True, timeout=120, check=True)
    assert "--request" in usage.stdout, f"jobs/{script} takes no --request"
    request = Path(words[words.index("--request") + 1])
    head = _cluster_spec(job)["headGroupSpec"]["template"]["spec"]
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if request.is_relative_to(m["mountPath"])]
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    data = _named(kube_docs, "ConfigMap")[volume["configMap"]["name"]]["data"]
    body = import_attr(model).model_validate_json(data[str(request.relative_to(mount["mountPath"]))])
    assert body.model_name == "churn_predictor"
    if hasattr(body, "output_path"):  # scoring writes only to buckets the settings allow
        buckets = json.loads(_named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]["ASGARD_OUTPUT_BUCKETS"])
        assert body.output_path.removeprefix("s3://").split("/", 1)[0] in buckets
    assert job["spec"]["shutdownAfterJobFinishes"] is True


# --- ray up ----------------------------------------------------------------------------------------


def test_ray_up_config_validates_against_the_cluster_launcher_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _ray_up()
    validate_config(prepare_config(copy.deepcopy(config)))
    env = _docker_env(config["docker"]["run_options"])
    assert env["RAY_AUTH_MODE"] == "token" and env["ASGARD_MODE"] == "production"
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # reached through `ray dashboard`'s SSH tunnel only
    assert config["head_node_type"] in config["available_node_types"]
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert workers and all(t["max_workers"] >= t["min_workers"] >= 1 for t in workers)


def test_ray_up_config_rejects_unknown_fields() -> None:
    """The launcher schema check above is strict enough to catch a typo."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _ray_up()
    config["available_node_types"][config["head_node_type"]]["node_confg"] = {}
    with pytest.raises(Exception, match="node_confg"):
        validate_config(prepare_config(config))


# --- optional: KubeRay's own CRD schemas -------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


def _crd_folder() -> Path:
    """The CRDs to check against: ``ASGARD_KUBERAY_CRDS`` if set, else the verbatim copy in the repository."""
    named = os.environ.get("ASGARD_KUBERAY_CRDS")
    return Path(named) if named else CRDS


def _crd_schemas() -> dict[str, Any]:
    """Kind -> the strict v1 OpenAPI schema of that kind, from the CRD folder."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 4 MB of YAML: libyaml reads them in a second
    schemas = {}
    for path in sorted(_crd_folder().glob("ray.io_*.yaml")):
        crd = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
        for version in crd["spec"]["versions"]:
            if version["name"] == "v1":
                schemas[crd["spec"]["names"]["kind"]] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


@pytest.fixture(scope="module")
def crd_schemas() -> dict[str, Any]:
    schemas = _crd_schemas()
    assert set(schemas) >= RAY_KINDS, f"no CRD schemas for {RAY_KINDS - set(schemas)} in {_crd_folder()}"
    return schemas


def _crd_errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    import jsonschema

    return [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


def test_the_crd_copy_is_kuberay_v1_7_0_verbatim() -> None:
    """The repository's copy is the shared one, byte for byte (when the shared folder is beside the repository)."""
    names = sorted(p.name for p in CRDS.glob("ray.io_*.yaml"))
    assert names == ["ray.io_rayclusters.yaml", "ray.io_raycronjobs.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml"]
    assert "v1.7.0" in (CRDS / "README.md").read_text()
    for name in names:
        text = (CRDS / name).read_text()
        assert "controller-gen.kubebuilder.io/version" in text and "group: ray.io" in text, name
        if SHARED_CRDS.is_dir():
            assert (SHARED_CRDS / name).read_bytes() == (CRDS / name).read_bytes(), f"{name} differs from {SHARED_CRDS}"


def test_kuberay_manifests_match_crd_schemas(kube_docs: list[dict[str, Any]], crd_schemas: dict[str, Any]) -> None:
    checked = 0
    for doc in kube_docs:
        if doc["kind"] in RAY_KINDS:
            errors = _crd_errors(crd_schemas[doc["kind"]], doc)
            assert not errors, (doc["metadata"]["name"], errors)
            checked += 1
    assert checked == 4


def test_crd_check_rejects_a_field_the_crd_does_not_have(kube_docs: list[dict[str, Any]], crd_schemas: dict[str, Any]) -> None:
    """The check is strict: a misspelt field anywhere in a manifest is an error naming it."""
    (cluster,) = [copy.deepcopy(d) for d in kube_docs if d["kind"] == "RayCluster"]
    cluster["spec"]["headGroupSpec"]["rayStartParamz"] = {}
    cluster["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["envFron"] = []
    errors = " ".join(_crd_errors(crd_schemas["RayCluster"], cluster))
    assert "rayStartParamz" in errors and "envFron" in errors, errors


# --- the production profile: Redis, Postgres, Prometheus -----------------------------------------


def test_production_defaults_name_redis_sql_registry_and_their_secret_references(kube_docs: list[dict[str, Any]]) -> None:
    """ConfigMap picks Redis and the SQL registry; their secrets are Secret keys, reached only by reference."""
    data = _named(kube_docs, "ConfigMap")[SETTINGS_CONFIGMAP]["data"]
    secrets = _named(kube_docs, "Secret")
    assert (data["FEAST_ONLINE_STORE"], data["FEAST_REGISTRY_TYPE"]) == ("redis", "sql")
    assert {"FEAST_REDIS_CONNECTION_STRING", "FEAST_REGISTRY_PATH"} <= set(secrets[SETTINGS_SECRET]["stringData"])
    assert not {"FEAST_REDIS_CONNECTION_STRING", "FEAST_REGISTRY_PATH"} & set(data)
    # the MLflow server: Postgres backend store from its own Secret, by secretKeyRef, never an argument
    (deployment,) = _named(kube_docs, "Deployment").values()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mlflow", "server"] and "--backend-store-uri" not in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": MLFLOW_SECRET, "key": "backend-store-uri"}
    assert "backend-store-uri" in secrets[MLFLOW_SECRET]["stringData"]
    for e in container["env"]:
        if SECRET_NAME.search(e["name"]):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], e
            assert e["valueFrom"]["secretKeyRef"]["key"] in secrets[e["valueFrom"]["secretKeyRef"]["name"]]["stringData"], e
    args = container["args"]
    assert args[args.index("--artifacts-destination") + 1].startswith(f"s3://{data['S3_BUCKET']}/")
    assert container["image"] == f"asgard-ray:{_image_tag()}"
    # the tracking URI the nodes use is this Deployment's Service
    (service,) = _named(kube_docs, "Service").values()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    host, port = data["MLFLOW_TRACKING_URI"].removeprefix("http://").split(":")
    assert host.split(".")[0] == service["metadata"]["name"] and int(port) == service["spec"]["ports"][0]["port"]


def test_every_ray_container_exports_metrics_on_port_8080(kube_docs: list[dict[str, Any]]) -> None:
    """Each Ray node serves Ray's metrics export (the platform's ray_asgard_* series too) where Prometheus scrapes."""
    for doc in kube_docs:
        if doc["kind"] in RAY_KINDS:
            spec = _cluster_spec(doc)
            groups = [("head", spec["headGroupSpec"]), *((g["groupName"], g) for g in spec["workerGroupSpecs"])]
            for name, group in groups:
                assert group["rayStartParams"].get("metrics-export-port") == "8080", (doc["metadata"]["name"], name)
                ports = {p["name"]: p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
                assert ports.get("metrics") == 8080, (doc["metadata"]["name"], name, ports)
    scrape = yaml.safe_load((CLUSTER / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    keep = {tuple(r["source_labels"]): r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keep[("__meta_kubernetes_pod_container_port_name",)] == "metrics"


def test_grafana_dashboard_queries_exactly_the_platform_series() -> None:
    """Every ray_asgard_* name the dashboard queries is one the platform exports, and every series is shown."""
    from asgard_ray import metrics

    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bray_asgard_[a-z_]+", expr)}
    exported: dict[str, str] = {}
    for name, (kind, _, _) in metrics.SERIES.items():
        if kind == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                exported[f"{metrics.PROMETHEUS_PREFIX}{name}{suffix}"] = name
        else:
            exported[metrics.prometheus_name(name)] = name
    assert used <= set(exported), used - set(exported)
    assert {exported[n] for n in used} == set(metrics.SERIES), set(metrics.SERIES) - {exported[n] for n in used}
    for expr in exprs:  # labels the queries filter or group by are labels of the series
        for name in re.findall(r"\bray_asgard_[a-z_]+", expr):
            labels = set(metrics.SERIES[exported[name]][2]) | ({"le"} if name.endswith("_bucket") else set())
            for label in re.findall(r"([a-z_]+)\s*(?:=~|=|!=)\s*\"", expr):
                assert label in labels, (expr, label)
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"
