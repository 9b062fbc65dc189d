"""Report: summarise a SurveyIngest Map Run into one report object."""

from skysift.aws.handlers import lambda_handler
from skysift.aws.steps import Context, ReportRequest, ReportResult, report_step


@lambda_handler(metric="SurveyReports")
def handler(event: ReportRequest, ctx: Context) -> ReportResult:
    return report_step(event, ctx)
