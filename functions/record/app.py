"""Record: write the image's row in the images table (ok, or indexed for non-celestial images)."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import Context, IngestState, RecordResult, record_step


@lambda_handler(metric="ImagesRecorded")
def handler(event: IngestState, ctx: Context) -> RecordResult:
    return record_step(event, ctx)
