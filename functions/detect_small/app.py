"""DetectSmall: measure a small celestial image and write its sources rows; returns S3 pointers."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import detect_step

handler = lambda_handler(detect_step, "ImagesMeasured")
