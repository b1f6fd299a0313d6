"""One error hierarchy for netship; each class carries the process exit code.

Errors are raised anywhere and caught in exactly one place (``netship.tasks.run_task``),
which prints the one-line message and exits with the code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NetshipError(Exception):
    """A failure the user can act on. The message is one line naming what is at fault."""

    exit_code = 1


class UsageError(NetshipError):
    """Bad command-line argument or configuration: exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A settings file, catalog or lock file is malformed or names something unknown."""


class FetchError(NetshipError):
    """A download failed after all attempts and mirrors."""


class ChecksumMismatch(FetchError):
    def __init__(self, what: str, expected: str, actual: str, source: str = ""):
        self.what, self.expected, self.actual, self.source = what, expected, actual, source
        where = f" from {source}" if source else ""
        super().__init__(
            f"checksum mismatch for {what}{where}: expected sha256 {expected}, got {actual}"
        )


class UnsafeArchive(NetshipError):
    """An archive member would escape its target or is not a regular file/dir/link."""


class WrongArchitecture(NetshipError):
    """A binary's ELF header says another CPU than the asset claims."""


class CommandError(NetshipError):
    """An external command failed. Keeps argv, exit code and the tail of its output."""

    def __init__(self, argv: list[str], returncode: int, stdout: str = "", stderr: str = ""):
        self.argv, self.returncode, self.stdout, self.stderr = argv, returncode, stdout, stderr
        tail = (stderr or stdout).strip().splitlines()[-1:] or [""]
        super().__init__(f"command failed (exit {returncode}): {' '.join(argv)}: {tail[0]}")


class MissingTool(NetshipError):
    """A required external program (docker, buildx, skopeo, ...) is not installed."""


class BuildError(NetshipError):
    pass


class RegistryError(NetshipError):
    pass


class BundleError(NetshipError):
    pass


class VerificationError(NetshipError):
    """A bundle or cache entry does not match its recorded digests."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, word: str, choices: Iterable[str], where: str = "") -> ConfigError:
    """Build the standard 'unknown X' error with a suggestion and the valid choices."""
    choices = sorted(choices)
    loc = f"{where}: " if where else ""
    return ConfigError(
        f"{loc}unknown {kind} {word!r}{did_you_mean(word, choices)}; valid: {', '.join(choices)}"
    )
