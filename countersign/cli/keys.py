"""`countersign keys generate`: new keys for a deployment (the embedded stack makes its own)."""

from typing import Annotated, Literal

import typer

from countersign.cli.common import err
from countersign.security import audit_keys, gateway_keys, link_keys

keys_app = typer.Typer(help="Make the keys Countersign keeps outside its database.")


@keys_app.command("generate")
def generate(
    kind: Annotated[
        Literal["gateway", "audit", "links"],
        typer.Argument(
            help="gateway: an Ed25519 signing key; audit: an audit chain (HMAC) key; "
            "links: a key that signs decision links (HMAC)"
        ),
    ],
    key_id: Annotated[str | None, typer.Option("--id", help="The key's id [a dated one]")] = None,
) -> None:
    """Print a new key as the settings take it. For `gateway`: the signing key (for
    COUNTERSIGN_GATEWAY_SIGNING_KEYS, gateways only), then its public half (for
    COUNTERSIGN_GATEWAY_PUBLIC_KEYS, workers). For `audit`: a key for COUNTERSIGN_AUDIT_KEYS. For
    `links`: a key for COUNTERSIGN_LINK_KEYS (workers and gateways)."""
    if kind == "gateway":
        private, public = gateway_keys.generate(key_id)
        err.print("COUNTERSIGN_GATEWAY_SIGNING_KEYS (the gateway only; keep it secret):", markup=False)
        print(private)
        err.print("COUNTERSIGN_GATEWAY_PUBLIC_KEYS (every worker):", markup=False)
        print(public)
        return
    if kind == "links":
        err.print("COUNTERSIGN_LINK_KEYS (workers and gateways; keep it secret):", markup=False)
        print(link_keys.generate(key_id))
        return
    err.print("COUNTERSIGN_AUDIT_KEYS (workers, gateways and the audit CLI; keep it secret):", markup=False)
    print(audit_keys.generate(key_id))
