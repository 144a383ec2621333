"""Re-create the initial migration from the models (only until the first release).

Usage: python -m outreach.migrations.regenerate
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from alembic import command

from outreach.migrate import MIGRATIONS, alembic_config

INITIAL = "0001"


def main() -> None:
    for old in (MIGRATIONS / "versions").glob(f"{INITIAL}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        config = alembic_config(f"sqlite:///{Path(tmp) / 'empty.sqlite'}")
        command.revision(config, message="initial", autogenerate=True, rev_id=INITIAL)


if __name__ == "__main__":
    main()
