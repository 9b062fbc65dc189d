"""Record: write the image's row in the images table (ok, or indexed for non-celestial images)."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import record_step

handler = lambda_handler(record_step, "ImagesRecorded")
