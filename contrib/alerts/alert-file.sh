#!/bin/sh
# alert-file.sh: a vigil alert agent that appends each event, one line, to a
# file: the alert's recipient (vigil alert add NAME --recipient FILE), by
# default /var/log/vigil-alerts.log.
#
#   vigil alert add log --path /usr/local/lib/vigil/alert-file.sh \
#       --recipient /var/log/vigil-alerts.log
#
# The event comes in VIGIL_ALERT_* variables (see `vigil alert add --help`).
set -eu
file=${VIGIL_ALERT_RECIPIENT:-/var/log/vigil-alerts.log}
line="${VIGIL_ALERT_TIMESTAMP:-?} cluster=${VIGIL_ALERT_CLUSTER:-?} seq=${VIGIL_ALERT_SEQ:-?} kind=${VIGIL_ALERT_KIND:-?}"
[ -n "${VIGIL_ALERT_MEMBER:-}" ] && line="$line member=$VIGIL_ALERT_MEMBER"
[ -n "${VIGIL_ALERT_SERVICE:-}" ] && line="$line service=$VIGIL_ALERT_SERVICE"
[ "${VIGIL_ALERT_EPOCH:-0}" != 0 ] && line="$line epoch=$VIGIL_ALERT_EPOCH"
[ -n "${VIGIL_ALERT_RC:-}" ] && line="$line rc=$VIGIL_ALERT_RC"
[ "${VIGIL_ALERT_TEST:-false}" = true ] && line="$line test=true"
line="$line: ${VIGIL_ALERT_EVENT:-}"
# One write per line, so that parallel runs do not interleave.
printf '%s\n' "$line" >> "$file"
