"""What `countersign up` checks before it makes or starts anything: the ports it and its children will
listen on, the planners the worker will use and the approval policy the gateway will load. Each
failure is a StackError that names what to change."""

import errno
import socket

from countersign.config.settings import Settings
from countersign.stack.supervisor import StackError


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    """False when something listens on it; OSError when it cannot be listened on for another reason."""
    # The family from the address: api_host (or the metrics host) may be IPv6.
    family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports(settings: Settings) -> None:
    """Every port `up` and its children will listen on, checked before anything is made: a port found
    busy later would stop `up` after it had made the demo principals, whose keys are shown only once."""
    wanted: list[tuple[str, str, int, str]] = []  # (what, host, port, how to pick another)
    if settings.temporal_address is None:
        wanted.append(("Temporal", "127.0.0.1", settings.temporal_port, "--temporal-port"))
        wanted.append(("the Temporal Web UI", "127.0.0.1", settings.ui_port, "--ui-port"))
    wanted.append(("the gateway", settings.api_host, settings.api_port, "--api-port"))
    if settings.smtp_host is None:
        wanted.append(("the mail sink", "127.0.0.1", settings.smtp_sink_port, "--mail-port"))
    if settings.worker_metrics_address is not None:
        metrics_host, _, metrics_port = settings.worker_metrics_address.rpartition(":")
        how = "COUNTERSIGN_WORKER_METRICS_ADDRESS"
        wanted.append(("the worker's metrics", metrics_host.strip("[]"), int(metrics_port), how))
    for what, host, port, how in wanted:
        try:
            free = _port_free(port, host)
        except OSError as error:  # not busy but unusable: an address not of this machine, a name unknown
            raise StackError(f"{host}:{port} ({what}) cannot be listened on: {error}") from None
        if not free:
            raise StackError(f"port {port} ({what}) is in use; pick another with {how}")


def planner_chain(settings: Settings) -> str:
    """The planners the worker will use, checked now so a missing key fails before anything starts."""
    from countersign.activities.plugins import PluginError, load_plugins
    from countersign.llm.spec import SpecError
    from countersign.worker import build_planners

    try:
        registry = load_plugins(settings.plugins).tools
    except PluginError as error:  # before anything starts, as the worker would refuse it
        raise StackError(str(error)) from None
    try:
        planners = build_planners(settings, registry)
    except SpecError as error:
        raise StackError(f"cannot plan with COUNTERSIGN_LLM: {error}") from None
    return " -> ".join(p.name for p in planners)


def policy_summary(settings: Settings) -> str:
    """The approval policy the gateway will load, checked now so a bad file names its line up front."""
    from countersign.config.policy_file import DEFAULT_POLICY_FILE, PolicyFileError, load_policy

    try:
        policy = load_policy(settings.policy_file)
    except PolicyFileError as error:
        raise StackError(f"the approval policy is not valid:\n{error}") from None
    return f"{settings.policy_file or DEFAULT_POLICY_FILE.name} (version {policy.version})"
