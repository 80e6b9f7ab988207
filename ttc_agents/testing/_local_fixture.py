"""A pytest fixture factory for tests that talk to the embedded local model (:mod:`ttc_agents._llm.local`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ttc_agents._llm.local import (
    DEFAULT_LOCAL_MODEL,
    LocalExtraMissingError,
    LocalServerInfo,
    check_local_model,
    local_server,
)

__all__ = ["local_server_fixture"]


def local_server_fixture(
    model: str = DEFAULT_LOCAL_MODEL,
    *,
    scope: str = "session",
    state_dir: str | os.PathLike[str] | None = None,
    timeout: float = 180,
    private: bool = False,
) -> Any:
    """Make a pytest fixture that yields a :class:`LocalServerInfo` for ``model``.

    The fixture skips the test (with the install command as reason) when the ``local`` extra is
    missing, reuses a server that is already running, and stops the server afterwards only if it
    started it. Use it in a conftest::

        local_model_server = local_server_fixture("smollm2-135m")

    With ``private=True`` the server gets a state directory of its own (under pytest's temporary
    directory), so it is never shared with another process: use it when a test counts the requests
    in the server's log (``info.log_path``). It is stopped at the end of the fixture's scope.
    """
    import pytest  # test-only dependency: imported when a fixture is made

    @pytest.fixture(scope=scope)  # type: ignore[call-overload, untyped-decorator, unused-ignore]
    def _fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServerInfo]:
        try:
            check_local_model(model)
        except LocalExtraMissingError as error:
            pytest.skip(str(error))
        directory = tmp_path_factory.mktemp("ttc-local-server") if private else state_dir
        with local_server(model, state_dir=directory, timeout=timeout, stop=True if private else None) as info:
            yield info

    return _fixture
