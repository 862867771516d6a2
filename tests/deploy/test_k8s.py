"""Static checks of the Kubernetes manifests in deploy/k8s (a kustomize base).

Every manifest is validated with `jsonschema` against the Kubernetes API's JSON schemas in
strict mode (no unknown fields), read offline from the data files of the `kubernetes-validate`
wheel, for the oldest and the newest Kubernetes minor this base supports. Then the project's
own rules: probes, resources, non-root pods, pinned images, two dispatcher replicas,
autoscalers, and environment variables that the settings object really reads, with secrets
only from the Secret `errands-secrets`.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import importlib.resources
import json
import re
import secrets
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# Where kubernetes-validate keeps its schemas: one folder per Kubernetes version.
SCHEMA_ROOT = importlib.resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
# The oldest Kubernetes minor the base is written for; the newest the schemas know is added below.
OLDEST_K8S = "1.30"

SECRET_NAME = "errands-secrets"
CONFIGMAP_NAME = "errands-config"
SECRET_KEYS = {"DATABASE_URL", "ERRANDS_CODE_KEY", "ERRANDS_DATA_KEY"}
ROLES = {"intake": 8080, "dispatcher": 8081, "notifier": 8082}
AUTOSCALED = {"errands-intake", "errands-notifier"}
ERRANDS_IMAGE = "errands"


# --------------------------------------------------------------------------- schemas (offline)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def schema_versions() -> list[str]:
    """Kubernetes versions with strict schemas in the installed kubernetes-validate, oldest first."""
    found = [
        match.group(1)
        for entry in SCHEMA_ROOT.iterdir()
        if (match := re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", entry.name))
    ]
    return sorted(found, key=_version_key)


def k8s_versions() -> list[str]:
    """The oldest supported minor and the newest known one, each as its schema folder's version."""
    versions = schema_versions()
    oldest = [v for v in versions if _version_key(v)[:2] == _version_key(OLDEST_K8S)]
    assert oldest, f"kubernetes-validate has no schemas for Kubernetes {OLDEST_K8S}"
    return sorted({oldest[-1], versions[-1]}, key=_version_key)


@functools.cache
def k8s_validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """A validator for one kind, resolving $refs into that version's shared definitions."""
    folder = SCHEMA_ROOT.joinpath(f"v{version}-local-strict")
    # apps/v1 -> apps-v1, rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = folder.joinpath(f"{kind.lower()}-{group_version}.json")
    assert schema_file.is_file(), f"no Kubernetes {version} schema for {api_version} {kind}"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    definitions = json.loads(folder.joinpath("_definitions.json").read_text(encoding="utf-8"))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        [
            (schema["$id"], referencing.Resource.from_contents(schema)),
            (definitions["$id"], referencing.Resource.from_contents(definitions)),
        ]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(manifest: dict[str, Any], version: str) -> list[str]:
    validator = k8s_validator(version, manifest["apiVersion"], manifest["kind"])
    errors = sorted(validator.iter_errors(manifest), key=lambda error: list(error.absolute_path))
    return [f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}" for error in errors]


# --------------------------------------------------------------------------- loading


def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_documents(path: Path) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for doc in documents:
        assert isinstance(doc, dict), f"{path.name}: a manifest must be a mapping"
    return documents


@functools.cache
def _resources() -> tuple[tuple[str, dict[str, Any]], ...]:
    found: list[tuple[str, dict[str, Any]]] = []
    for entry in kustomization()["resources"]:
        found += [(entry, doc) for doc in load_documents(K8S_DIR / entry)]
    return tuple(found)


def resources() -> list[tuple[str, dict[str, Any]]]:
    """(file, manifest) of everything the kustomization applies; deep copies, safe to change."""
    return copy.deepcopy(list(_resources()))


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in resources() if doc["kind"] == kind}


def deployments() -> dict[str, dict[str, Any]]:
    return of_kind("Deployment")


def configmap_data() -> dict[str, str]:
    data: dict[str, str] = of_kind("ConfigMap")[CONFIGMAP_NAME]["data"]
    return data


def example_secret() -> dict[str, Any]:
    documents = load_documents(K8S_DIR / "secret.example.yaml")
    assert len(documents) == 1
    return documents[0]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload, pod spec) of every Deployment and Job."""
    for _, doc in resources():
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers_of(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def all_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for workload, pod_spec in pod_specs():
        for container in containers_of(pod_spec):
            yield f"{workload}/{container['name']}", container, pod_spec


def settings_env_names() -> frozenset[str]:
    return frozenset(name.upper() for name in _settings_class().model_fields)


def _settings_class() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("shared.settings").Settings


def split_image(reference: str) -> tuple[str, str | None]:
    name = reference.partition("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        repository, tag = name.rsplit(":", 1)
        return repository, tag
    return name, None


def project_version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return version


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    text = str(value)
    suffixes = {
        "m": 1e-3,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
    }
    for suffix, factor in sorted(suffixes.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    for entry in container.get("ports", []):
        if port in (entry.get("name"), entry["containerPort"]):
            number: int = entry["containerPort"]
            return number
    return None


def role_of(deployment: dict[str, Any]) -> str:
    role: str = deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
    return role


# --------------------------------------------------------------------------- the kustomization


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    data = kustomization()
    assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert data["kind"] == "Kustomization"
    listed = list(data["resources"])
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for entry in listed:
        assert (K8S_DIR / entry).is_file(), f"kustomization lists missing file {entry}"
    on_disk = {path.name for path in K8S_DIR.glob("*.y*ml")} - {"kustomization.yaml"}
    examples = {name for name in on_disk if ".example." in name}
    assert "secret.example.yaml" in examples
    assert not examples & set(listed), "example manifests must not be applied"
    assert on_disk - examples == set(listed), (
        f"not in the kustomization: {sorted(on_disk - examples - set(listed))}"
    )
    assert not {kind for _, doc in resources() for kind in [doc["kind"]] if kind == "Secret"}, (
        "secrets are created outside the base"
    )


def test_kustomization_pins_the_errands_image() -> None:
    images = {entry["name"]: entry for entry in kustomization().get("images", [])}
    assert images[ERRANDS_IMAGE]["newTag"] == project_version()


def test_namespace() -> None:
    namespace = kustomization()["namespace"]
    assert set(of_kind("Namespace")) == {namespace}
    assert example_secret()["metadata"]["namespace"] == namespace
    for file, doc in resources():
        assert doc["metadata"].get("namespace", namespace) == namespace, f"{file}: {doc['metadata']['name']}"


def test_names_are_unique() -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for _, doc in resources()]
    assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------- schemas


def _schema_cases() -> list[Any]:
    cases = []
    entries = [*kustomization()["resources"], "secret.example.yaml"]
    for entry in entries:
        for index, doc in enumerate(load_documents(K8S_DIR / entry)):
            for version in k8s_versions():
                case_id = f"{entry}#{index}-{doc.get('kind')}-{version}"
                cases.append(pytest.param(doc, version, id=case_id))
    return cases


@pytest.mark.parametrize(("manifest", "version"), _schema_cases())
def test_manifest_matches_the_kubernetes_schema(manifest: dict[str, Any], version: str) -> None:
    errors = schema_errors(manifest, version)
    assert not errors, f"{manifest['kind']}/{manifest['metadata']['name']}:\n" + "\n".join(errors)


def test_schemas_cover_old_and_new_kubernetes() -> None:
    versions = k8s_versions()
    assert _version_key(versions[0])[:2] == _version_key(OLDEST_K8S)
    assert _version_key(versions[-1]) >= _version_key(OLDEST_K8S)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}),
            id="unknown-field",
        ),
        pytest.param(lambda d: d["spec"].update(replicas="two"), id="wrong-type"),
        pytest.param(lambda d: d["spec"].pop("selector"), id="missing-required-field"),
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].update(limit={}), id="typo"
        ),
    ],
)
def test_schema_validation_rejects_broken_manifests(change: Any) -> None:
    """The validation above is live: a Deployment with a mistake in it is refused."""
    deployment = deployments()["errands-dispatcher"]
    change(deployment)
    assert schema_errors(deployment, k8s_versions()[-1])


# --------------------------------------------------------------------------- workloads


def test_the_three_services_are_deployed() -> None:
    assert set(deployments()) == {f"errands-{role}" for role in ROLES}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_deployment_runs_its_role_on_its_port(role: str) -> None:
    deployment = deployments()[f"errands-{role}"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", role]
    assert "command" not in container, "the image's ENTRYPOINT (errands) must stay"
    assert container_port(container, "http") == ROLES[role]
    assert int(configmap_data()[f"{role.upper()}_PORT"]) == ROLES[role]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == ROLES[role]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_deployment_has_readiness_and_liveness_probes(role: str) -> None:
    deployment = deployments()[f"errands-{role}"]
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            assert probe in container, f"{role}/{container['name']}: no {probe}"
            http_get = container[probe]["httpGet"]
            assert http_get["path"] == path
            assert container_port(container, http_get["port"]) == ROLES[role], f"{probe} probes another port"
        # Liveness must not depend on Kafka or the database, or an outage restarts every pod.
        assert container["livenessProbe"]["httpGet"]["path"] != "/readyz"


def test_selectors_match_their_pods() -> None:
    for name, deployment in deployments().items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, deployment["spec"]["template"]["metadata"]["labels"]), name
        for other_name, other in deployments().items():
            if other_name != name:
                assert not selects(selector, other["spec"]["template"]["metadata"]["labels"]), (
                    f"{name}'s selector also matches {other_name}'s pods"
                )


def test_every_container_has_resource_requests_and_limits() -> None:
    for where, container, _ in all_containers():
        resources_ = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources_.get("requests", {}).get(resource)
            limit = resources_.get("limits", {}).get(resource)
            assert request is not None, f"{where}: no {resource} request"
            assert limit is not None, f"{where}: no {resource} limit"
            assert quantity(request) <= quantity(limit), f"{where}: {resource} request above its limit"


def _dockerfile_uid() -> int:
    users = [
        line.split()[1]
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("USER ")
    ]
    return int(users[-1].split(":")[0])


def test_pods_run_as_non_root_without_privileges() -> None:
    uid = _dockerfile_uid()
    for workload, pod_spec in pod_specs():
        pod_context = pod_spec.get("securityContext", {})
        assert pod_spec.get("automountServiceAccountToken") is False, f"{workload}: mounts an API token"
        for container in containers_of(pod_spec):
            where = f"{workload}/{container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
            assert context.get("runAsUser", uid) == uid, (
                f"{where}: runAsUser differs from the image's USER {uid}"
            )
            assert context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert context.get("capabilities", {}).get("drop") == ["ALL"], (
                f"{where}: capabilities not dropped"
            )
            assert context.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost"), where
            if context.get("readOnlyRootFilesystem"):
                mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{where}: read-only root filesystem needs a writable /tmp"


def test_images_are_pinned() -> None:
    version = project_version()
    for where, container, _ in all_containers():
        repository, tag = split_image(container["image"])
        assert tag, f"{where}: image {container['image']!r} has no tag"
        assert tag != "latest", f"{where}: image uses :latest"
        if repository == ERRANDS_IMAGE:
            assert tag == version, f"{where}: errands image {tag} is not the project version {version}"
        assert container.get("imagePullPolicy") != "Always", f"{where}: a pinned tag needs no Always pull"


def test_dispatcher_runs_two_replicas_without_an_autoscaler() -> None:
    dispatcher = deployments()["errands-dispatcher"]
    assert dispatcher["spec"]["replicas"] == 2
    targets = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in of_kind("HorizontalPodAutoscaler").values()}
    assert "errands-dispatcher" not in targets


def test_autoscalers_for_intake_and_notifier() -> None:
    autoscalers = of_kind("HorizontalPodAutoscaler")
    partitions = int(configmap_data()["KAFKA_TOPIC_PARTITIONS"])
    by_target = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in autoscalers.values()}
    assert set(by_target) == AUTOSCALED
    for target, hpa in by_target.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        reference = hpa["spec"]["scaleTargetRef"]
        assert (reference["apiVersion"], reference["kind"]) == ("apps/v1", "Deployment")
        assert target in deployments()
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # More consumers than partitions would sit idle.
        assert hpa["spec"]["maxReplicas"] <= partitions, f"{target}: more replicas than partitions"
        assert hpa["spec"]["metrics"], f"{target}: no metric to scale on"
        # The autoscaler owns the replica count; a fixed one would be reset on every apply.
        assert "replicas" not in deployments()[target]["spec"], f"{target}: replicas fights the autoscaler"
        (container,) = deployments()[target]["spec"]["template"]["spec"]["containers"]
        for metric in hpa["spec"]["metrics"]:
            if metric["type"] == "Resource":
                name = metric["resource"]["name"]
                assert name in container["resources"]["requests"], (
                    f"{target}: scales on {name} without a request"
                )


def test_every_deployment_has_a_disruption_budget() -> None:
    budgets = of_kind("PodDisruptionBudget")
    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            pdb for pdb in budgets.values() if selects(pdb["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
        spec = covering[0]["spec"]
        if "minAvailable" in spec:
            replicas = deployment["spec"].get("replicas", 2)
            assert int(spec["minAvailable"]) < replicas, f"{name}: the budget blocks every eviction"
        else:
            assert spec["maxUnavailable"] not in (0, "0%"), f"{name}: the budget blocks every eviction"


def test_every_deployment_has_a_service_on_its_port() -> None:
    services = of_kind("Service")
    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        matching = [svc for svc in services.values() if selects(svc["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{name}: {len(matching)} Services"
        for port in matching[0]["spec"]["ports"]:
            assert (
                container_port(container, port.get("targetPort", port["port"])) == ROLES[role_of(deployment)]
            )
    for service_name, service in services.items():
        assert any(
            selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
            for d in deployments().values()
        ), f"Service {service_name} selects no pods"


def test_migration_job_migrates_then_creates_topics() -> None:
    jobs = of_kind("Job")
    assert set(jobs) == {"errands-migrate"}
    pod_spec = jobs["errands-migrate"]["spec"]["template"]["spec"]
    steps = [container["args"] for container in containers_of(pod_spec)]
    assert steps == [["migrate"], ["topics", "create"]], "migrations (init container) first, then the topics"
    assert pod_spec["restartPolicy"] in ("Never", "OnFailure")
    assert jobs["errands-migrate"]["spec"].get("backoffLimit", 6) >= 1


# --------------------------------------------------------------------------- environment


def test_configmap_keys_are_settings_fields() -> None:
    unknown = set(configmap_data()) - settings_env_names()
    assert not unknown, f"ConfigMap keys not read by shared.settings.Settings: {sorted(unknown)}"
    assert all(isinstance(value, str) for value in configmap_data().values())


def test_configmap_holds_no_secrets() -> None:
    data = configmap_data()
    assert not SECRET_KEYS & set(data)
    for key in data:
        assert not re.search(r"KEY|PASSWORD|TOKEN|SECRET", key), f"{key} belongs in the Secret"
    for value in data.values():
        assert "://" not in value or "@" not in value, "credentials in a URL belong in the Secret"


def test_configmap_is_production_ready() -> None:
    data = configmap_data()
    assert data["ERRANDS_PRODUCTION"] == "true"
    assert data["ERRANDS_DEMO"] == "false"
    for role in ROLES:
        assert data[f"{role.upper()}_HOST"] == "0.0.0.0"  # noqa: S104 - pods listen on their pod IP


def test_container_environment_is_settings_fields_and_secrets_come_from_the_secret() -> None:
    fields = settings_env_names()
    configmaps = set(of_kind("ConfigMap"))
    secret_keys = set(example_secret()["stringData"])
    for where, container, _ in all_containers():
        names = [entry["name"] for entry in container.get("env", [])]
        assert len(names) == len(set(names)), f"{where}: a variable is set twice"
        unknown = set(names) - fields
        assert not unknown, f"{where}: not read by shared.settings.Settings: {sorted(unknown)}"
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, f"{where}: envFrom may only load the ConfigMap"
            assert source["configMapRef"]["name"] in configmaps
        from_secret = {}
        for entry in container.get("env", []):
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["name"] == SECRET_NAME, f"{where}: {entry['name']} from another Secret"
                assert reference["key"] in secret_keys, f"{where}: key {reference['key']} not in the example"
                from_secret[entry["name"]] = reference["key"]
            else:
                assert entry["name"] not in SECRET_KEYS, f"{where}: {entry['name']} must come from the Secret"
        assert from_secret == {key: key for key in SECRET_KEYS}, f"{where}: secrets {sorted(from_secret)}"


def test_example_secret_matches_what_the_pods_read() -> None:
    secret = example_secret()
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == SECRET_NAME
    assert set(secret["stringData"]) == SECRET_KEYS
    assert set(secret["stringData"]) <= settings_env_names()
    for value in secret["stringData"].values():
        assert "CHANGE-ME" in value, "the example must hold placeholders, never a usable secret"


def test_configmap_and_secret_make_valid_production_settings() -> None:
    """The ConfigMap's values, with well-formed secrets, are accepted by the settings object itself."""
    values: dict[str, str] = {key.lower(): value for key, value in configmap_data().items()}
    values |= {
        "database_url": "postgresql://errands:pw@postgres.example.internal:5432/errands",
        # What `openssl rand -base64 48` and `openssl rand -base64 32` print (docs/deploy.md).
        "errands_code_key": base64.b64encode(secrets.token_bytes(48)).decode(),
        "errands_data_key": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    settings = _settings_class().model_validate(values)
    assert settings.errands_production is True
    assert settings.kafka_topic_partitions == int(configmap_data()["KAFKA_TOPIC_PARTITIONS"])


@pytest.mark.parametrize("key", ["ERRANDS_CODE_KEY", "ERRANDS_DATA_KEY"])
def test_the_example_secrets_placeholder_keys_are_refused(key: str) -> None:
    """Applying secret.example.yaml as it is must not give a running system with a published key."""
    values: dict[str, str] = {name.lower(): value for name, value in configmap_data().items()}
    values |= {
        "errands_code_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "errands_data_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        key.lower(): example_secret()["stringData"][key],
    }
    with pytest.raises(ValueError, match=key):
        _settings_class().model_validate(values)
