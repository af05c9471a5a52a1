#!/bin/sh
# posp image entrypoint: the first argument picks the program.
#
#   docker run posp serve | up | merchant … | terminal … | batch … | settlement …
#                                                  → posp <command> …   (the switch)
#   docker run posp hsm-sim | issuer-sim serve | posp-fleet | posp-conformance
#                       | posp-healthcheck | posp …  → that console script
#   docker run posp <anything else>                → run it as given (e.g. sh)
#
# exec, so the program is PID 1: it receives SIGTERM (STOPSIGNAL) directly and
# drains before exiting, and posp-healthcheck can tell from /proc/1/cmdline
# which program to probe.
set -e
if [ "$#" -eq 0 ]; then
    set -- serve
fi
case "$1" in
    serve|up|merchant|terminal|batch|settlement)
        exec posp "$@" ;;
    *)
        exec "$@" ;;
esac
