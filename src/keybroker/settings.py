"""Where keybroker keeps its files, and the only place ``KEYBROKER_*`` variables are read.

    >>> Settings.from_env({"KEYBROKER_HOME": "/tmp/kb"}).vault_path
    PosixPath('/tmp/kb/vault.db')

Components never see ``os.environ``: the CLI builds a ``Settings`` once and
hands each component the fields it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_VARIABLE = "KEYBROKER_HOME"
PASSPHRASE_VARIABLE = "KEYBROKER_PASSPHRASE"  # noqa: S105 - a variable name, not a value
REDIS_URL_VARIABLE = "KEYBROKER_REDIS_URL"
"""``serve --redis``'s URL when the option is not given (keeps a password out of ``ps``)."""


def default_home() -> Path:
    """The platform's per-user data directory (``~/.local/share/keybroker`` on Linux)."""
    from platformdirs import user_data_path  # the one non-stdlib import, kept lazy

    return user_data_path("keybroker", appauthor=False)


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path

    @property
    def vault_path(self) -> Path:
        return self.home / "vault.db"

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.db"

    @property
    def gateway_record_path(self) -> Path:
        """What the last ``keybroker serve`` listened on (for ``keybroker doctor``)."""
        return self.home / "gateway.json"

    @property
    def paper_path(self) -> Path:
        """The paper-trading ledger (``keybroker paper``, the gateway's paper venue)."""
        return self.home / "paper.db"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], home: Path | None = None) -> Settings:
        """``--home`` wins, then ``KEYBROKER_HOME``, then the platform default."""
        if home is None:
            value = environ.get(HOME_VARIABLE, "").strip()
            home = Path(value).expanduser() if value else default_home()
        return cls(home=home)
