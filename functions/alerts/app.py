"""Alerts: apply the alert rules to one image's sources; SNS publish once per alert_id, then the alerts rows."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import AlertsResult, Context, IngestState, alerts_step


@lambda_handler(metric="ImagesAlerted")
def handler(event: IngestState, ctx: Context) -> AlertsResult:
    return alerts_step(event, ctx)
