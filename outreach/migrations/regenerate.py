"""Re-create the initial migration from the models (only until the first release).

Usage: python -m outreach.migrations.regenerate

Hand-written later revisions (0002 onwards) are set aside while Alembic compares the models
with an empty database, then put back.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from alembic import command

from outreach.migrate import MIGRATIONS, alembic_config

INITIAL = "0001"


def main() -> None:
    versions = MIGRATIONS / "versions"
    for old in versions.glob(f"{INITIAL}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        aside = Path(tmp) / "aside"
        aside.mkdir()
        later = [p for p in versions.glob("*.py") if p.name != "__init__.py"]
        for path in later:
            shutil.move(path, aside / path.name)
        try:
            config = alembic_config(f"sqlite:///{Path(tmp) / 'empty.sqlite'}")
            command.revision(config, message="initial", autogenerate=True, rev_id=INITIAL)
        finally:
            for path in later:
                shutil.move(aside / path.name, path)


if __name__ == "__main__":
    main()
