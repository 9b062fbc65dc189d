#!/bin/sh
# Entrypoint of the worker image: one image, three ways in (template.yaml says which).
#   batch ARGS...           the large-image Batch job (the IngestImage state machine's command
#                           override: --bucket B --key K --summary-uri U --hdu N, one image of the
#                           file) -> python -m skysift.aws.worker ARGS, passed through as they are
#   python|python3 ARGS...  a Batch job's own command, run directly (TimeLagJobDefinition:
#                           python -m skysift.aws.timelag_job REQUEST_URI)
#   HANDLER                 a Lambda function (ImageConfig.Command, e.g.
#                           functions.detect_small.app.handler) -> the Lambda runtime interface
# SKYSIFT_PYTHON names the interpreter (default python3, the image's), SKYSIFT_LAMBDA_ENTRYPOINT
# the runtime interface's script (tests stand a stub in for it).
set -eu

python_job() {
    # The packages live in the Lambda task root: the Lambda runtime puts it on sys.path, a Batch
    # job's interpreter has to be told.
    if [ -n "${LAMBDA_TASK_ROOT:-}" ]; then
        PYTHONPATH="${LAMBDA_TASK_ROOT}${PYTHONPATH:+:$PYTHONPATH}"
        export PYTHONPATH
    fi
    exec "${SKYSIFT_PYTHON:-python3}" "$@"
}

case "${1:-}" in
    batch)
        shift
        python_job -m skysift.aws.worker "$@"
        ;;
    python | python3)
        shift
        python_job "$@"
        ;;
esac
if [ "$#" -ne 1 ]; then
    echo "skysift-entrypoint: expected 'batch ARGS...', 'python ARGS...' or one Lambda handler name; got: $*" >&2
    exit 64
fi
exec "${SKYSIFT_LAMBDA_ENTRYPOINT:-/lambda-entrypoint.sh}" "$1"
