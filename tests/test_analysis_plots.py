"""`skysift plot --overview` and `--diagnostics`: PNG files with the expected panels."""

from __future__ import annotations

import matplotlib.image as mpimg
import pytest
from click.testing import CliRunner

from skysift.cli.main import cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    runner = CliRunner()
    assert runner.invoke(cli, ["sample", str(root / "sky"), "--size", "256"]).exit_code == 0
    result = runner.invoke(cli, ["--home", str(root / "home"), "run", str(root / "sky"), "-j", "1"])
    assert result.exit_code == 0, result.output
    return root


def _size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG
    height, width = mpimg.imread(path).shape[:2]
    return width, height


def test_overview_draws_the_catalog(processed):
    out = processed / "overview.png"
    result = CliRunner().invoke(cli, ["--home", str(processed / "home"), "plot", "--overview", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "8 images" in result.output
    width, height = _size(out)
    assert width > 1000 and height > 900  # the 2 x 2 panel figure


def test_overview_of_an_empty_home_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "plot", "--overview"])
    assert result.exit_code == 2
    assert "skysift run" in result.output


def test_diagnostics_show_image_background_and_rms(processed):
    out = processed / "diag.png"
    image = processed / "sky" / "field_001.fits"
    result = CliRunner().invoke(cli, ["--home", str(processed / "home"), "plot", "--diagnostics", str(image),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    width, height = _size(out)
    assert width > 2 * height  # three panels side by side


def test_plot_needs_an_image_or_overview(processed):
    result = CliRunner().invoke(cli, ["--home", str(processed / "home"), "plot"])
    assert result.exit_code == 2
    assert "--overview" in result.output
