"""Settings: one typed, frozen object built once at the entrypoint and passed down.

Values come, lowest priority first, from the defaults below and ``SKYSIFT_<FIELD>`` variables
(``SKYSIFT_HOME``), a TOML file (``[detection]``, ``[background]``, ``[photometry]``, ``[alerts]``, ``[limits]``,
``[wcs]``, ``[objects]`` tables), and explicit overrides: command-line flags, or the
``SKYSIFT_<SECTION>__<FIELD>`` variables of the few deployment knobs that the AWS entrypoints
map to overrides (:func:`skysift.aws.config.settings_from_env`). pydantic-settings merges
them (:meth:`Settings.settings_customise_sources`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from skysift.errors import ConfigError
from skysift.limits import DEFAULT_LIMITS, HeaderLimits

__all__ = [
    "ALERT_RULES",
    "MEASUREMENT_SETTINGS",
    "AlertSettings",
    "BackgroundSettings",
    "Bytes",
    "DetectionSettings",
    "LimitSettings",
    "ObjectSettings",
    "PhotometrySettings",
    "Settings",
    "WcsSettings",
    "parse_bytes",
]

_SIZE_TEXT = re.compile(r"\s*[0-9]*\.?[0-9]+\s*[A-Za-z]*\s*")


def _whole_size(value: Any) -> Any:
    """ByteSize reads the front of a text and truncates numbers: let only a whole size through."""
    if (isinstance(value, str) and not _SIZE_TEXT.fullmatch(value)) or (
            isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a size like 1GiB, 512MB or 2000000000")
    return value


#: A number of bytes: an integer, or text such as ``"1GiB"``, ``"512MB"``, ``"2g"``
#: (:class:`pydantic.ByteSize`: decimal kB/MB/GB/TB and k/m/g/t, binary KiB/MiB/GiB/TiB).
Bytes = Annotated[ByteSize, BeforeValidator(_whole_size)]
_BYTES = TypeAdapter(Bytes)


def parse_bytes(size: str | int) -> int:
    """``size`` (see :data:`Bytes`) in bytes; :class:`ValueError` when it is not a size."""
    return int(_BYTES.validate_python(size))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BackgroundSettings(_Frozen):
    """Mesh of the spatially varying background (SEP / SExtractor BACK_SIZE, BACK_FILTERSIZE)."""

    box_px: int = Field(64, ge=8, description="background mesh cell size, pixels")
    filter_px: int = Field(3, ge=1, description="median filter over mesh cells")


class DetectionSettings(_Frozen):
    """Source extraction (SEP) parameters."""

    threshold_sigma: float = Field(
        5.0, gt=0, description="detection threshold: SNR of the matched-filtered image (5 = a 5-sigma point source)"
    )
    min_area_px: int = Field(5, ge=1)
    filter_fwhm_px: float | None = Field(
        None, gt=0, description="FWHM of the Gaussian matched filter; None: from the header's seeing, else 3 px"
    )
    deblend_nthresh: int = Field(32, ge=1)
    deblend_cont: float = Field(0.005, ge=0, le=1)
    clean: bool = Field(False, description="SExtractor CLEAN; off: it erases faint sources near bright ones")
    clean_param: float = 1.0
    pixel_stack: int = Field(3_000_000, ge=300_000, description="largest SEP active-pixel buffer (it starts at "
                             "300,000 pixels and grows tenfold while full)")
    sub_object_limit: int = Field(4096, ge=1024, description="SEP deblending sub-object limit")
    max_retries: int = Field(3, ge=0, description="retries at a 1.5x higher threshold on buffer overflow")


class PhotometrySettings(_Frozen):
    """Aperture and Kron photometry."""

    aperture_radii_px: tuple[float, ...] = Field((3.0, 6.0, 10.0), min_length=1, max_length=8)
    kron_factor: float = 2.5
    kron_min_radius: float = Field(3.5, description="minimum Kron aperture, in units of a and b (SExtractor)")
    saturation_level: float | None = Field(None, description="counts; None: SATURATE header keyword")
    gain_e_per_count: float | None = Field(None, description="None: GAIN header keyword")


#: The alert rules: an alert's ``rule`` and its SNS ``kind`` attribute.
ALERT_RULES = ("high_snr", "high_flux", "new_source")


class AlertSettings(_Frozen):
    """Alert rules. A rule with its threshold set to None is off."""

    high_snr: float | None = Field(1000.0, gt=0, description="alert on sources with SNR above this")
    high_flux: float | None = Field(None, gt=0, description="alert on sources with flux (counts) above this")
    new_source_radius_arcsec: float | None = Field(
        2.0, gt=0, description="a detection with no counterpart within this radius in earlier images"
    )
    new_source_min_snr: float = Field(10.0, gt=0, description="only sources this significant may be 'new'")
    cutout_size_px: int = Field(32, ge=8)
    max_per_image: int = Field(100, ge=1, description="at most this many alerts per image (highest SNR first)")


class LimitSettings(_Frozen):
    """When to switch from the in-memory path to tiles, and how big tiles may be."""

    max_pixels: int = Field(2**29, description="largest image the in-memory path accepts (SEP: < 2^31 bytes)")
    max_memory_bytes: Bytes = Field(2 * 2**30, ge=2**28, description="memory budget of the tiled path (all workers)")
    tile_margin_px: int = Field(256, ge=64, description="overlap read around each tile: > the largest source, and enough background cells that tiles see the sky a whole-image run sees")
    max_hdus: int = Field(DEFAULT_LIMITS.max_hdus, ge=1, description="HDUs a file may have before the image wanted")
    max_header_bytes: Bytes = Field(DEFAULT_LIMITS.max_header_bytes, ge=2880, description="longest header accepted")
    max_axis_px: int = Field(DEFAULT_LIMITS.max_axis_px, ge=1, description="longest NAXISn accepted")
    max_decompressed_bytes: Bytes = Field(DEFAULT_LIMITS.max_decompressed_bytes, ge=2880,
                                        description="a gzip file is never inflated past this")
    reject_bad_checksum: bool = Field(False, description="quarantine a file whose CHECKSUM/DATASUM do not match "
                                      "(off: process it and record checksum_status = 'bad')")

    def header_limits(self) -> HeaderLimits:
        """The header checks' limits (:mod:`skysift.io.fitsheader`) from these settings."""
        return HeaderLimits(max_hdus=self.max_hdus, max_header_bytes=self.max_header_bytes,
                            max_axis_px=self.max_axis_px, max_decompressed_bytes=self.max_decompressed_bytes)


class WcsSettings(_Frozen):
    """When an image's celestial WCS is trusted (see :func:`skysift.core.astrometry.validate_celestial_wcs`);
    an untrusted one leaves its sources' sky positions null, with the reason."""

    min_pixel_scale_arcsec: float = Field(1e-5, gt=0, description="finer pixel scales are implausible, arcsec/pixel")
    max_pixel_scale_arcsec: float = Field(3600.0, gt=0, description="coarser pixel scales are implausible, arcsec/pixel")


class ObjectSettings(_Frozen):
    """Association of detections across images into objects (:mod:`skysift.catalog.objects`)."""

    radius_arcsec: float = Field(1.0, gt=0, le=60, description="clean detections closer than this, arcsec, are "
                                 "one object (friends of friends)")


#: The settings an image's rows depend on, hashed into ``images.settings_hash``: the survey
#: name for headers without one, and how the sky, the sources and the WCS are measured.
#: Not in it: ``alerts`` (decided after the rows, against other images), ``objects`` (built
#: from the rows), ``limits`` (where a catalog is computed, in memory or in tiles: the same
#: catalog) and ``home``.
MEASUREMENT_SETTINGS = ("survey", "background", "detection", "photometry", "wcs")

#: The TOML file of the :meth:`Settings.load` call under way (a context variable: loads in
#: other threads or tasks each see their own).
_TOML_FILE: ContextVar[Path | None] = ContextVar("skysift_settings_toml_file", default=None)


class Settings(BaseSettings):
    """Everything the pipeline needs to know, in one frozen object."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="SKYSIFT_")

    home: Path = Field(Path("skysift-data"), description="local tables, alert log and cut-outs ($SKYSIFT_HOME)")
    survey: str | None = Field(None, description="survey name to use when the header gives none")
    background: BackgroundSettings = BackgroundSettings()
    detection: DetectionSettings = DetectionSettings()
    photometry: PhotometrySettings = PhotometrySettings()
    alerts: AlertSettings = AlertSettings()
    limits: LimitSettings = LimitSettings()
    wcs: WcsSettings = WcsSettings()
    objects: ObjectSettings = ObjectSettings()

    def measurement_hash(self) -> str:
        """Short hash of the :data:`MEASUREMENT_SETTINGS`, stored with each image (``images.settings_hash``)
        so that a run resumes only the images measured with the settings it has."""
        data = self.model_dump(mode="json", include=set(MEASUREMENT_SETTINGS))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: overrides, the TOML file of :meth:`load`, ``SKYSIFT_*`` variables
        (``SKYSIFT_HOME``: a default, as the command line's ``--home`` takes it)."""
        toml_file = _TOML_FILE.get()
        toml = (TomlConfigSettingsSource(settings_cls, toml_file=toml_file),) if toml_file is not None else ()
        return (init_settings, *toml, env_settings)

    @classmethod
    def load(cls, toml_path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the TOML file, then ``overrides`` (``section__field=value``,
        ``section={...}`` or ``home=...``; None: not given).

        Raises :class:`ConfigError` with the offending field when a value is invalid.
        """
        data: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, field = key.partition("__")
            if field:
                data.setdefault(section, {})[field] = value
            else:
                data[section] = value
        token = _TOML_FILE.set(None if toml_path is None else Path(toml_path))
        try:
            if toml_path is not None:
                with open(toml_path, "rb"):  # the TOML source skips a file it cannot find: name it here
                    pass
            return cls(**data)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file: {exc}", uri=str(toml_path)) from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from exc
        except SettingsError as exc:  # a SKYSIFT_* variable that does not parse
            raise ConfigError(f"invalid settings: {' '.join(str(exc).split())}") from exc
        finally:
            _TOML_FILE.reset(token)
