"""SurveyIngest on the emulated system: a Distributed Map over a prefix or a manifest."""

from __future__ import annotations

import json
import time

import pytest
from aws_support import PARAMETERS, ROOT, sky_file


@pytest.mark.slow
def test_survey_of_fifty_images_catalogs_the_good_and_quarantines_the_bad(emulation, tmp_path):
    good = []
    for i in range(47):
        path = sky_file(tmp_path / f"f{i:02d}.fits", seed=100 + i, size=128, n_stars=15, night=f"2026-02-{1 + i % 28:02d}",
                        center=(150.0 + 0.1 * i, 2.2))
        good.append(emulation.upload(path, f"survey/2026-02/f{i:02d}.fits"))
    sample = sky_file(tmp_path / "sample.fits", size=128)
    emulation.upload(sample.read_bytes()[:5000], "survey/2026-02/cut-short.fits")
    emulation.upload(b"<html>503 Service Unavailable</html>", "survey/2026-02/error-page.fits")
    emulation.upload(b"", "survey/2026-02/empty.fits")
    t0 = time.perf_counter()
    survey = emulation.start_survey(prefix="survey/2026-02/")
    emulation.wait(timeout_s=600)
    seconds = time.perf_counter() - t0

    execution = emulation.client("stepfunctions").describe_execution(executionArn=survey)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    result = json.loads(execution["output"])
    assert (result["total"], result["succeeded"], result["failed"]) == (50, 47, 3)
    assert result["reasons"] == {"truncated": 1, "not_fits": 1, "empty": 1}
    report = emulation.get_json(result["report_uri"])
    failed = {i["key"].rsplit("/", 1)[1]: i["reason"] for i in report["images"] if i["status"] == "failed"}
    assert failed == {"cut-short.fits": "truncated", "error-page.fits": "not_fits", "empty.fits": "empty"}
    images = emulation.read_table("images").to_pylist()
    assert len(images) == 50  # every image once, good or bad
    assert sorted(r["uri"] for r in images if r["status"] == "ok") == sorted(good)
    sources = emulation.read_table("sources")
    per_image = {r["image_id"]: r["n_sources"] for r in images if r["status"] == "ok"}
    assert sources.num_rows == sum(per_image.values())
    assert set(sources["image_id"].to_pylist()) == set(per_image)
    print(f"SurveyIngest of 50 images on moto: {seconds:.1f} s")


def test_survey_from_a_manifest_ingests_only_the_listed_objects(emulation, tmp_path):
    for i in range(3):
        emulation.upload(sky_file(tmp_path / f"m{i}.fits", seed=200 + i, size=128, n_stars=15), f"survey/m{i}.fits")
    manifest = [{"bucket": emulation.raw_bucket, "key": f"survey/m{i}.fits"} for i in (0, 2)]
    emulation.upload(json.dumps(manifest).encode(), "manifests/two.json")
    emulation.wait()
    before = len(emulation.executions())

    survey = emulation.start_survey(manifest_key="manifests/two.json")
    emulation.wait()

    execution = emulation.client("stepfunctions").describe_execution(executionArn=survey)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    result = json.loads(execution["output"])
    assert (result["total"], result["succeeded"], result["failed"]) == (2, 2, 0)
    assert len(emulation.executions()) == before + 2
    assert emulation.read_table("images").num_rows == 3  # re-ingesting m0 and m2 replaced their rows
    sfn = emulation.client("stepfunctions")
    (map_run,) = sfn.list_map_runs(executionArn=survey)["mapRuns"]
    # The emulated account runs two handlers at once: the Map runs two children per slot, not the
    # template's 40, so no state waits out its TimeoutSeconds behind the others (see emulate.py).
    assert sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])["maxConcurrency"] == 4


def test_the_templates_own_survey_concurrency_runs_when_given(tmp_path):
    from skysift.aws.emulation.emulate import Emulation

    with Emulation(ROOT, parameters={**PARAMETERS, "SurveyMaxConcurrency": 40}) as aws:
        aws.upload(sky_file(tmp_path / "one.fits", size=128, n_stars=15), "survey/one.fits")
        aws.wait()
        survey = aws.start_survey(prefix="survey/")
        aws.wait()
        sfn = aws.client("stepfunctions")
        assert sfn.describe_execution(executionArn=survey)["status"] == "SUCCEEDED"
        (map_run,) = sfn.list_map_runs(executionArn=survey)["mapRuns"]
        assert sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])["maxConcurrency"] == 40
