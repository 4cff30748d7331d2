import stat

from chatsite.envfile import ensure_env_file


def test_generates_both_keys_once_into_a_private_file(tmp_path):
    path = tmp_path / ".env"
    assert ensure_env_file(path) == ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"]
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in first.splitlines())
    assert len(values["SECRET_KEY"]) >= 50
    assert len(values["FIELD_ENCRYPTION_KEYS"]) == 44  # one url-safe base64 Fernet key

    assert ensure_env_file(path) == []
    assert path.read_text() == first


def test_keeps_existing_values_and_adds_only_the_missing_key(tmp_path):
    path = tmp_path / ".env"
    path.write_text("DEBUG=1\nSECRET_KEY=mine\n")
    assert ensure_env_file(path) == ["FIELD_ENCRYPTION_KEYS"]
    lines = path.read_text().splitlines()
    assert lines[:2] == ["DEBUG=1", "SECRET_KEY=mine"]
    assert lines[2].startswith("FIELD_ENCRYPTION_KEYS=")
