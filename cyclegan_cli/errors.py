"""Domain errors. They carry the exit code; the CLI edge turns them into a one-line ``Error: ...``.

Exit codes: 0 all done, 1 a runtime failure or some inputs failed, 2 a usage error (bad option, no such path, a direction the model
lacks), 130 interrupted after saving what was done. `cyc --help` states them for users.
"""


def nearest_hint(name: str, known, list_command: str) -> str:
    """The end of an "unknown name" message: the nearest known names, else the command that lists them all."""
    import difflib

    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f"; nearest: {', '.join(near)}" if near else f"; '{list_command}' shows all {len(known)}"


def first_line(error: BaseException, limit: int | None = None, *, named: bool = False, message=None) -> str:
    """The first line of an exception's message, cut to ``limit`` characters (a cut line ends in "...").

    An empty message gives the type's name. ``named``: "KeyError: ..." before the line, except for a domain error,
    whose message is meant for users and stands alone. ``message``: what to read instead of ``str(error)`` where it
    is set (an OSError's ``strerror``, without the errno and the path).
    """
    lines = str(message or error).strip().splitlines()
    if not lines:
        line = type(error).__name__
    elif named and not isinstance(error, CycError):
        line = f"{type(error).__name__}: {lines[0]}"
    else:
        line = lines[0]
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


class CycError(Exception):
    """A failure the user can act on: the message names the file and the fix."""

    exit_code = 1


class UsageError(CycError):
    """The command line asks for something that cannot be: no such path, a direction the model lacks."""

    exit_code = 2


class WeightsError(CycError):
    """A weights file is not a generator, is truncated, or holds something other than what was asked."""

    exit_code = 2


class EngineUnavailable(CycError):
    """An optional backend is not installed, or the hardware it needs is absent."""

    exit_code = 1


class PluginError(CycError):
    """An installed plugin fails to import (a broken or mismatched third-party package)."""

    exit_code = 1


class DataError(CycError):
    """A dataset or input cannot be used as it is."""

    exit_code = 2


class InputError(CycError):
    """One input cannot be read or written (corrupt, empty, unsupported): reported, skipped, the rest go on."""

    exit_code = 1
