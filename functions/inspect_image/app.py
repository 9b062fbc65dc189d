"""Inspect: header-only read of the uploaded object; chooses the route (small, large, index_only)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from skysift.aws.steps import context_from_env, inspect_step

logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        return inspect_step(event, context_from_env())
    finally:
        metrics.add_metric(name="ImagesInspected", unit=MetricUnit.Count, value=1)
