"""The command line says what is wrong in one line and exits non-zero; no traceback reaches the admin."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from tests.conftest import Stack


def test_an_operator_token_for_an_unknown_organisation_is_a_one_line_error(stack: Stack) -> None:
    unknown = uuid.uuid4()
    done = subprocess.run(
        [sys.executable, "-m", "errands", "admin", "create-operator-token", str(unknown)],
        env={
            **os.environ,
            "DATABASE_URL": stack.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"errands admin: No organisation has the id {unknown}."]
