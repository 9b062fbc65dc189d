"""Quarantine: record a failure (never deleting, never overwriting a success); the raw object is kept."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import Context, QuarantineRequest, QuarantineResult, quarantine_step


@lambda_handler(metric="ImagesQuarantined")
def handler(event: QuarantineRequest, ctx: Context) -> QuarantineResult:
    return quarantine_step(event, ctx)
