"""Write the keys a local install needs into a git-ignored .env, once.

`make run` and `make test` call this before Django starts, so it must not import settings.
Existing values are kept: regenerating FIELD_ENCRYPTION_KEYS would make stored tokens unreadable.
"""

import os
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet


def ensure_env_file(path: Path) -> list[str]:
    """Add SECRET_KEY and FIELD_ENCRYPTION_KEYS to `path` when missing; return the names added."""
    lines = path.read_text().splitlines() if path.exists() else []
    present = {line.split("=", 1)[0].strip() for line in lines if "=" in line}
    generated = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
    }
    added = [name for name in generated if name not in present]
    if added:
        lines += [f"{name}={generated[name]()}" for name in added]
        # Created private from the start: the file holds the key that decrypts provider tokens.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return added


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    for name in ensure_env_file(target):
        print(f"Generated {name} into {target}")
