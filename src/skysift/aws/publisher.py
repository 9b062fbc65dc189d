"""The AWS :class:`~skysift.catalog.ports.AlertPublisher`: SNS, exactly once per alert_id.

Each alert goes out as a JSON body (:func:`skysift.alerts.delivery.alert_message`, which names
its Avro packet: ``packet_uri``, see :mod:`skysift.alerts.packets`) with SNS message attributes
``kind``, ``survey``, ``band``, ``snr``, ``mag``, ``image_id``, ``alert_id``, ``sky_cell`` (the
nested HEALPix index of the candidate at nside 64, a Number) and ``object_id`` (its object, as
in the objects table), so that a subscription's filter policy picks what it wants:
``{"kind": ["new_source"], "snr": [{"numeric": [">=", 50]}]}``, a region
``{"sky_cell": [{"numeric": [">=", 1024, "<=", 1039]}]}`` (nested cells: a coarser cell is a
range of indices, see :func:`skysift.alerts.packets.sky_cell_ranges`) or a watchlist
``{"object_id": ["d9ed744e4ca6050c", ...]}``.

S3 and EventBridge deliver at least once, so the same image can be processed twice, even at
the same time, and any step can fail half-way and be retried. Two mechanisms, one per kind
of fault, make each alert reach a subscriber once:

* **Powertools idempotency** (:func:`~aws_lambda_powertools.utilities.idempotency.idempotent_function`
  keyed by ``alert_id``, records in the ledger table): the first execution to claim an alert
  (a conditional put, status ``INPROGRESS``) publishes it and marks it ``COMPLETED`` with the
  message id; every later attempt gets that result back without publishing. A publish that fails
  releases the claim, so a retry sends it; a claim whose holder died (timeout, out of memory)
  expires with the holder's Lambda deadline (:meth:`IdempotencyConfig.register_lambda_context
  <aws_lambda_powertools.utilities.idempotency.IdempotencyConfig.register_lambda_context>`), so a
  crash between claim and publish is retried, never lost. A claim made outside Lambda expires after
  :data:`CLAIM_S`.
* **An SNS FIFO topic** with ``MessageDeduplicationId = alert_id``: a publish whose response was
  lost (botocore retries it, or the claim is released and the step retried) is dropped by SNS
  within its 5-minute deduplication window, so it is not delivered twice. SQS FIFO queues
  subscribed to the topic receive each alert exactly once; an SQS standard queue receives it
  at least once and should deduplicate on the ``alert_id`` message attribute.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import boto3
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from skysift.alerts.delivery import alert_message

__all__ = [
    "CLAIM_S",
    "KEY_PREFIX",
    "LEDGER_TTL_S",
    "ClaimWindow",
    "SnsPublisher",
    "idempotency_config",
    "message_attributes",
]

log = logging.getLogger(__name__)

#: How long an alert_id is remembered as sent: a re-run of an image within this time sends nothing.
LEDGER_TTL_S = 400 * 86400
#: Lifetime of a claim made outside a Lambda invocation (no deadline to take it from).
CLAIM_S = 120
#: Prefix of the ledger's idempotency keys (``skysift-alert#<md5 of alert_id>``), stable across releases.
KEY_PREFIX = "skysift-alert"


@dataclass(frozen=True)
class ClaimWindow:
    """Stands in for a Lambda context where there is none: claims expire after ``seconds``."""

    seconds: float = CLAIM_S

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


def _replayed(response: dict, _record) -> dict:
    """Powertools' response hook: a result read back from the ledger (sent before, not now)."""
    return {**(response or {}), "replayed": True}


def idempotency_config() -> IdempotencyConfig:
    """The ledger's configuration: key = alert_id; register the Lambda context on it per invocation."""
    return IdempotencyConfig(event_key_jmespath="alert_id", raise_on_no_idempotency_key=True,
                             expires_after_seconds=LEDGER_TTL_S, lambda_context=ClaimWindow(),
                             response_hook=_replayed)


def message_attributes(alert: dict) -> dict[str, dict[str, str]]:
    """SNS message attributes of one alert (numbers as Number, absent values omitted)."""
    attributes = {"kind": ("String", alert.get("rule")), "survey": ("String", alert.get("survey")),
                  "band": ("String", alert.get("band")), "image_id": ("String", alert.get("image_id")),
                  "alert_id": ("String", alert.get("alert_id")),
                  "snr": ("Number", alert.get("snr")), "mag": ("Number", alert.get("mag_ab")),
                  "sky_cell": ("Number", alert.get("sky_cell")), "object_id": ("String", alert.get("object_id"))}
    out = {}
    for name, (kind, value) in attributes.items():
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if kind == "Number":
            text = str(value) if isinstance(value, int) else f"{float(value):.6g}"
        else:
            text = str(value)
        out[name] = {"DataType": kind, "StringValue": text}
    return out


class SnsPublisher:
    """Publish alerts to one topic, each alert_id once (ledger: a Powertools idempotency table)."""

    def __init__(self, topic_arn: str, ledger_table: str, *, session: boto3.Session | None = None,
                 config: IdempotencyConfig | None = None) -> None:
        session = session or boto3.Session()
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.sns = session.client("sns")
        self.config = config or idempotency_config()
        ledger = DynamoDBPersistenceLayer(table_name=ledger_table, boto3_session=session)
        self._send_once = idempotent_function(self._send, data_keyword_argument="alert", persistence_store=ledger,
                                              config=self.config, key_prefix=KEY_PREFIX)

    def _send(self, alert: dict) -> dict:
        fifo = {"MessageGroupId": alert["image_id"], "MessageDeduplicationId": alert["alert_id"]} if self.fifo else {}
        response = self.sns.publish(
            TopicArn=self.topic_arn, Message=json.dumps(alert_message(alert)),
            Subject=f"skysift {alert['rule']} {alert['survey']}/{alert['band']}"[:100],
            MessageAttributes=message_attributes(alert), **fifo)
        return {"message_id": response["MessageId"], "sent_at": int(time.time())}

    def publish(self, alerts: list[dict]) -> list[str]:
        """Publish each alert not sent before; returns the alert_ids sent now.

        Stops at the first alert that cannot be sent, raising its error (its claim released):
        the alerts sent so far are remembered, so the step's retry sends the rest.
        """
        sent = []
        for alert in {a["alert_id"]: a for a in alerts}.values():
            if not self._send_once(alert=alert).get("replayed"):
                sent.append(alert["alert_id"])
        return sent
