"""Alert packets on AWS: in the catalog bucket, named by the SNS message, whose attributes
``sky_cell`` (HEALPix nside 64) and ``object_id`` let filter policies select a region or a watchlist."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
from astropy.io import fits
from aws_support import received_alert_ids, sky_file
from moto import mock_aws

from skysift.alerts.packets import read_packet, sky_cell, sky_cell_ranges
from skysift.aws.publisher import SnsPublisher, message_attributes
from skysift.cli.aws import filter_policy
from skysift.core.astrometry import healpix_index

REGION = "us-east-1"
COSMOS, CENTAURUS = (150.10, 2.20), (201.37, -43.02)


def _alert(i: int, position: tuple[float, float], object_id: str) -> dict:
    cell = sky_cell(int(healpix_index(np.array([position[0]]), np.array([position[1]]))[0]))
    return {"alert_id": f"a{i}", "rule": "high_snr", "survey": "test", "band": "r", "image_id": f"img{i}",
            "snr": 300.0, "mag_ab": 17.0, "ra": position[0], "dec": position[1], "sky_cell": cell,
            "object_id": object_id, "packet_uri": f"s3://catalog/packets/a{i}.avro"}


def test_sky_cell_and_object_id_are_message_attributes():
    attributes = message_attributes(_alert(1, COSMOS, "0123abcd"))
    assert attributes["sky_cell"]["DataType"] == "Number"
    assert int(attributes["sky_cell"]["StringValue"]) == _alert(1, COSMOS, "x")["sky_cell"] < 12 * 64**2
    assert attributes["object_id"] == {"DataType": "String", "StringValue": "0123abcd"}
    assert "sky_cell" not in message_attributes({**_alert(1, COSMOS, "x"), "sky_cell": None})


def test_a_cone_is_the_ranges_of_the_cells_it_touches():
    ranges = sky_cell_ranges(*COSMOS, 1.0)
    cells = {c for first, last in ranges for c in range(first, last + 1)}
    assert _alert(1, COSMOS, "x")["sky_cell"] in cells
    assert _alert(2, (COSMOS[0] + 0.9, COSMOS[1]), "x")["sky_cell"] in cells
    assert _alert(3, CENTAURUS, "x")["sky_cell"] not in cells
    assert len(ranges) < len(cells)  # nested neighbours merge into ranges


@pytest.fixture
def topic_with_queues(monkeypatch):
    """The FIFO alert topic and its ledger, and a FIFO queue per filter policy subscribed to it."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        session = boto3.Session(region_name=REGION, aws_access_key_id="k", aws_secret_access_key="s")
        sns, sqs = session.client("sns"), session.client("sqs")
        topic = sns.create_topic(Name="alerts.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
        session.client("dynamodb").create_table(
            TableName="ledger", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])

        def subscribe(name: str, policy: dict) -> str:
            url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"FilterPolicy": json.dumps(policy)})
            return url

        yield session, topic, subscribe


def test_filter_policies_select_a_region_or_a_watchlist(topic_with_queues):
    session, topic, subscribe = topic_with_queues
    cosmos = subscribe("cosmos", filter_policy(cone=(*COSMOS, 0.5)))
    centaurus = subscribe("centaurus", filter_policy(cone=(*CENTAURUS, 0.5)))
    watchlist = subscribe("watchlist", filter_policy(object_ids=("obj-2", "obj-9")))
    bright_cosmos = subscribe("bright-cosmos", filter_policy(cone=(*COSMOS, 0.5), min_snr=400))
    alerts = [_alert(1, COSMOS, "obj-1"), _alert(2, (COSMOS[0] + 0.01, COSMOS[1]), "obj-2"),
              _alert(3, (120.0, 30.0), "obj-3"), {**_alert(4, COSMOS, "obj-4"), "snr": 500.0}]

    SnsPublisher(topic, "ledger", session=session).publish(alerts)

    assert sorted(received_alert_ids(session, cosmos)) == ["a1", "a2", "a4"]
    assert sorted(received_alert_ids(session, centaurus)) == []
    assert sorted(received_alert_ids(session, watchlist)) == ["a2"]
    assert sorted(received_alert_ids(session, bright_cosmos)) == ["a4"]


def _packet(emulation, uri: str) -> dict:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return read_packet(emulation.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_packets_in_the_catalog_bucket_and_subscribers_of_a_region_or_an_object(emulation, tmp_path):
    everything = emulation.subscribe_queue("everything")
    emulation.upload(sky_file(tmp_path / "a.fits", seed=7), "night-2026-01-01/a.fits")
    assert [e["status"] for e in emulation.wait()] == ["SUCCEEDED"]
    first = [json.loads(m["Message"]) for m in emulation.receive(everything)]
    assert first
    watched = first[0]
    watchlist = emulation.subscribe_queue("watchlist", filter_policy(object_ids=(watched["object_id"],)))
    here = emulation.subscribe_queue("here", filter_policy(cone=(watched["ra"], watched["dec"], 0.05)))
    elsewhere = emulation.subscribe_queue("elsewhere", filter_policy(cone=(*CENTAURUS, 1.0)))

    later = sky_file(tmp_path / "b.fits", seed=7, night="2026-01-02")
    with fits.open(later, mode="update") as hdul:  # a transient appears between the nights, at (150, 50)
        y, x = np.mgrid[-4:5, -4:5]
        hdul[0].data[46:55, 146:155] += (3000 * np.exp(-(x**2 + y**2) / (2 * 1.3**2))).astype(np.float32)
    emulation.upload(later, "night-2026-01-02/b.fits")
    assert [e["status"] for e in emulation.wait()] == ["SUCCEEDED", "SUCCEEDED"]

    second = [json.loads(m["Message"]) for m in emulation.receive(everything)]
    (again,) = [json.loads(m["Message"]) for m in emulation.receive(watchlist)]  # the watched star, seen again
    assert again["object_id"] == watched["object_id"] and again["image_id"] != watched["image_id"]
    assert sorted(m["alert_id"] for m in second) == sorted(json.loads(m["Message"])["alert_id"]
                                                           for m in emulation.receive(here))
    assert emulation.receive(elsewhere) == []

    for message in second:
        assert message["packet_uri"] == f"s3://{emulation.catalog_bucket}/packets/{message['alert_id']}.avro"
        packet = _packet(emulation, message["packet_uri"])
        assert packet["alert_id"] == message["alert_id"] and packet["candidate"]["sky_cell"] == message["sky_cell"]
        assert packet["cutout_reference"]["image_id"] == watched["image_id"]  # the first night's image
        assert packet["crossmatch"] is None  # no matches table on AWS
    packet = _packet(emulation, again["packet_uri"])
    assert [d["image_id"] for d in packet["prv_detections"]] == [watched["image_id"]]
    assert packet["object"]["object_id"] == watched["object_id"] and packet["object"]["n_det"] == 2
    (transient,) = [m for m in second if m["rule"] == "new_source"]
    packet = _packet(emulation, transient["packet_uri"])
    assert packet["prv_detections"] == [] and [n["image_id"] for n in packet["prv_nondetections"]] == [watched["image_id"]]
