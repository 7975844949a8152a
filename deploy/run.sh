#!/bin/sh
# Supervise mendbot where no init system does (the Docker image's entry point).
#
#   run.sh [mendbot arguments]   run `mendbot` (default: `run`); start it again when it exits with
#                                the restart code 26 (a deploy changed bot/ or pyproject.toml);
#                                any other exit ends the loop with that code — 78 (configuration
#                                error) must not become a restart loop.
#   run.sh --install-only        reinstall the package if pyproject.toml changed since the last
#                                install, then exit (systemd runs this as ExecStartPre).
#
# SIGTERM/SIGINT are passed to mendbot, which drains and exits; the loop then stops. Run from the
# live checkout (the working directory); `python` and `mendbot` come from PATH (the venv).
set -u

RESTART_CODE="${MENDBOT_RESTART_CODE:-26}"
export MENDBOT_SUPERVISED=1

install_if_changed() {
    # A restart for a new dependency only helps once it is installed. The stamp lives in the
    # environment it describes.
    stamp="$(python -c 'import sys; print(sys.prefix)')/.mendbot-pyproject.sha256"
    if [ -f "$stamp" ] && sha256sum -c --status "$stamp" 2>/dev/null; then
        return 0
    fi
    echo "run.sh: pyproject.toml changed: reinstalling mendbot" >&2
    python -m pip install --quiet -e ".[all]" && python -m mendbot.tools.warm && sha256sum pyproject.toml > "$stamp"
}

if [ "${1:-}" = "--install-only" ]; then
    install_if_changed
    exit $?
fi
[ "$#" -gt 0 ] || set -- run

child=""
stopping=0
forward() {
    stopping=1
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT

while :; do
    install_if_changed || echo "run.sh: reinstall failed; starting with the installed version" >&2
    mendbot "$@" &
    child=$!
    wait "$child"
    code=$?
    # A trapped signal interrupts `wait` (status > 128) while mendbot is still draining: wait
    # again for its real exit code.
    while kill -0 "$child" 2>/dev/null; do
        wait "$child"
        code=$?
    done
    child=""
    if [ "$code" -ne "$RESTART_CODE" ] || [ "$stopping" -eq 1 ]; then
        exit "$code"
    fi
    echo "run.sh: mendbot asked for a restart (exit $code): starting it again" >&2
done
