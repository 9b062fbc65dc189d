"""LaterImages: the recorded images whose alert decision an image just recorded may change (it is earlier and overlaps them)."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.reopen import LaterImagesRequest, LaterImagesResult, later_images_step
from skysift.aws.steps import Context


@lambda_handler(metric="LaterImagesListed")
def handler(event: LaterImagesRequest, ctx: Context) -> LaterImagesResult:
    return later_images_step(event, ctx)
