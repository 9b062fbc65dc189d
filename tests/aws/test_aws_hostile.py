"""An unexpected exception on the AWS path gets the verdict local mode gives: ``internal_error``.

Local mode turns any exception inside one image into a failed row with reason ``internal_error``
and the exception's class (``process_image``). On AWS the Inspect Lambda and the Batch job run
code outside ``process_image``; an exception there must be quarantined the same way, not as an
unknown Lambda error type or ``batch_failed``. (The whole hostile corpus, both paths, is
tests/test_hostile_corpus.py.)
"""

from __future__ import annotations

import json

from aws_support import PARAMETERS, ROOT

from skysift.aws import steps, worker


def _explode(*args, **kwargs):
    raise RuntimeError("a library edge nobody has seen yet")


def _quarantined(emulation) -> tuple[dict, dict]:
    (execution,) = emulation.wait()
    (row,) = emulation.read_table("images").to_pylist()
    return execution, row


def test_an_unexpected_exception_in_inspect_is_quarantined_as_internal_error(emulation, sky, monkeypatch):
    monkeypatch.setattr(steps, "inspect_image", _explode)  # the handlers run in this process
    emulation.upload(sky, "night-2026-01-01/field.fits")

    execution, row = _quarantined(emulation)

    assert (execution["status"], execution["error"]) == ("FAILED", "internal_error")
    assert (row["status"], row["route"], row["error_reason"]) == ("failed", "inspect", "internal_error")
    assert row["error_message"].startswith("RuntimeError: a library edge nobody has seen yet (at ")


def test_an_unexpected_exception_in_the_batch_job_is_quarantined_as_internal_error(sky, monkeypatch):
    from skysift.aws.emulation.emulate import Emulation

    monkeypatch.setattr(worker, "detect_step", _explode)
    with Emulation(ROOT, parameters={**PARAMETERS, "SmallImageMaxPixels": 1000}) as emulation:  # sky: Batch
        emulation.upload(sky, "night-2026-01-01/field.fits")
        execution, row = _quarantined(emulation)
        summary = json.loads(emulation.client("s3").get_object(
            Bucket=emulation.catalog_bucket, Key=f"runs/{row['image_id']}/summary.json")["Body"].read())

    assert (execution["status"], execution["error"]) == ("FAILED", "internal_error")
    assert (row["status"], row["route"], row["error_reason"]) == ("failed", "large", "internal_error")
    assert "RuntimeError: a library edge nobody has seen yet" in row["error_message"]
    assert summary["error"]["exception_type"] == "RuntimeError" and summary["error"]["traceback_digest"]
