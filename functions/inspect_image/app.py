"""Inspect: header-only read of the uploaded object; chooses the route (small, large, index_only)."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import inspect_step

handler = lambda_handler(inspect_step, "ImagesInspected")
