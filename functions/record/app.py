"""Record: write the image's row in the images table (ok, or indexed for non-celestial images)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from skysift.aws.steps import context_from_env, record_step

logger, tracer, metrics = Logger(), Tracer(), Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    try:
        return record_step(event, context_from_env())
    finally:
        metrics.add_metric(name="ImagesRecorded", unit=MetricUnit.Count, value=1)
