"""Quarantine: a failed images row with the reason and a quarantine record; the raw object is kept."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import quarantine_step

handler = lambda_handler(quarantine_step, "ImagesQuarantined")
