"""Where the web tools may go: URLs parsed as httpx sends them, checked against the allow-lists of
`Integrations`. What falls outside is a validation finding, so it can never be approved; the tools
check again before sending (`refuse_unless_allowed`), in case the configuration changed since.
"""

import httpx

from countersign.models.proposal import Finding
from countersign.tools.http_client import HttpRefused
from countersign.tools.integrations import Integrations
from countersign.tools.web_args import CreateTicketArgs, HttpRequestArgs, PostWebhookArgs

_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_url(url: str) -> httpx.URL | str:
    """The URL as httpx will send it, or why it may not be used. Checks and requests parse alike."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        return f"not a valid URL ({error})"
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        return "not an absolute http(s) URL"
    if parsed.userinfo:
        return "credentials in a URL are not allowed"
    # Literal dot segments are resolved by httpx; encoded ones (%2e%2e) a server may still resolve.
    if any(segment in (".", "..") for segment in parsed.path.split("/")):
        return "dot segments in the path are not allowed"
    return parsed


def port_of(url: httpx.URL) -> int:
    return url.port or _DEFAULT_PORTS[url.scheme]


def origin_of(url: httpx.URL) -> str:
    """Scheme, host and port: enough to say where a URL goes without repeating a secret path."""
    return f"{url.scheme}://{url.host}:{port_of(url)}"


def under_prefix(url: httpx.URL, prefix: httpx.URL) -> bool:
    if (url.scheme, url.host, port_of(url)) != (prefix.scheme, prefix.host, port_of(prefix)):
        return False
    path, allowed = url.path or "/", prefix.path or "/"
    if allowed.endswith("/"):
        return path.startswith(allowed)
    return path == allowed or path.startswith(allowed + "/")


def reached_origin(url: str) -> str:
    """The origin a call reaches (`https://hooks.example.com:443`), as policy facts name it."""
    parsed = parse_url(url)
    return "(not a valid URL)" if isinstance(parsed, str) else origin_of(parsed)


def _url_finding(message: str) -> Finding:
    return Finding(code="url_not_allowed", message=f"url: {message}", field="url")


def webhook_allowed(args: PostWebhookArgs, integrations: Integrations) -> list[Finding]:
    """The webhook URL must fall under one of the allowed URL prefixes."""
    if not integrations.webhook_allowed_urls:
        return [
            Finding(
                code="webhooks_not_configured",
                message="no webhook URL is allowed (COUNTERSIGN_WEBHOOK_ALLOWED_URLS is empty)",
                field="url",
            )
        ]
    url = parse_url(args.url)
    if isinstance(url, str):
        return [_url_finding(url)]
    prefixes = [p for p in map(parse_url, integrations.webhook_allowed_urls) if isinstance(p, httpx.URL)]
    if not any(under_prefix(url, prefix) for prefix in prefixes):
        return [_url_finding(f"{origin_of(url)}/... is outside the allowed webhook URLs")]
    return []


def _host_allowed(url: httpx.URL, entry: str) -> bool:
    allowed = parse_url(f"{url.scheme}://{entry}/")
    if isinstance(allowed, str):
        return False
    if allowed.host != url.host:
        return False
    # `host` allows any port; `host:port` that port only.
    return allowed.port is None or allowed.port == port_of(url)


def request_allowed(args: HttpRequestArgs, integrations: Integrations) -> list[Finding]:
    """The method must be allowed, and the URL's host one of the allowed hosts."""
    findings = []
    if args.method not in integrations.http_allowed_methods:
        allowed = ", ".join(integrations.http_allowed_methods) or "none"
        findings.append(
            Finding(
                code="method_not_allowed",
                message=f"method: {args.method} is not an allowed method ({allowed})",
                field="method",
            )
        )
    if not integrations.http_allowed_hosts:
        findings.append(
            Finding(
                code="http_not_configured",
                message="no host may be called (COUNTERSIGN_HTTP_ALLOWED_HOSTS is empty)",
                field="url",
            )
        )
        return findings
    url = parse_url(args.url)
    if isinstance(url, str):
        findings.append(_url_finding(url))
    elif not any(_host_allowed(url, entry) for entry in integrations.http_allowed_hosts):
        findings.append(
            Finding(
                code="host_not_allowed",
                message=f"url: host {url.host} (port {port_of(url)}) is outside the allowed hosts",
                field="url",
            )
        )
    return findings


def tickets_configured(args: CreateTicketArgs, integrations: Integrations) -> list[Finding]:
    if integrations.tickets is None:
        return [
            Finding(
                code="tickets_not_configured",
                message="no ticket backend is configured (COUNTERSIGN_TICKET_BACKEND)",
            )
        ]
    return []


def refuse_unless_allowed(findings: list[Finding]) -> None:
    """At execution time: the configuration may have changed since validation; refuse for good."""
    if findings:
        raise HttpRefused("; ".join(finding.message for finding in findings))
