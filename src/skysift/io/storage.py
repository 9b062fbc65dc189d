"""Where image bytes come from: local paths and ``s3://`` (or any fsspec) URLs.

The science core reads through these few functions so that it never needs to know
about boto3. Remote objects are read through fsspec (s3fs for S3), which uses
ranged reads when only the first blocks of a file are needed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from skysift.errors import NotWritable, SourceNotFound

if TYPE_CHECKING:  # fsspec (0.04-0.05 s to import) only for remote objects and directory listings
    import fsspec

__all__ = [
    "FITS_SUFFIXES",
    "check_writable",
    "fingerprint",
    "is_remote",
    "is_within",
    "list_fits",
    "normalize_uri",
    "object_size",
    "open_binary",
    "prefetch",
    "read_bytes",
]

#: Extensions of files that are treated as FITS images when scanning directories.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.fz", ".fz")


def is_remote(uri: str) -> bool:
    """True for URLs with a scheme other than ``file``, e.g. ``s3://bucket/key``."""
    return "://" in uri and not uri.startswith("file://")


def normalize_uri(uri: str | os.PathLike[str]) -> str:
    """An absolute local path, or the remote URL unchanged."""
    text = os.fspath(uri)
    return text if is_remote(text) else str(Path(_local_path(text)).resolve())


def _filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def _local_path(uri: str) -> str:
    """The path of a local ``uri`` (a path, or a ``file://`` URL; ``~`` expanded, as fsspec does)."""
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return os.path.expanduser(path) if path.startswith("~") else path


def read_bytes(uri: str, length: int = -1) -> bytes:
    """The object's first ``length`` bytes (all by default).

    Raises :class:`SourceNotFound` when it does not exist.
    """
    try:
        if not is_remote(uri):
            with open(_local_path(uri), "rb") as handle:
                return handle.read(length)
        import fsspec

        with fsspec.open(uri, "rb") as handle:
            return handle.read(length)
    except FileNotFoundError as exc:
        raise SourceNotFound("no such file or object", uri=uri) from exc
    except IsADirectoryError as exc:
        raise SourceNotFound("is a directory, not a file", uri=uri) from exc


@contextmanager
def open_binary(uri: str, block_size: int = 2**16) -> Iterator[IO[bytes]]:
    """A seekable binary handle; remote handles fetch ``block_size`` ranges on demand."""
    try:
        if is_remote(uri):
            fs, path = _filesystem(uri)
            handle = fs.open(path, "rb", block_size=block_size)
        else:
            handle = open(_local_path(uri), "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError as exc:
        raise SourceNotFound("no such file or object", uri=uri) from exc
    with handle:
        yield handle


def object_size(uri: str) -> int:
    """Size of the stored object in bytes."""
    try:
        if not is_remote(uri):
            return os.path.getsize(_local_path(uri))
        fs, path = _filesystem(uri)
        return int(fs.size(path))
    except FileNotFoundError as exc:
        raise SourceNotFound("no such file or object", uri=uri) from exc


def check_writable(uri: str, *, make_parents: bool = False) -> None:
    """Fail now, not after a long computation, when ``uri`` cannot be written.

    A local path must not be a directory and its directory must exist and be writable
    (with ``make_parents``: the nearest existing ancestor, where the missing directories
    will be made). For a remote URL the bucket must exist and accept the credentials (a
    HEAD request; a role that may write but not read the bucket passes, and the write
    itself will tell). Raises :class:`NotWritable`; the remote store's own credential and
    region errors propagate as they are.
    """
    if is_remote(uri):
        fs, path = _filesystem(uri)
        bucket = path.split("/", 1)[0]
        try:
            fs.info(bucket)
        except FileNotFoundError as exc:
            raise NotWritable(f"bucket {bucket!r} does not exist", uri=uri) from exc
        except PermissionError:
            pass
        return
    target = Path(uri).expanduser()
    if target.is_dir():
        raise NotWritable("is a directory: give a file name", uri=uri)
    folder = target.parent
    if make_parents:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        problem = f"{str(folder)!r} is not a directory" if folder.exists() else f"directory {str(folder)!r} does not exist"
        raise NotWritable(problem, uri=uri)
    if not os.access(folder, os.W_OK):
        raise NotWritable(f"directory {str(folder)!r} is not writable", uri=uri)


def prefetch(uri: str) -> None:
    """Ask the OS to start reading a local file into the page cache, and return at once.

    Called for the next image while the current one is measured, so that a bulk run
    on a cold disk does not wait for each file's read. Remote objects are left alone.
    """
    if is_remote(uri) or not hasattr(os, "posix_fadvise"):
        return
    try:
        fd = os.open(uri, os.O_RDONLY)
    except OSError:
        return  # missing or unreadable: the image's own read reports it
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    finally:
        os.close(fd)


def local_version(uri: str) -> tuple[str, int, int, int] | None:
    """A local file's version: its normalized path, inode, size and modification time (a
    rewritten or replaced file has another); None for a remote object or a missing file.
    What in-process caches of things made from a file are keyed on."""
    if is_remote(uri):
        return None
    path = normalize_uri(uri)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return path, stat.st_ino, stat.st_size, stat.st_mtime_ns


def fingerprint(uri: str, data: bytes | None = None) -> str:
    """A content fingerprint: the S3 ETag for remote objects, else SHA-256 of the bytes.

    The ETag changes with every new object version, which is what the image_id
    contract needs, and costs no download.
    """
    if is_remote(uri) and data is None:
        fs, path = _filesystem(uri)
        info = fs.info(path)
        etag = info.get("ETag") or info.get("etag")
        if etag:
            return "etag:" + str(etag).strip('"')
    if data is not None:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    with open_binary(uri, block_size=2**22) as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def is_within(uri: str, folder: str | os.PathLike[str]) -> bool:
    """True when ``uri`` is ``folder`` or lies below it (local paths resolved, remote prefixes compared)."""
    return _below(normalize_uri(uri), normalize_uri(folder))


def _below(uri: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return uri == folder or uri.startswith(folder + "/")


def list_fits(root: str, recursive: bool = True, *, exclude: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """FITS files below a directory or prefix, sorted; a single file is returned as is.

    Files within any of the ``exclude`` folders are left out: a run passes its own home
    (tables, alert cut-outs, reports) so that it never ingests its own outputs, even
    when the home lies inside the directory it scans.
    """
    excluded = [normalize_uri(folder) for folder in exclude]
    if not is_remote(root) and Path(root).is_file():
        found_uris = [normalize_uri(root)]
    else:
        fs, path = _filesystem(root)
        if not fs.exists(path):
            raise SourceNotFound("no such directory or prefix", uri=root)
        found = fs.find(path) if recursive else fs.ls(path, detail=False)
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        found_uris = [normalize_uri(item if protocol in ("file", "local") else f"{protocol}://{item}")
                      for item in found if item.lower().endswith(FITS_SUFFIXES)]
    return sorted(u for u in found_uris if not any(_below(u, folder) for folder in excluded))
