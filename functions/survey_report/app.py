"""Report: summarise a SurveyIngest Map Run into one report object."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import report_step

handler = lambda_handler(report_step, "SurveyReports")
