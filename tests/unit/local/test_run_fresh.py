"""`errands run --fresh` empties only the embedded stack's data, never servers of one's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from errands.cli import build_parser
from errands.launcher import run


def test_fresh_is_an_option_of_run() -> None:
    assert build_parser().parse_args(["run", "--fresh"]).fresh is True
    assert build_parser().parse_args(["run"]).fresh is False


def test_fresh_is_refused_when_the_stack_is_ones_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/errands")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert run(tmp_path, fresh=True) == 2
    assert "--fresh" in capsys.readouterr().err
    assert not (tmp_path / ".errands").exists()
