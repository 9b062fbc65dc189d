"""Quarantine: record a failure (never deleting, never overwriting a success); the raw object is kept."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import quarantine_step

handler = lambda_handler(quarantine_step, "ImagesQuarantined")
