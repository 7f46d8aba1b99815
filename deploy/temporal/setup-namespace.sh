#!/bin/sh
# One-shot job `temporal-setup` (docker-compose.yml, image temporalio/admin-tools), once the server is
# healthy: the namespace Countersign runs in, and Countersign's custom search attributes in it. The
# worker would register the attributes itself at start (countersign/config/temporal.py); doing it here first
# means the Web UI and `temporal workflow list --query` know them before any workflow runs.
# Idempotent: an existing namespace is kept as it is (retention included), an attribute already
# registered is left alone.
set -eu

address="${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS: HOST:PORT of the Temporal frontend}"
namespace="${COUNTERSIGN_NAMESPACE:?COUNTERSIGN_NAMESPACE: the namespace Countersign uses}"
retention="${TEMPORAL_RETENTION:?TEMPORAL_RETENTION: how long closed workflows are kept, e.g. 720h}"

# NAME:TYPE, the keys of countersign/models/search_attributes.py (tests/deploy/test_compose.py checks they match).
ATTRIBUTES="
CountersignState:Keyword
CountersignType:Keyword
CountersignAwaitingRole:Keyword
CountersignRequester:Keyword
CountersignTenant:Keyword
CountersignAmount:Double
CountersignSlaDue:Datetime
CountersignDeciders:KeywordList
CountersignParticipants:KeywordList
"

retry() { # what, then a command that must succeed within about two minutes
    what="$1"
    shift
    tries=0
    until "$@"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "gave up: $what" >&2
            exit 1
        fi
        sleep 2
    done
}

healthy() {
    temporal operator cluster health --address "$address" >/dev/null 2>&1
}

registered() { # name: listed among the namespace's custom search attributes
    temporal operator search-attribute list --namespace "$namespace" --address "$address" --output json \
        2>/dev/null | grep -q "\"$1\":"
}

add() { # name, type: registered, or registering it now (a namespace just created may take a moment)
    registered "$1" || {
        temporal operator search-attribute create --namespace "$namespace" --name "$1" --type "$2" \
            --address "$address" >/dev/null 2>&1 || true
        registered "$1"
    }
}

echo "Waiting for the Temporal server at $address"
retry "the Temporal server at $address is not healthy" healthy

if temporal operator namespace describe --namespace "$namespace" --address "$address" >/dev/null 2>&1; then
    echo "Namespace $namespace exists; its retention is left as it is"
else
    temporal operator namespace create --namespace "$namespace" --retention "$retention" \
        --description "Countersign approval workflows" --address "$address"
fi

for attribute in $ATTRIBUTES; do
    name="${attribute%%:*}"
    retry "search attribute $name in namespace $namespace" add "$name" "${attribute#*:}"
    echo "Search attribute $name (${attribute#*:}) is registered"
done
echo "Namespace $namespace is ready for Countersign"
