"""Every table of Countersign's one database, as the stores define them.

Only for comparing the migrations with the stores (tests/store/test_migrations.py) and for writing the
next migration (`countersign db revision`): the running code creates tables through migrations alone.
"""

import sqlalchemy as sa

from countersign.store import (
    audit_tables,
    callbacks,
    decision_links,
    declared_tools,
    delivery_marks,
    digests,
    directory,
    execution_ledger,
    graph_store,
    leases,
    notification_log,
    outbox,
    pending_decisions,
    principals,
    slack_messages,
    tool_records,
)

ALL: list[sa.MetaData] = [
    audit_tables.metadata,
    callbacks.metadata,
    decision_links.metadata,
    declared_tools.metadata,
    delivery_marks.metadata,
    digests.metadata,
    directory.metadata,
    execution_ledger.metadata,
    graph_store.metadata,
    leases.metadata,
    notification_log.metadata,
    outbox.metadata,
    pending_decisions.metadata,
    principals.schema.metadata,
    slack_messages.metadata,
    tool_records.metadata,
]


def merged(schema: str | None = None) -> sa.MetaData:
    """All the tables in one MetaData, as the database holds them (in `schema`, if given)."""
    one = sa.MetaData()
    for metadata in ALL:
        for table in metadata.tables.values():
            if schema is None:
                table.to_metadata(one)
            else:
                table.to_metadata(one, schema=schema)
    return one
