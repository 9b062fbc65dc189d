"""Alerts: apply the alert rules to one image's sources; SNS PublishBatch once per alert_id."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import alerts_step

handler = lambda_handler(alerts_step, "ImagesAlerted")
