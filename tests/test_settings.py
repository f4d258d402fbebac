"""settings: the small-data switch and the notice every chapter shows at its top."""
import pytest

import lenet_core as lc


@pytest.mark.parametrize("value, quick", [("1", True), ("yes", True), ("0", False), ("", False), ("false", False)])
def test_quick_mode_reads_the_environment(monkeypatch, value, quick):
    monkeypatch.setenv("LENET_QUICK", value)
    assert lc.quick_mode() is quick


def test_the_notice_is_visible_in_quick_mode_only(monkeypatch):
    monkeypatch.setenv("LENET_QUICK", "1")
    html = lc.quick_mode_notice()._repr_html_()
    assert "LENET_QUICK=1" in html and "admonition warning" in html
    monkeypatch.setenv("LENET_QUICK", "0")
    assert lc.quick_mode_notice() is None
