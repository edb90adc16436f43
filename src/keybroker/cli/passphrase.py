"""Where the vault passphrase comes from: a file, the environment, or a hidden prompt.

    >>> current_passphrase(Path("~/.config/keybroker/pass"), os.environ)
    Secret('***')

The order is fixed: ``--passphrase-file`` first, then ``KEYBROKER_PASSPHRASE``,
then a prompt that does not echo. The file is refused when group or others
can read it (a readable passphrase file is a readable vault). The variable
exists for CI and headless hosts, and it is weaker: any process of the same
user can read another's environment through ``/proc/<pid>/environ``, and
shells and supervisors like to log environments.
"""

from __future__ import annotations

import getpass
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path

import typer

from keybroker.errors import InsecurePermissions, InvalidInput, UsageError, WeakPassphrase
from keybroker.secret import Secret
from keybroker.settings import PASSPHRASE_VARIABLE

MIN_LENGTH = 12
_PROMPT_ATTEMPTS = 3

FILE_HELP = (
    "Read the vault passphrase from this file (mode 600; one line). "
    f"Otherwise ${PASSPHRASE_VARIABLE} is used, which is weaker (other processes and "
    "logs can see environments), and otherwise you are asked."
)


def read_passphrase_file(path: Path) -> Secret:
    """The first line of ``path``; refused when group or others can read the file.

    Raises InsecurePermissions (with the chmod that fixes it) or InvalidInput
    when the file is missing or empty.
    """
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read passphrase file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecurePermissions(
            f"passphrase file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(mode):o}); fix it with: chmod 600 {path}"
        )
    # Editors add a final newline; anything else in the line is the passphrase.
    line = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    if not line:
        raise InvalidInput(f"passphrase file {path} is empty")
    return Secret(line)


def current_passphrase(file: Path | None, environ: Mapping[str, str]) -> Secret:
    """The passphrase that opens the vault now (file, then environment, then prompt)."""
    if file is not None:
        return read_passphrase_file(file)
    value = environ.get(PASSPHRASE_VARIABLE, "")
    if value:
        return Secret(value)
    return Secret(prompt_hidden("Vault passphrase", confirm=False))


def new_passphrase(
    file: Path | None,
    environ: Mapping[str, str],
    *,
    use_environment: bool = True,
    file_option: str = "--passphrase-file",
) -> Secret:
    """A passphrase to set (at init or passwd), at least MIN_LENGTH characters.

    A prompt asks twice and asks again when the passphrase is too short; a
    file or the environment is taken as it is, and raises WeakPassphrase.
    """
    if file is not None:
        return _long_enough(read_passphrase_file(file))
    value = environ.get(PASSPHRASE_VARIABLE, "") if use_environment else ""
    if value:
        return _long_enough(Secret(value))
    sources = f"{file_option} or {PASSPHRASE_VARIABLE}" if use_environment else file_option
    for _ in range(_PROMPT_ATTEMPTS):
        candidate = Secret(
            prompt_hidden(
                f"New vault passphrase (at least {MIN_LENGTH} characters)",
                True,
                without_terminal=(
                    f"nothing was entered; without a terminal, give the new passphrase "
                    f"with {sources}"
                ),
            )
        )
        if _length(candidate) >= MIN_LENGTH:
            return candidate
        candidate.wipe()
        typer.echo(f"Too short: use at least {MIN_LENGTH} characters.", err=True)
    raise WeakPassphrase(f"the passphrase must have at least {MIN_LENGTH} characters")


def _long_enough(passphrase: Secret) -> Secret:
    if _length(passphrase) < MIN_LENGTH:
        passphrase.wipe()
        raise WeakPassphrase(f"the passphrase must have at least {MIN_LENGTH} characters")
    return passphrase


def _length(passphrase: Secret) -> int:
    # Characters, not bytes; a file in another encoding still gets a fair count.
    return len(passphrase.reveal().decode("utf-8", "replace"))


NO_TERMINAL = (
    "nothing was entered; without a terminal, use --passphrase-file or "
    "KEYBROKER_PASSPHRASE for the vault, --from-env or --stdin for keys"
)


def prompt_hidden(text: str, confirm: bool, *, without_terminal: str = NO_TERMINAL) -> str:
    """Ask without echo; ``without_terminal`` is the error when nothing can be read,
    naming the option that gives this value another way."""
    # getpass reads from /dev/tty when there is one, so a piped stdin (keys add
    # --stdin) still leaves the prompt on the terminal. Without any terminal it
    # falls back to stdin and warns that input "may be echoed"; nothing echoes
    # a pipe, so the warning would only be noise on stderr.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            value: str = typer.prompt(
                text, hide_input=True, confirmation_prompt=confirm, err=True, show_default=False
            )
        except typer.Abort:
            # End of input (or Ctrl-C): in CI this is "no source was configured".
            raise UsageError(without_terminal) from None
    return value
