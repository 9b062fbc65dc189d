"""One Powertools Lambda handler shape for every step function of the state machines.

Each ``functions/*/app.py`` is one line over this: structured logs with the Lambda
context, an X-Ray trace, and a count metric per invocation; the work is the step
function from :mod:`skysift.aws.steps`. Whatever the step raises leaves the handler as
one of the two errors the state machines know (:func:`skysift.aws.faults.step_failure`):
``TransientError``, retried, or ``PermanentError``, caught to Quarantine.
"""

from __future__ import annotations

from collections.abc import Callable

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from skysift.aws.faults import step_failure
from skysift.aws.steps import context_from_env

Step = Callable[[dict, object], dict]


def lambda_handler(step: Step, metric: str) -> Callable[[dict, LambdaContext], dict]:
    """A Lambda handler that runs ``step(event, context_from_env())`` and counts ``metric``."""
    logger, tracer, metrics = Logger(), Tracer(), Metrics()

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict, context: LambdaContext) -> dict:
        try:
            ctx = context_from_env()
            ctx.register_lambda_context(context)  # alert claims expire with this invocation
            return step(event, ctx)
        except Exception as exc:
            failure = step_failure(exc)
            logger.warning("step failed", extra={"failure": failure.record})
            if failure is exc:
                raise
            raise failure from exc
        finally:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)

    return handler
