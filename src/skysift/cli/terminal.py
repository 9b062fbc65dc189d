"""What every ``skysift`` command shares at the terminal: output, errors, exit codes.

* :func:`console` is the one factory of rich consoles. On a terminal rich adapts to the
  window as usual; anywhere else (a pipe, a file, a CI log, click's ``CliRunner``)
  nothing is wrapped: a message stays one line however long its paths are, and tables
  take their natural width, whatever the terminal of the parent process or ``COLUMNS``.
* :func:`reported_errors` ends a command that fails with one line on stderr,
  ``error (reason): message``, and a documented exit status (:data:`EXIT_USAGE`,
  :data:`EXIT_FAILURE`), never a traceback (``-vv`` logs it).
  :class:`SkysiftGroup` and :class:`SkysiftCommand` apply it.
* Parameter types shared by several commands: :data:`HDU`, :class:`OutputFile`.

Exit status of every command:

* 0: done.
* 1 (:data:`EXIT_FAILURE`): it failed for a reason that running it again may cure or
  that is skysift's fault: a transient error (an unreachable service or scheduler,
  throttling), an operating-system error, an unexpected internal error.
* 2 (:data:`EXIT_USAGE`): it cannot work as asked: a wrong argument or option (click's
  usage message, whose last line is the error), or a typed skysift error that names
  what to fix (a bad file or setting, an output that cannot be written, AWS
  credentials, region or stack missing).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console, ConsoleDimensions
from rich.text import Text

from skysift.errors import InternalError, NotWritable, SkysiftError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "HDU",
    "UNWRAPPED_WIDTH",
    "HDUType",
    "LazyChoice",
    "OutputFile",
    "SkysiftCommand",
    "SkysiftGroup",
    "hold_home_lock",
    "is_terminal",
    "print_error",
    "reported_errors",
    "run_and_exit",
    "settings_for",
]

if TYPE_CHECKING:  # imported when a command needs settings: --help and --version stay light
    from skysift.settings import Settings

log = logging.getLogger(__name__)

EXIT_FAILURE = 1
EXIT_USAGE = 2

#: Width rich is given when its output is not a terminal: messages never wrap and tables
#: take their natural width.
UNWRAPPED_WIDTH = 10_000


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an open terminal (not a pipe, a file or a test runner's buffer)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class _Console(Console):
    """rich's Console, unwrapped whenever the stream it writes to is not a terminal.

    Decided at every write, from the stream itself (rich would look at file
    descriptors 0-2 and ``COLUMNS``): the same command prints the same lines under
    pytest, in CI and in a pipe, whatever terminal started it.
    """

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if is_terminal(self.file) else ConsoleDimensions(UNWRAPPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)


def console(*, stderr: bool = False, file=None) -> Console:
    """A rich console on stdout (or stderr, or ``file``: a stream bound now, not looked up at each write)
    for a command's output.

    ``print`` soft-wraps (a message is never broken into lines by rich; a terminal
    folds long lines itself), and off a terminal nothing is wrapped at all.
    """
    return _Console(stderr=stderr, file=file, soft_wrap=True)


def print_error(reason: str, message: str) -> None:
    """``error (reason): message`` as one line on stderr (red on a terminal)."""
    one_line = " ".join(str(message).split())
    console(stderr=True).print(Text.assemble(("error", "bold red"), f" ({reason}): {one_line}"))


# -- errors at the edge ------------------------------------------------------------------------
_THROTTLING = {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
               "TooManyRequestsException", "SlowDown", "RequestTimeout", "ServiceUnavailable",
               "InternalError", "InternalFailure"}


def _aws_error(exc: BaseException) -> tuple[str, str, int] | None:
    """(reason, message, exit status) of a botocore error, or None for anything else."""
    try:
        from botocore import exceptions as aws
    except ImportError:  # without the s3/aws extras there are no AWS errors to explain
        return None
    if isinstance(exc, aws.NoCredentialsError | aws.PartialCredentialsError | aws.ProfileNotFound):
        return ("aws_credentials", f"{exc}: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or run `aws configure`)", EXIT_USAGE)
    if isinstance(exc, aws.NoRegionError):
        return ("aws_region", "no AWS region: set AWS_DEFAULT_REGION (or region in the AWS config file)",
                EXIT_USAGE)
    if isinstance(exc, aws.EndpointConnectionError | aws.ConnectTimeoutError | aws.ReadTimeoutError
                  | aws.ConnectionClosedError):
        return "aws_unreachable", f"{exc} (no network, or a wrong region or endpoint?)", EXIT_FAILURE
    if isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        transient = error.get("Code") in _THROTTLING or status >= 500
        return "aws_error", str(exc), EXIT_FAILURE if transient else EXIT_USAGE
    if isinstance(exc, aws.BotoCoreError):
        return "aws_error", str(exc), EXIT_USAGE
    return None


def _classify(exc: Exception) -> tuple[str, str, int]:
    """(reason, one-line message, exit status) of an exception that ends a command."""
    if isinstance(exc, SkysiftError):
        return exc.reason, str(exc), EXIT_FAILURE if exc.transient else EXIT_USAGE
    aws = _aws_error(exc)
    if aws is not None:
        return aws
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return "io_error", str(exc), EXIT_USAGE
    if isinstance(exc, OSError):
        return "io_error", str(exc), EXIT_FAILURE
    internal = InternalError.from_exception(exc)
    return internal.reason, f"{internal.message}; -vv shows the traceback", EXIT_FAILURE


@contextmanager
def reported_errors() -> Iterator[None]:
    """Let click's own exceptions (usage errors, exit, abort) through; end on any other
    exception with one line on stderr and the exit status of its kind (see the module
    docstring). The traceback goes to the log at debug level (``-vv``)."""
    try:
        yield
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except Exception as exc:  # the edge: whatever escapes a command ends it in one line
        reason, message, status = _classify(exc)
        log.debug("%s: %s", reason, message, exc_info=True)
        print_error(reason, message)
        raise SystemExit(status) from None


class SkysiftGroup(click.Group):
    """A command group whose commands end in one line and a documented exit status.

    ``lazy`` maps a command name to ``("module:attribute", short help, extra)``: the module
    is imported only when that command runs (or ``--help`` of it is asked), so
    ``skysift --version``, ``--help`` and the light commands never import boto3,
    sunpy or astropy.units. When the module cannot be imported because a third-party
    package of the optional ``extra`` is missing, the command says so in one line; any
    other import error is a bug and propagates.
    """

    def __init__(self, *args, lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def invoke(self, ctx: click.Context):
        with reported_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            self.add_command(self._load(name), name)
        return super().get_command(ctx, name)

    def _load(self, name: str) -> click.Command:
        import importlib

        target, _, extra = self.lazy[name]
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] == "skysift":
                raise
            raise click.UsageError(f"'{name}' needs the '{extra}' extra ({exc.name} is not installed): "
                                   f"pip install 'skysift[{extra}]'") from exc
        return getattr(module, attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, lazy commands described without importing them."""
        from click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            if name in self.lazy and name not in self.commands:
                rows.append((name, make_default_short_help(self.lazy[name][1], limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class SkysiftCommand(click.Command):
    """A command usable on its own (``python -m ...``) that ends like the group's commands."""

    def invoke(self, ctx: click.Context):
        with reported_errors():
            return super().invoke(ctx)


# -- parameter types ---------------------------------------------------------------------------
class HDUType(click.ParamType):
    """An HDU index (0, 1, ...) as an int, or an extension name as given."""

    name = "HDU"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        if not text or text.lstrip("+-").isdigit():
            self.fail(f"{value!r} is not an HDU: give an index 0, 1, ... or an extension name", param, ctx)
        return text


HDU = HDUType()


class LazyChoice(click.Choice):
    """``click.Choice`` of the sequence at ``"module:attribute"``, imported when first needed
    (a command's ``--help`` or use), not when the command line is built."""

    def __init__(self, where: str, case_sensitive: bool = True) -> None:
        self.where = where
        self.case_sensitive = case_sensitive

    @property
    def choices(self):
        import importlib

        module, _, attribute = self.where.partition(":")
        return getattr(importlib.import_module(module), attribute)


class OutputFile(click.Path):
    """A file the command will write: checked when the command line is parsed, before any work.

    Local paths must not be directories and their directory must exist and be writable
    (with ``make_parents``, the nearest existing ancestor must be). Remote URLs are
    refused unless ``remote_ok``; the command checks them with
    :func:`skysift.io.storage.check_writable` before its long computation.
    """

    def __init__(self, *, make_parents: bool = False, remote_ok: bool = False) -> None:
        super().__init__(dir_okay=False, writable=True)
        self.make_parents = make_parents
        self.remote_ok = remote_ok

    def convert(self, value, param, ctx):
        from skysift.io import storage  # fsspec: not for --help and --version

        text = os.fspath(value)
        if storage.is_remote(text):
            if not self.remote_ok:
                self.fail(f"{text!r}: this command writes local files only", param, ctx)
            return text
        path = super().convert(value, param, ctx)
        try:
            storage.check_writable(os.fspath(path), make_parents=self.make_parents)
        except NotWritable as exc:
            self.fail(exc.message, param, ctx)
        return path


def settings_for(ctx: click.Context, **overrides) -> Settings:
    """The settings of this invocation: ``--config`` and ``--home`` of the root command, then ``overrides``."""
    from skysift.settings import Settings

    root = ctx.find_root().params
    return Settings.load(root.get("config"), home=root.get("home"), **overrides)


def hold_home_lock(ctx: click.Context, home: str | os.PathLike[str]) -> None:
    """Hold the home's write lock until the command ends (one line on stderr if it must wait)."""
    from skysift.catalog.homelock import home_lock

    ctx.with_resource(home_lock(home, on_wait=lambda message: click.echo(message, err=True)))


def run_and_exit(command: click.Command) -> NoReturn:
    """Run the command line, then end the process as ``sys.exit`` would (the same status and
    message, exit handlers run, streams flushed) but without the interpreter's teardown of its
    modules: freeing numpy, scipy, astropy, pyarrow and the rest costs 0.15-0.2 s a command.
    For the program's entry point only: a test invoking ``command`` keeps its interpreter."""
    try:
        command()
        status: object = None
    except SystemExit as exc:
        status = exc.code
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:  # sys.exit("message"): the message on stderr, status 1
        print(status, file=sys.stderr)
        code = 1
    # what the interpreter's exit does before its teardown: wait for the other threads (and
    # concurrent.futures' exit hooks), then the exit handlers (logging.shutdown, multiprocessing's, weakref.finalize's)
    shutdown_threads = getattr(threading, "_shutdown", None)
    if shutdown_threads is not None:
        shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code & 0xFF)
