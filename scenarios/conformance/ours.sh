#!/bin/sh
# Runs our connector under the conformance kit's contract (docs/conformance.md): turns the
# CONNECTOR_* environment into our configuration file and runs one `connector run`.
#
#   scenarios replay --connector-cmd 'scenarios/conformance/ours.sh target/release/connector'
#
# The secrets stay in the environment (the configuration names them by variable); the
# configuration file lives in the connector's work directory, readable by its owner only.
set -eu
bin=${1:?usage: ours.sh PATH-TO-connector}
work=$CONNECTOR_WORK_DIR
config=$work/connector.toml

# A TOML basic string: backslashes and double quotes escaped.
q() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

umask 077
{
    echo "state_dir = $(q "$work/state")"
    echo
    echo "[provider]"
    echo "url = $(q "$CONNECTOR_PROVIDER_URL")"
    echo "username = $(q "$CONNECTOR_PROVIDER_USERNAME")"
    echo 'password_env = "CONNECTOR_PROVIDER_PASSWORD"'
    echo
    echo "[microsoft365]"
    echo "tenant = $(q "$CONNECTOR_TENANT")"
    echo "client_id = $(q "$CONNECTOR_CLIENT_ID")"
    echo 'client_secret_env = "CONNECTOR_CLIENT_SECRET"'
    echo "graph_url = $(q "$CONNECTOR_GRAPH_URL")"
    echo "login_url = $(q "$CONNECTOR_LOGIN_URL")"
    echo
    echo "[mapping]"
    echo "automatic = $CONNECTOR_AUTOMATIC_MAPPING"
    if [ -n "${CONNECTOR_MAPPING_FILE:-}" ]; then
        echo "csv = $(q "$CONNECTOR_MAPPING_FILE")"
    fi
    if [ -n "${CONNECTOR_MAPPING_REGION:-}" ]; then
        echo "default_region = $(q "$CONNECTOR_MAPPING_REGION")"
    fi
    if [ -n "${CONNECTOR_UNMAPPED_MAILBOX:-}" ]; then
        echo "unmapped_mailbox = $(q "$CONNECTOR_UNMAPPED_MAILBOX")"
    fi
    echo
    echo "[import]"
    echo "size_limit_bytes = $CONNECTOR_SIZE_LIMIT_BYTES"
    echo "concurrency = $CONNECTOR_CONCURRENCY"
    echo
    # The fakes' clocks stand still between requests: pacing by the wall clock would
    # only slow the run down. Against a real tenant, leave pacing on (the default).
    echo "[pacing]"
    echo "enabled = false"
} > "$config"

set -- run --config "$config" --until "$CONNECTOR_UNTIL" --report "$CONNECTOR_REPORT" \
    --harness-now "$CONNECTOR_NOW" --harness-retry-ms "1,$CONNECTOR_RETRY_CAP_MS"
if [ -n "${CONNECTOR_SINCE:-}" ]; then
    set -- "$@" --since "$CONNECTOR_SINCE"
fi
exec "$bin" "$@"
