"""Inspect: header-only read of the uploaded object; chooses the route (small, large, index_only)."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import Context, IngestEvent, IngestState, inspect_step


@lambda_handler(metric="ImagesInspected")
def handler(event: IngestEvent, ctx: Context) -> IngestState:
    return inspect_step(event, ctx)
