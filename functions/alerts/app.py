"""Alerts: apply the alert rules to one image's sources; SNS PublishBatch once per alert_id."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from skysift.aws.steps import alerts_step, context_from_env

logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        return alerts_step(event, context_from_env())
    finally:
        metrics.add_metric(name="ImagesAlerted", unit=MetricUnit.Count, value=1)
