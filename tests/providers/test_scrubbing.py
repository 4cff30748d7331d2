import pytest

from providers.scrubbing import (
    MASK,
    MAX_ERROR_TEXT,
    MIN_SECRET_RUN,
    error_text_clean,
    exception_mentions_secret,
    secret_scrub,
)

SECRET = "sk-live-Q7x9Zr2mT4pLw8Nd"


def runs_of(secret: str, length: int) -> list[str]:
    return [secret[start : start + length] for start in range(len(secret) - length + 1)]


@pytest.mark.parametrize(
    "leak",
    [SECRET, SECRET[:12], SECRET[-9:], SECRET[5:13], SECRET[:MIN_SECRET_RUN]],
    ids=["whole", "prefix", "suffix", "middle", "shortest-run"],
)
def test_any_run_of_eight_token_characters_is_masked(leak):
    text = f"upstream said: Authorization: Bearer {leak} is not valid"
    clean = secret_scrub(text=text, secret=SECRET)
    assert clean == f"upstream said: Authorization: Bearer {MASK} is not valid"


def test_shorter_runs_and_unrelated_text_stay():
    text = f"key {SECRET[: MIN_SECRET_RUN - 1]} rejected; sk-live is the prefix of every key"
    assert secret_scrub(text=text, secret=SECRET) == text


def test_short_secrets_are_masked_only_whole():
    assert secret_scrub(text="token abc123 and abc1", secret="abc123") == f"token {MASK} and abc1"


def test_cutting_happens_after_scrubbing():
    # The token straddles the display cut: cutting first would leave its first characters.
    text = "x" * (MAX_ERROR_TEXT - 12) + f" Bearer {SECRET} more"
    clean = error_text_clean(text=text, secret=SECRET)
    assert len(clean) <= MAX_ERROR_TEXT
    assert not [run for run in runs_of(SECRET, MIN_SECRET_RUN) if run in clean]
    assert clean.startswith("x" * (MAX_ERROR_TEXT - 12) + f" Bearer {MASK}")


def test_a_cause_holding_part_of_the_token_is_found():
    try:
        try:
            raise ValueError(f"header was Bearer {SECRET[:10]}")
        except ValueError as inner:
            raise RuntimeError("request failed") from inner
    except RuntimeError as outer:
        assert exception_mentions_secret(exc=outer, secret=SECRET)
        assert not exception_mentions_secret(exc=outer, secret="sk-other-0000000000")
