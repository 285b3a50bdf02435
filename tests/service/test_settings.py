"""Every setting is documented in the service page's table, with its real default."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from service.settings import ENV_PREFIX, Settings
from tests.conftest import REPO


def settings_table() -> dict[str, str]:
    text = (REPO / "docs" / "service.md").read_text()
    section = text[text.index("\n## Settings") :]
    section = section[: section.find("\n## ", 1)]
    rows = re.findall(r"^\| `(MLOPS_[A-Z0-9_]+)` \| ([^|]+) \|", section, flags=re.M)
    return {name: default.strip() for name, default in rows}


def test_docs_list_every_setting_with_its_default() -> None:
    table = settings_table()
    expected = {ENV_PREFIX + name.upper(): field for name, field in Settings.model_fields.items()}
    assert set(table) == set(expected)
    for name, field in expected.items():
        default = field.default
        if default is None or default == "":
            assert table[name] in ("(unset)", "(empty)"), name
        else:
            shown = table[name].strip("`")
            value = str(default).lower() if isinstance(default, bool) else str(default)
            assert shown == value or float(shown) == default, (name, shown, default)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MODEL_ALIAS", "staging")
    monkeypatch.setenv("MLOPS_MAX_UPLOAD_BYTES", "1234")
    settings = Settings()
    assert settings.model_alias == "staging"
    assert settings.max_upload_bytes == 1234


def test_bad_tag_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MODEL_TAG", "../escape")
    with pytest.raises(ValidationError):
        Settings()
