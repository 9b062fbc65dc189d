"""Quarantine: a failed images row with the reason and a quarantine record; the raw object is kept."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from skysift.aws.steps import context_from_env, quarantine_step

logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        return quarantine_step(event, context_from_env())
    finally:
        metrics.add_metric(name="ImagesQuarantined", unit=MetricUnit.Count, value=1)
