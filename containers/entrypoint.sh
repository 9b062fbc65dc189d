#!/bin/sh
# Batch runs the worker with a command override that starts with "batch";
# anything else is a Lambda handler name for the Lambda runtime interface.
set -e
if [ "$1" = "batch" ]; then
    shift
    exec python3 -m skysift.aws.worker "$@"
fi
exec /lambda-entrypoint.sh "$@"
