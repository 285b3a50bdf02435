from __future__ import annotations

from tests.support.forge_server import forge_server  # noqa: F401 - the fixture
