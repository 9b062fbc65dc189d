"""The AWS :class:`~skysift.ports.AlertPublisher`: SNS PublishBatch, once per alert_id.

Each alert goes out as a JSON body (:func:`skysift.alerts.alert_message`) with SNS
message attributes ``kind``, ``survey``, ``band``, ``snr``, ``mag``, ``image_id``,
so that a subscription's filter policy picks what it wants
(``{"kind": ["new_source"], "snr": [{"numeric": [">=", 50]}]}``).

S3 and EventBridge deliver at least once, so the same image can be processed twice,
even at the same time. A conditional put in the DynamoDB ledger
(``attribute_not_exists(alert_id)``) decides who sends each alert; a failed publish
releases its claim so that a retry sends it. (A crash between the claim and the
publish loses that alert: at most once, never twice.)
"""

from __future__ import annotations

import json
import logging
import math
import time

import boto3
from botocore.exceptions import ClientError

from ..alerts import alert_message

log = logging.getLogger(__name__)

SNS_BATCH = 10
LEDGER_TTL_S = 400 * 86400


class TransientError(Exception):
    """A service refused or throttled a request; the state machine retries these."""

    reason = "transient"


def message_attributes(alert: dict) -> dict[str, dict[str, str]]:
    """SNS message attributes of one alert (numbers as Number, absent values omitted)."""
    attributes = {"kind": ("String", alert.get("rule")), "survey": ("String", alert.get("survey")),
                  "band": ("String", alert.get("band")), "image_id": ("String", alert.get("image_id")),
                  "snr": ("Number", alert.get("snr")), "mag": ("Number", alert.get("mag_ab"))}
    out = {}
    for name, (kind, value) in attributes.items():
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        text = f"{float(value):.6g}" if kind == "Number" else str(value)
        out[name] = {"DataType": kind, "StringValue": text}
    return out


class SnsPublisher:
    """Publish alerts to one topic; the ledger table makes each alert_id go out once."""

    def __init__(self, topic_arn: str, ledger_table: str, *, session: boto3.Session | None = None) -> None:
        session = session or boto3.Session()
        self.topic_arn = topic_arn
        self.ledger_table = ledger_table
        self.sns = session.client("sns")
        self.dynamodb = session.client("dynamodb")

    def _claim(self, alert_id: str) -> bool:
        try:
            self.dynamodb.put_item(
                TableName=self.ledger_table,
                Item={"alert_id": {"S": alert_id}, "claimed_at": {"N": str(int(time.time()))},
                      "expires_at": {"N": str(int(time.time()) + LEDGER_TTL_S)}},
                ConditionExpression="attribute_not_exists(alert_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _release(self, alert_id: str) -> None:
        self.dynamodb.delete_item(TableName=self.ledger_table, Key={"alert_id": {"S": alert_id}})

    def publish(self, alerts: list[dict]) -> list[str]:
        """Publish the alerts not yet sent; returns the alert_ids sent now."""
        claimed = [a for a in alerts if self._claim(a["alert_id"])]
        sent: list[str] = []
        failed: list[str] = []
        for start in range(0, len(claimed), SNS_BATCH):
            batch = claimed[start : start + SNS_BATCH]
            entries = [{"Id": str(i), "Message": json.dumps(alert_message(a)),
                        "Subject": f"skysift {a['rule']} {a['survey']}/{a['band']}"[:100],
                        "MessageAttributes": message_attributes(a)} for i, a in enumerate(batch)]
            try:
                response = self.sns.publish_batch(TopicArn=self.topic_arn, PublishBatchRequestEntries=entries)
            except ClientError:
                failed += [a["alert_id"] for a in batch]
                continue
            ok = {int(item["Id"]) for item in response.get("Successful", [])}
            sent += [a["alert_id"] for i, a in enumerate(batch) if i in ok]
            failed += [a["alert_id"] for i, a in enumerate(batch) if i not in ok]
        for alert_id in failed:
            self._release(alert_id)
        if failed:
            raise TransientError(f"SNS did not accept {len(failed)} of {len(claimed)} alerts; they will be retried")
        return sent
