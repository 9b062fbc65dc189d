"""ReopenAlert: the alert rules again over a recorded image, after an earlier image of its sky arrived; what is new is sent once."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.reopen import ReopenRequest, reopen_alerts_step
from skysift.aws.steps import AlertsResult, Context


@lambda_handler(metric="ImagesAlertedAgain")
def handler(event: ReopenRequest, ctx: Context) -> AlertsResult:
    return reopen_alerts_step(event, ctx)
