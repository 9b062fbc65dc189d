"""DetectSmall: measure a small celestial image and write its sources rows; returns S3 pointers."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import Context, DetectResult, IngestState, detect_step


@lambda_handler(metric="ImagesMeasured")
def handler(event: IngestState, ctx: Context) -> DetectResult:
    return detect_step(event, ctx)
