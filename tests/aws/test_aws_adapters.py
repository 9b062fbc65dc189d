"""The AWS adapters on their own: SNS publisher with its ledger, and the S3/Glue catalog store."""

from __future__ import annotations

import json
import math
import time

import boto3
import pyarrow as pa
import pytest
from aws_support import received_alert_ids
from botocore.exceptions import ClientError
from moto import mock_aws

from skysift.aws.faults import is_transient
from skysift.aws.publisher import ClaimWindow, SnsPublisher, idempotency_config, message_attributes

REGION = "us-east-1"


def alert(i: int, **values) -> dict:
    return {"alert_id": f"a{i}", "rule": "high_snr", "survey": "test", "band": "r", "image_id": "img",
            "snr": 300.0 + i, "mag_ab": 17.5, **values}


@pytest.fixture
def sns_setup(monkeypatch):
    """A FIFO alert topic with a FIFO queue subscribed, and the ledger table as the template declares it."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
        topic = session.client("sns").create_topic(Name="alerts.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
        session.client("dynamodb").create_table(
            TableName="ledger", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        sqs = session.client("sqs")
        queue = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        session.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield session, topic, queue


def ledger(session) -> dict[str, str]:
    """Status of each ledger record."""
    items = session.client("dynamodb").scan(TableName="ledger")["Items"]
    return {item["id"]["S"]: item["status"]["S"] for item in items}


def test_message_attributes_carry_kind_survey_band_snr_mag_and_alert_id_and_skip_missing_values():
    attributes = message_attributes(alert(1, mag_ab=math.nan))
    assert attributes["kind"] == {"DataType": "String", "StringValue": "high_snr"}
    assert attributes["snr"] == {"DataType": "Number", "StringValue": "301"}
    assert attributes["alert_id"] == {"DataType": "String", "StringValue": "a1"}
    assert "mag" not in attributes
    assert message_attributes(alert(1))["mag"] == {"DataType": "Number", "StringValue": "17.5"}


def test_each_alert_is_published_once(sns_setup):
    session, topic, queue = sns_setup
    publisher = SnsPublisher(topic, "ledger", session=session)

    first = publisher.publish([alert(i) for i in range(23)])
    again = publisher.publish([alert(i) for i in range(25)])

    assert len(first) == 23 and again == ["a23", "a24"]
    assert sorted(received_alert_ids(session, queue)) == sorted(f"a{i}" for i in range(25))
    assert set(ledger(session).values()) == {"COMPLETED"}


def test_a_failed_publish_releases_its_claim_so_a_retry_sends_it(sns_setup):
    session, topic, queue = sns_setup
    broken = SnsPublisher(topic.replace("alerts.fifo", "gone.fifo"), "ledger", session=session)

    with pytest.raises(ClientError, match="NotFound"):
        broken.publish([alert(i) for i in range(3)])

    assert ledger(session) == {}
    assert SnsPublisher(topic, "ledger", session=session).publish([alert(i) for i in range(3)]) == ["a0", "a1", "a2"]
    assert received_alert_ids(session, queue) == ["a0", "a1", "a2"]


class Died(BaseException):
    """The process dies (a Lambda timeout, out of memory): no ``except Exception`` runs."""


def test_a_claim_whose_holder_died_expires_with_its_deadline_and_the_alert_is_then_sent(sns_setup, monkeypatch):
    session, topic, queue = sns_setup
    config = idempotency_config()
    config.register_lambda_context(ClaimWindow(seconds=1.0))  # the dying invocation had 1 s left
    dying = SnsPublisher(topic, "ledger", session=session, config=config)
    monkeypatch.setattr(dying.sns, "publish", lambda **_: (_ for _ in ()).throw(Died()))

    with pytest.raises(Died):  # claimed, then died before publishing
        dying.publish([alert(1)])
    retry = SnsPublisher(topic, "ledger", session=session)
    with pytest.raises(Exception) as busy:  # the claim still holds: "in progress", retried later
        retry.publish([alert(1)])
    time.sleep(1.1)
    sent = retry.publish([alert(1)])

    assert is_transient(busy.value)
    assert sent == ["a1"] and received_alert_ids(session, queue) == ["a1"]


def test_a_publish_whose_response_was_lost_is_not_delivered_twice(sns_setup):
    session, topic, queue = sns_setup
    publisher = SnsPublisher(topic, "ledger", session=session)
    publisher.publish([alert(1)])
    # The response was lost: the claim was released and the step retried, which publishes again.
    session.client("dynamodb").delete_item(TableName="ledger", Key={"id": {"S": next(iter(ledger(session)))}})

    assert publisher.publish([alert(1)]) == ["a1"]  # sent again to SNS ...
    assert received_alert_ids(session, queue) == ["a1"]  # ... and dropped there: MessageDeduplicationId = alert_id


def test_catalog_store_replaces_an_images_rows_and_finds_earlier_images(emulation):
    from datetime import UTC, datetime

    from skysift.aws.catalog import S3GlueCatalog
    from skysift.catalog.records import ImageRecord
    from skysift.catalog.schema import sources_schema

    store = S3GlueCatalog(emulation.catalog_bucket, emulation.database)
    row = ImageRecord(image_id="img1", status="ok", route="small", survey="test", band="r", obs_night="2026-01-01",
                      obs_time=datetime(2026, 1, 1, tzinfo=UTC), center_ra=150.0, center_dec=2.2, radius_deg=0.02)
    schema = sources_schema(3)
    sources = pa.Table.from_pylist([{f.name: None for f in schema} | {"image_id": "img1", "source_id": f"img1:{i}",
                                                                       "ra": 150.0, "dec": 2.2, "flags": 0}
                                    for i in range(5)], schema=schema)
    store.write_image(row, sources)
    store.write_image(row, sources.slice(0, 3))  # the same image again: its rows are replaced

    assert emulation.read_table("sources").num_rows == 3
    assert emulation.read_table("images").num_rows == 1
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert [r.image_id for r in store.earlier_images(150.01, 2.2, 0.01, later)] == ["img1"]
    assert store.earlier_images(151.0, 2.2, 0.01, later) == []
    assert store.earlier_images(150.0, 2.2, 0.01, datetime(2025, 12, 31, tzinfo=UTC)) == []
    assert store.earlier_sources(150.0, 2.2, 0.001, later).num_rows == 3


# -- which failures are retried (skysift.aws.faults) -----------------------------------------------
def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


@pytest.mark.parametrize(("code", "status", "transient"), [
    ("SlowDown", 503, True), ("ThrottlingException", 400, True), ("ProvisionedThroughputExceededException", 400, True),
    ("InternalError", 500, True), ("SomethingNew", 502, True), ("SomethingNew", 429, True),
    ("AccessDenied", 403, False), ("NoSuchBucket", 404, False), ("ValidationException", 400, False),
    ("AuthorizationError", 403, False),
])
def test_aws_errors_are_transient_when_throttled_or_5xx_and_permanent_otherwise(code, status, transient):
    from skysift.aws.faults import AWS_PERMANENT, AWS_TRANSIENT, failure_record

    record = failure_record(_client_error(code, status))

    assert record["transient"] is transient
    assert record["reason"] == (AWS_TRANSIENT if transient else AWS_PERMANENT)
    assert code in record["message"] and "PutObject" in record["message"]


def test_the_cause_of_a_wrapped_error_decides_and_typed_errors_keep_their_reason():
    import errno

    from botocore.exceptions import EndpointConnectionError

    from skysift.aws.faults import PermanentError, TransientError, failure_record, step_failure
    from skysift.errors import InternalError, NotFITS

    throttled_read = OSError(errno.EBUSY, "SlowDown")
    throttled_read.__cause__ = _client_error("SlowDown", 503)
    assert is_transient(InternalError.from_exception(throttled_read))  # a measurement stopped by S3, not a bug
    assert is_transient(EndpointConnectionError(endpoint_url="https://sns"))
    assert isinstance(step_failure(EndpointConnectionError(endpoint_url="https://sns")), TransientError)
    bad = step_failure(NotFITS("not a FITS file", uri="s3://b/k"))
    assert isinstance(bad, PermanentError)
    assert (bad.record["reason"], bad.record["uri"], bad.record["transient"]) == ("not_fits", "s3://b/k", False)
    bug = failure_record(ValueError("boom"))
    assert (bug["reason"], bug["transient"], bug["error_type"]) == ("internal_error", False, "InternalError")


def test_a_typed_errors_class_says_whether_it_is_transient():
    from skysift.aws.faults import PermanentError, TransientError, step_failure
    from skysift.errors import DetectionFailed, SkysiftError, WorkerDied
    from skysift.timelag.errors import IndexUnavailable

    assert [e.transient for e in (SkysiftError, DetectionFailed, WorkerDied, IndexUnavailable)] == [False, False, True, True]
    died = step_failure(WorkerDied("killed (out of memory)", uri="s3://b/k"))
    assert isinstance(died, TransientError) and died.record["reason"] == "worker_died"
    assert isinstance(step_failure(DetectionFailed("deblending overflow")), PermanentError)
    with pytest.raises(TypeError, match="not 'permanent'"):
        type("Flaky", (SkysiftError,), {"reason": "flaky", "permanent": False})  # the old spelling, silently ignored


def test_idempotency_errors_retry_while_another_execution_holds_the_claim():
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
    )

    assert is_transient(IdempotencyAlreadyInProgressError("in progress"))
    stuck = IdempotencyPersistenceLayerError("Failed to save in progress record")
    stuck.__cause__ = _client_error("ProvisionedThroughputExceededException", 400)
    assert is_transient(stuck)
    denied = IdempotencyPersistenceLayerError("Failed to save in progress record")
    denied.__cause__ = _client_error("AccessDeniedException", 400)
    assert not is_transient(denied)


def test_the_failure_record_travels_in_the_cause_of_the_catch():
    from skysift.aws.faults import TransientError, record_from_cause

    failure = TransientError({"reason": "aws_transient", "message": "PutObject: SlowDown"})
    cause = json.dumps({"errorMessage": str(failure), "errorType": "TransientError", "stackTrace": []})

    assert record_from_cause(cause) == failure.record
    assert record_from_cause("not json") is None
    assert record_from_cause(json.dumps({"errorMessage": "a plain message"})) is None
