"""docker-compose.yml, read without Docker: pinned images, health checks, a valid start order, the
settings it passes, and the Temporal set-up it runs (schema, namespace, search attributes)."""

import graphlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from temporalio.api.taskqueue.v1 import PollerInfo
from typer.testing import CliRunner

from countersign.models import search_attributes as sa
from countersign.security.audit_keys import generate as generate_audit_key
from countersign.security.gateway_keys import generate as generate_gateway_key
from countersign.security.link_keys import generate as generate_link_key
from tests.deploy import (
    COMPOSE_FILE,
    COUNTERSIGN_SERVICES,
    DEPLOY,
    REPO,
    cli_commands,
    environment,
    interpolate,
    load_compose,
    services,
    setting_variables,
    variables,
    vendor_variables,
)

# Settings only `countersign up` reads (the embedded dev server, its Web UI and its SMTP sink): a stack
# with its own Temporal server and COUNTERSIGN_TEMPORAL_ADDRESS set has no use for them.
UP_ONLY_SETTINGS = {"temporal_port", "ui_port", "smtp_sink_port"}
# The gateway's private key: the api's setting, which no worker may hold.
GATEWAY_ONLY_SETTINGS = {"gateway_signing_keys"}
_SIGNING_KEY, _PUBLIC_KEY = generate_gateway_key("compose")
# Placeholders for the required secrets when a test interpolates the file.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "AUDIT_DB_PASSWORD": "audit-secret",
    "COUNTERSIGN_GATEWAY_SIGNING_KEYS": _SIGNING_KEY,
    "COUNTERSIGN_GATEWAY_PUBLIC_KEYS": _PUBLIC_KEY,
    "COUNTERSIGN_AUDIT_KEYS": generate_audit_key("compose"),
    "COUNTERSIGN_LINK_KEYS": generate_link_key("compose"),
}
# Uvicorn's own variable, set for the gateway behind the proxy (the client address it may believe).
GATEWAY_SERVER_VARIABLES = {"FORWARDED_ALLOW_IPS"}
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
# Columns that PostgreSQL visibility (Temporal's schema postgresql/v12/visibility) pre-allocates per
# namespace for each type of custom search attribute.
SQL_VISIBILITY_SLOTS = {
    "Keyword": 10,
    "KeywordList": 3,
    "Double": 3,
    "Datetime": 3,
    "Int": 3,
    "Bool": 3,
    "Text": 3,
}
_ATTRIBUTE_TYPES = {
    "KEYWORD": "Keyword",
    "KEYWORD_LIST": "KeywordList",
    "DOUBLE": "Double",
    "DATETIME": "Datetime",
    "INT": "Int",
    "BOOL": "Bool",
    "TEXT": "Text",
}


def one_shots() -> set[str]:
    """Services others wait for to *finish*: jobs, not servers."""
    return {
        target
        for service in services().values()
        for target, spec in (service.get("depends_on") or {}).items()
        if spec.get("condition") == "service_completed_successfully"
    }


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on in the long form, each with a condition"
    return {target: spec["condition"] for target, spec in depends.items()}


# Service keys of the Compose specification that this file may use; a typo (`healtcheck`) is not one.
SERVICE_KEYS = {
    "build", "cap_add", "cap_drop", "command", "container_name", "cpus", "depends_on", "deploy",
    "entrypoint", "env_file", "environment", "expose", "extra_hosts", "healthcheck", "hostname", "image",
    "init", "labels", "logging", "mem_limit", "networks", "ports", "profiles", "pull_policy", "read_only",
    "restart", "security_opt", "stop_grace_period", "stop_signal", "tmpfs", "ulimits", "user", "volumes",
    "working_dir",
}  # fmt: skip


def test_the_file_parses_as_a_compose_project() -> None:
    document = load_compose()
    allowed = {"name", "services", "volumes", "networks", "configs", "secrets"}
    assert {key for key in document if not key.startswith("x-")} <= allowed
    assert document["name"] == "countersign"
    assert {"postgres", "temporal", "temporal-ui", "worker", "api"} <= set(document["services"])
    named = set(document.get("volumes") or {})
    for name, service in document["services"].items():
        unknown = {key for key in service if not key.startswith("x-")} - SERVICE_KEYS
        assert not unknown, f"{name}: {sorted(unknown)} are not Compose service keys"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in named, f"{name}: volume {source} is not declared"


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_pinned_image_or_a_build(name: str) -> None:
    service = services()[name]
    if "build" in service:
        return
    image = service.get("image", "")
    assert "$" not in image, f"{name}: the version is in this file, not in a variable"
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{name}: {image!r} names no tag"
    assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image!r} is not a pinned version"


def test_one_shot_jobs_run_once_and_servers_have_health_checks() -> None:
    jobs = one_shots()
    assert {"temporal-schema", "temporal-setup"} <= jobs
    for name, service in services().items():
        if name in jobs:
            assert service.get("restart", "no") == "no", f"{name} is a one-shot job; it must not restart"
            continue
        check = service.get("healthcheck")
        assert check, f"{name} runs for good and needs a healthcheck"
        assert not check.get("disable") and check.get("test") not in (None, ["NONE"]), name
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: restart policy"


def test_dependencies_exist_and_wait_for_the_right_condition() -> None:
    found = services()
    jobs = one_shots()
    for name, service in found.items():
        for target, condition in dependencies(service).items():
            assert target in found, f"{name} depends on {target}, which is not a service"
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert "healthcheck" in found[target], f"{name} waits for {target} to be healthy"
            else:
                assert target in jobs
            # A service always started must not wait for one that only a profile starts.
            assert set(found[target].get("profiles", [])) <= set(service.get("profiles", [])), (name, target)


def test_dependencies_form_a_start_order() -> None:
    graph = {name: set(dependencies(service)) for name, service in services().items()}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    position = {name: index for index, name in enumerate(order)}
    chain = ["postgres", "temporal-schema", "temporal", "temporal-setup"]
    assert [position[name] for name in chain] == sorted(position[name] for name in chain)
    for name in COUNTERSIGN_SERVICES:
        assert dependencies(services()[name]) == {
            "postgres": "service_healthy",
            "temporal": "service_healthy",
            "temporal-setup": "service_completed_successfully",
        }


@pytest.mark.parametrize("name", COUNTERSIGN_SERVICES)
def test_workers_and_gateways_scale_with_no_volume(name: str) -> None:
    service = services()[name]
    assert "container_name" not in service and "ports" not in service, "--scale needs neither"
    assert "build" in service
    # Nothing on a volume: state is in the database and keys are settings, so a container added by
    # `--scale` (or on another host) starts empty and misses nothing, and no two share a file.
    assert "volumes" not in service and "countersign-data" not in (load_compose().get("volumes") or {})
    assert services()["worker"].get("stop_grace_period")


def test_the_proxy_round_robins_over_every_gateway() -> None:
    proxy = services()["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert proxy["ports"] == ["${API_PORT:-8000}:8000"], "the one way in, where the api's port used to be"
    assert dependencies(proxy) == {"api": "service_healthy"}
    assert f"./{CADDYFILE.relative_to(REPO)}:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    caddyfile = CADDYFILE.read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].strip() for line in caddyfile.splitlines()]
    api_port = fixed_environment("api")["COUNTERSIGN_API_PORT"]
    # Every address of the `api` service in Docker's DNS, looked up again (scaling needs no restart),
    # taken in turn.
    assert f"dynamic a api {api_port} {{" in lines
    assert "lb_policy round_robin" in lines
    assert ":8000 {" in lines, "it listens where its published port points"
    assert caddyfile.count("{") == caddyfile.count("}")
    # The gateways believe the client address the proxy forwards (per-address sign-in limits).
    assert environment(services()["api"])["FORWARDED_ALLOW_IPS"] == "*"


@pytest.mark.parametrize("name", COUNTERSIGN_SERVICES)
def test_every_key_is_a_required_setting_and_none_is_read_from_the_data_dir(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Containers share no volume, so a key read from (or made in) a data dir would differ per
    container: workers could not verify what gateways sign, links minted by one would not open on another."""
    from countersign.config.settings import Settings
    from countersign.security.link_keys import LinkKeyring

    for key in setting_variables():
        monkeypatch.delenv(key, raising=False)
    for key, value in fixed_environment(name).items():
        monkeypatch.setenv(key, value)
    loaded = Settings(_env_file=None, data_dir=tmp_path)
    loaded.gateway_trust()
    loaded.audit_keyring()
    assert loaded.link_keys is not None
    LinkKeyring.load(loaded.link_keys.get_secret_value(), tmp_path)
    if name == "api":
        loaded.gateway_signer()
    assert list(tmp_path.iterdir()) == [], "a key was looked for, or made, in the data dir"
    env = environment(services()[name])
    for variable in ("COUNTERSIGN_GATEWAY_PUBLIC_KEYS", "COUNTERSIGN_AUDIT_KEYS", "COUNTERSIGN_LINK_KEYS"):
        assert all(v.required for v in variables(env[variable] or "")) and env[variable], variable


@pytest.mark.parametrize("name", COUNTERSIGN_SERVICES)
def test_countersign_services_run_real_cli_commands(name: str) -> None:
    command = services()[name]["command"]
    assert isinstance(command, list) and command[0] == "countersign", "the console script of pyproject.toml"
    subcommand, *options = command[1:]
    commands = cli_commands()
    assert subcommand in commands, f"`countersign {subcommand}` is not a command of countersign.cli"
    known = {opt for param in commands[subcommand].params for opt in param.opts}
    assert {option.split("=", 1)[0] for option in options if option.startswith("-")} <= known
    from countersign.cli.main import app

    result = CliRunner().invoke(app, [subcommand, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", COUNTERSIGN_SERVICES)
def test_countersign_services_get_every_setting_and_only_real_ones(name: str) -> None:
    env = environment(services()[name])
    settings = setting_variables()
    passed = {key for key in env if key.startswith("COUNTERSIGN_")}
    assert passed <= set(settings), f"not settings: {sorted(passed - set(settings))}"
    not_here = UP_ONLY_SETTINGS | (GATEWAY_ONLY_SETTINGS if name == "worker" else set())
    # A setting read under two names (a new one and its alias) is passed once, under either.
    missing = set(settings.values()) - {settings[key] for key in passed} - not_here
    assert not missing, f"settings {sorted(missing)} cannot be set for {name}: add them to x-countersign-env"
    if name == "worker":
        assert not {settings[key] for key in passed} & GATEWAY_ONLY_SETTINGS, "the worker got a private key"
    others = set(env) - passed
    allowed = vendor_variables() | (GATEWAY_SERVER_VARIABLES if name == "api" else set())
    assert others <= allowed, f"{name}: unexpected variables {sorted(others)}"


def test_the_worker_gets_the_llm_vendor_variables() -> None:
    env = environment(services()["worker"])
    for variable in vendor_variables():
        assert variable in env and env[variable] is None, f"{variable}: passed on from .env, not set here"


def test_every_countersign_variable_in_the_file_is_a_setting() -> None:
    settings = setting_variables()
    for name, service in services().items():
        for key in environment(service):
            assert not key.startswith("COUNTERSIGN_") or key in settings, f"{name}: {key} is no setting"
    for variable in variables(COMPOSE_FILE.read_text(encoding="utf-8")):
        assert not variable.name.startswith("COUNTERSIGN_") or variable.name in settings, variable.name


def fixed_environment(name: str) -> dict[str, str]:
    """What compose sets for `name` with only the required secrets in .env."""
    return {
        key: interpolate(value, SECRETS)
        for key, value in environment(services()[name]).items()
        if value is not None
    }


@pytest.mark.parametrize("name", COUNTERSIGN_SERVICES)
def test_the_values_compose_sets_are_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from countersign.config.settings import Settings

    settings = setting_variables()
    for key in settings:
        monkeypatch.delenv(key, raising=False)
    fixed = fixed_environment(name)
    for key, value in fixed.items():
        monkeypatch.setenv(key, value)
    loaded = Settings(_env_file=None)
    assert loaded.api_host == "0.0.0.0"  # inside the container; compose publishes the port
    assert loaded.temporal_address == "temporal:7233"
    assert str(loaded.data_dir) == "/data"
    assert isinstance(loaded.audit_database_url, SecretStr)
    assert loaded.resolved_temporal_ui_url.startswith("http://localhost:")


def test_the_database_is_the_compose_postgresql() -> None:
    assert (
        fixed_environment("api")["COUNTERSIGN_DATABASE_URL"]
        == fixed_environment("worker")["COUNTERSIGN_DATABASE_URL"]
    )
    url = make_url(fixed_environment("api")["COUNTERSIGN_DATABASE_URL"])
    assert url.drivername in ("postgresql", "postgresql+asyncpg")
    assert url.host == "postgres" and url.host in services() and url.port == 5432
    assert url.password == SECRETS["AUDIT_DB_PASSWORD"]
    postgres = services()["postgres"]
    assert environment(postgres)["AUDIT_DB_PASSWORD"] == "${AUDIT_DB_PASSWORD:?set AUDIT_DB_PASSWORD in .env}"
    # The role and the database the URL names are the ones the init script creates.
    init = (DEPLOY / "postgres" / "initdb" / "10-countersign-audit.sh").read_text(encoding="utf-8")
    assert f"CREATE ROLE {url.username} LOGIN PASSWORD :'password';" in init
    assert f"CREATE DATABASE {url.database} OWNER {url.username};" in init
    assert "./deploy/postgres/initdb:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]


def test_everything_points_at_the_one_temporal_server() -> None:
    found = services()
    server = found["temporal"]
    assert server["image"].startswith("temporalio/server:")
    address = fixed_environment("api")["COUNTERSIGN_TEMPORAL_ADDRESS"]
    assert address == fixed_environment("worker")["COUNTERSIGN_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert environment(found["temporal-setup"])["TEMPORAL_ADDRESS"] == address
    assert environment(found["temporal-ui"])["TEMPORAL_ADDRESS"] == address
    # The server and the schema job agree on the database and its credentials.
    server_env, schema_env = environment(server), environment(found["temporal-schema"])
    assert server_env["DB"] == "postgres12" and server_env["POSTGRES_SEEDS"] == schema_env["SQL_HOST"]
    assert server_env["POSTGRES_USER"] == schema_env["SQL_USER"]
    assert (
        server_env["POSTGRES_PWD"]
        == schema_env["SQL_PASSWORD"]
        == environment(found["postgres"])["POSTGRES_PASSWORD"]
    )
    # The Countersign services and the set-up job use the same namespace.
    namespace = environment(found["temporal-setup"])["COUNTERSIGN_NAMESPACE"]
    assert namespace == environment(found["api"])["COUNTERSIGN_NAMESPACE"]
    assert namespace == environment(found["temporal-ui"])["TEMPORAL_DEFAULT_NAMESPACE"]


def test_secrets_come_from_env_and_are_required() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|PWD|SECRET|TOKEN|_KEY", key) and value is not None:
                found = list(variables(value))
                assert found and all(v.required for v in found), f"{name}: {key} must be ${{VAR:?...}}"


def test_mounted_files_and_scripts_exist() -> None:
    for name, service in services().items():
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
                mounts[target] = REPO / source
        entrypoint = service.get("entrypoint") or []
        for argument in entrypoint[1:]:
            directory, _, script = argument.rpartition("/")
            assert (mounts[directory] / script).is_file(), f"{name}: {argument} is not mounted"
    init_scripts = list((DEPLOY / "postgres" / "initdb").glob("*.sh"))
    assert init_scripts and all(path.stat().st_mode & 0o111 for path in init_scripts), (
        "the postgres image runs initdb scripts that are executable (others it sources)"
    )


def registered_attributes() -> dict[str, str]:
    script = (DEPLOY / "temporal" / "setup-namespace.sh").read_text(encoding="utf-8")
    block = re.search(r'^ATTRIBUTES="\n(.*?)^"', script, re.S | re.M)
    assert block, 'ATTRIBUTES="..." in deploy/temporal/setup-namespace.sh'
    return dict(line.split(":") for line in block[1].split())


def test_search_attributes_registered_at_start_are_the_codes() -> None:
    expected = {key.name: _ATTRIBUTE_TYPES[key.indexed_value_type.name] for key in sa.ALL}
    assert registered_attributes() == expected
    job = services()["temporal-setup"]
    assert job["entrypoint"] == ["/bin/sh", "/deploy/setup-namespace.sh"]


def test_search_attributes_fit_postgresql_visibility() -> None:
    counts: dict[str, int] = {}
    for kind in registered_attributes().values():
        counts[kind] = counts.get(kind, 0) + 1
    for kind, count in counts.items():
        assert count <= SQL_VISIBILITY_SLOTS.get(kind, 0), f"{count} {kind} attributes; SQL has {kind} slots"


def test_the_schema_job_sets_up_both_temporal_databases() -> None:
    script = (DEPLOY / "temporal" / "setup-schema.sh").read_text(encoding="utf-8")
    for command in ("create", "setup-schema -v 0.0", "update-schema -d"):
        assert command in script
    assert "temporal-sql-tool" in script
    calls = re.findall(r'^setup "\$\{[A-Z_]+:-(\w+)\}" (\w+)$', script, re.M)
    # The server's defaults for DBNAME and VISIBILITY_DBNAME, with their versioned schema directories.
    assert calls == [("temporal", "temporal"), ("temporal_visibility", "visibility")]
    server = environment(services()["temporal"])
    assert "DBNAME" not in server and "VISIBILITY_DBNAME" not in server
    assert services()["temporal-schema"]["entrypoint"] == ["/bin/sh", "/deploy/setup-schema.sh"]


def test_the_server_enables_workflow_updates() -> None:
    server = services()["temporal"]
    path = environment(server)["DYNAMIC_CONFIG_FILE_PATH"]
    mounted = {
        volume.split(":")[1]: REPO / volume.split(":")[0] for volume in server["volumes"] if volume[0] == "."
    }
    config = yaml.safe_load(mounted[path].read_text(encoding="utf-8"))
    assert config["frontend.enableUpdateWorkflowExecution"] == [{"value": True}]


def test_observability_is_a_profile_and_scrapes_real_services() -> None:
    found = services()
    profiled = {name for name, service in found.items() if service.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    assert all(found[name]["profiles"] == ["observability"] for name in profiled)
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    ports = {
        "prometheus": "9090",
        "temporal": environment(found["temporal"])["PROMETHEUS_ENDPOINT"],
        "api": fixed_environment("api")["COUNTERSIGN_API_PORT"],
        "worker": fixed_environment("worker")["COUNTERSIGN_WORKER_METRICS_ADDRESS"],
    }
    scraped = set()
    for job in config["scrape_configs"]:
        # Fixed targets, or (for a scaled service) the service name resolved to each of its containers.
        targets = [target for static in job.get("static_configs", []) for target in static["targets"]]
        targets += [f"{name}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        assert targets, f"{job['job_name']} scrapes nothing"
        for target in targets:
            host, port = target.split(":")
            service = "prometheus" if host == "localhost" else host
            assert service in found, f"{job['job_name']}: {host} is not a service"
            assert str(ports[service]).endswith(port), f"{target}: not where {service} serves metrics"
            scraped.add(service)
    assert {"temporal", "worker", "api"} <= scraped
    # The gateway's /metrics needs a credential: the token, written by Prometheus' entrypoint to the file
    # its job reads.
    api_job = next(job for job in config["scrape_configs"] if job["job_name"] == "countersign-api")
    token_file = api_job["authorization"]["credentials_file"]
    prometheus = found["prometheus"]
    assert environment(prometheus)["COUNTERSIGN_METRICS_TOKEN"] is None  # passed on from .env
    script = prometheus["entrypoint"][-1]
    mounted = {v.split(":")[1]: REPO / v.split(":")[0] for v in prometheus["volumes"] if v.startswith("./")}
    directory, _, name = script.rpartition("/")
    assert f"> {token_file}" in (mounted[directory] / name).read_text(encoding="utf-8")


def test_worker_healthcheck_needs_a_recent_poll_from_its_own_host() -> None:
    import importlib.util
    from datetime import UTC, datetime, timedelta

    from google.protobuf.timestamp_pb2 import Timestamp

    spec = importlib.util.spec_from_file_location("worker_healthcheck", DEPLOY / "worker_healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def poller(identity: str, seconds_ago: float) -> PollerInfo:
        stamp = Timestamp()
        stamp.FromDatetime(now - timedelta(seconds=seconds_ago))
        return PollerInfo(identity=identity, last_access_time=stamp)

    assert module.polls_from([poller("1@other", 1), poller("7@box", 20)], "box", now)
    assert not module.polls_from([poller("1@other", 1)], "box", now)
    assert not module.polls_from([poller("7@box", 600)], "box", now), "an old poll is a dead worker"
    assert not module.polls_from([poller("7@boxer", 1)], "box", now)
    assert not module.polls_from([PollerInfo(identity="7@box")], "box", now)
    assert services()["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "/app/deploy/worker_healthcheck.py",
    ]
