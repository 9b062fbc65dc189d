"""Settings come from defaults, a TOML file and flags; bad values are clear errors."""

from __future__ import annotations

import pytest

from skysift.errors import ConfigError
from skysift.settings import Settings


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "skysift.toml"
    path.write_text("[detection]\nthreshold_sigma = 4.0\n[alerts]\nhigh_snr = 300\n")
    settings = Settings.load(path, detection__min_area_px=8, alerts__high_snr=None)
    assert settings.detection.threshold_sigma == 4.0 and settings.detection.min_area_px == 8
    assert settings.alerts.high_snr == 300  # None means "not given on the command line"


def test_invalid_value_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"detection\.threshold_sigma"):
        Settings.load(detection__threshold_sigma=-1)


def test_unknown_key_and_broken_file_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="threshhold"):
        Settings.load(detection__threshhold=3)
    broken = tmp_path / "broken.toml"
    broken.write_text("[detection\n")
    with pytest.raises(ConfigError, match="cannot read settings file"):
        Settings.load(broken)
