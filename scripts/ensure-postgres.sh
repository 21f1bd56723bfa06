#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, pg_dump) are installed for the
# throwaway clusters of the demo and the tests. Installs Debian's postgresql-15 when
# running as root on Debian and nothing is there; otherwise says what to install.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "${KIVI_OTRS_PG_BIN:-}" ] || [ -n "${KIVI_OTRS_TEST_DSN:-}" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing PostgreSQL 15 server binaries (apt-get install postgresql-15) ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    exit 0
fi
echo "Error: no PostgreSQL server binaries found; install postgresql-15 (or set KIVI_OTRS_TEST_DSN)" >&2
exit 1
