"""Alerts: apply the alert rules to one image's sources; SNS publish once per alert_id, then the alerts rows."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import alerts_step

handler = lambda_handler(alerts_step, "ImagesAlerted")
