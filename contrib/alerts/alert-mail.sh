#!/bin/sh
# alert-mail.sh: a vigil alert agent that mails each event to the alert's
# recipient through sendmail(8), if this member has one.
#
#   vigil alert add mail --path /usr/local/lib/vigil/alert-mail.sh \
#       --recipient ops@example.com --kind member --kind service --kind fence
#
# Without sendmail it fails with a message, so the failure shows in
# `vigil events --kind alert` instead of mail going missing quietly.
set -eu
to=${VIGIL_ALERT_RECIPIENT:-}
if [ -z "$to" ]; then
	echo "alert-mail: no recipient: add the alert with --recipient ADDRESS" >&2
	exit 2
fi
sendmail=
for s in /usr/sbin/sendmail /usr/lib/sendmail; do
	[ -x "$s" ] && sendmail=$s && break
done
if [ -z "$sendmail" ]; then
	echo "alert-mail: sendmail is not installed on $(hostname): install an MTA (for example apt-get install dma) or use alert-file.sh" >&2
	exit 1
fi
subject="[vigil ${VIGIL_ALERT_CLUSTER:-}] ${VIGIL_ALERT_KIND:-event}: ${VIGIL_ALERT_EVENT:-}"
subject=$(printf '%s' "$subject" | tr -d '\r\n' | cut -c1-200)
{
	printf 'To: %s\n' "$to"
	printf 'Subject: %s\n' "$subject"
	printf 'Content-Type: text/plain; charset=utf-8\n\n'
	printf '%s\n\n' "${VIGIL_ALERT_EVENT:-}"
	printf 'cluster:   %s\nkind:      %s\nmember:    %s\nservice:   %s\nepoch:     %s\nexit code: %s\ntime:      %s\nevent:     #%s\nsent by:   %s (director)\n' \
		"${VIGIL_ALERT_CLUSTER:-}" "${VIGIL_ALERT_KIND:-}" "${VIGIL_ALERT_MEMBER:-}" "${VIGIL_ALERT_SERVICE:-}" \
		"${VIGIL_ALERT_EPOCH:-}" "${VIGIL_ALERT_RC:-}" "${VIGIL_ALERT_TIMESTAMP:-}" "${VIGIL_ALERT_SEQ:-}" "${VIGIL_ALERT_DIRECTOR:-}"
} | "$sendmail" -t
