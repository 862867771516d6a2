"""The LISTEN connection's fan-out: one callback's error does not silence the others."""

from __future__ import annotations

from shared.listen import PgListener


def test_a_failing_callback_leaves_the_others_their_notification() -> None:
    listener = PgListener("postgresql://unused")  # never started: notifications fed by hand
    heard: list[str] = []

    def broken(payload: str) -> None:
        raise ValueError(payload)

    listener.subscribe("channel", broken)
    listener.subscribe("channel", heard.append)
    listener._dispatch("channel", "x")
    listener._dispatch("channel", "")
    assert heard == ["x", ""]
