"""The AWS adapters on their own: SNS publisher with its ledger, and the S3/Glue catalog store."""

from __future__ import annotations

import json
import math

import boto3
import pyarrow as pa
import pytest
from aws_support import THIRD_PARTY_WARNINGS
from moto import mock_aws

from skysift.aws.publisher import SnsPublisher, TransientError, message_attributes

pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

REGION = "us-east-1"


def alert(i: int, **values) -> dict:
    return {"alert_id": f"a{i}", "rule": "high_snr", "survey": "test", "band": "r", "image_id": "img",
            "snr": 300.0 + i, "mag_ab": 17.5, **values}


@pytest.fixture
def sns_setup(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
        topic = session.client("sns").create_topic(Name="alerts")["TopicArn"]
        session.client("dynamodb").create_table(
            TableName="ledger", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "alert_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "alert_id", "AttributeType": "S"}])
        sqs = session.client("sqs")
        queue = sqs.create_queue(QueueName="q")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        session.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield session, topic, queue


def test_message_attributes_carry_kind_survey_band_snr_mag_and_skip_missing_values():
    attributes = message_attributes(alert(1, mag_ab=math.nan))
    assert attributes["kind"] == {"DataType": "String", "StringValue": "high_snr"}
    assert attributes["snr"] == {"DataType": "Number", "StringValue": "301"}
    assert "mag" not in attributes
    assert message_attributes(alert(1))["mag"] == {"DataType": "Number", "StringValue": "17.5"}


def test_each_alert_is_published_once_in_batches_of_ten(sns_setup):
    session, topic, queue = sns_setup
    publisher = SnsPublisher(topic, "ledger", session=session)

    first = publisher.publish([alert(i) for i in range(23)])
    again = publisher.publish([alert(i) for i in range(25)])

    assert len(first) == 23 and again == ["a23", "a24"]
    sqs = session.client("sqs")
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(json.loads(m["Body"])["Message"]) for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(b["alert_id"] for b in bodies) == sorted(f"a{i}" for i in range(25))


def test_a_failed_publish_releases_its_claims_so_a_retry_sends_them(sns_setup):
    session, topic, _ = sns_setup
    broken = SnsPublisher(topic + "-gone", "ledger", session=session)

    with pytest.raises(TransientError, match="did not accept 3 of 3"):
        broken.publish([alert(i) for i in range(3)])

    assert session.client("dynamodb").scan(TableName="ledger")["Count"] == 0
    assert SnsPublisher(topic, "ledger", session=session).publish([alert(i) for i in range(3)]) == ["a0", "a1", "a2"]


def test_catalog_store_replaces_an_images_rows_and_finds_earlier_images(emulation):
    from datetime import UTC, datetime

    from skysift.aws.catalog import S3GlueCatalog
    from skysift.schema import IMAGES_SCHEMA, sources_schema

    store = S3GlueCatalog(emulation.catalog_bucket, emulation.database)
    row = {name: None for name in IMAGES_SCHEMA.names} | {
        "image_id": "img1", "status": "ok", "survey": "test", "band": "r", "obs_night": "2026-01-01",
        "obs_time": datetime(2026, 1, 1, tzinfo=UTC), "center_ra": 150.0, "center_dec": 2.2, "radius_deg": 0.02}
    schema = sources_schema(3)
    sources = pa.Table.from_pylist([{f.name: None for f in schema} | {"image_id": "img1", "source_id": f"img1:{i}",
                                                                       "ra": 150.0, "dec": 2.2, "flags": 0}
                                    for i in range(5)], schema=schema)
    store.write_image(row, sources)
    store.write_image(row, sources.slice(0, 3))  # the same image again: its rows are replaced

    assert emulation.read_table("sources").num_rows == 3
    assert emulation.read_table("images").num_rows == 1
    later = datetime(2026, 1, 2, tzinfo=UTC)
    assert [r["image_id"] for r in store.earlier_images(150.01, 2.2, 0.01, later)] == ["img1"]
    assert store.earlier_images(151.0, 2.2, 0.01, later) == []
    assert store.earlier_images(150.0, 2.2, 0.01, datetime(2025, 12, 31, tzinfo=UTC)) == []
    assert store.earlier_sources(150.0, 2.2, 0.001, later).num_rows == 3
