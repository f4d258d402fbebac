"""Tests for lenet_core.widgets: pre-rendered states switched by a jslink."""
import base64

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
from ipywidgets.widgets.widget_link import Link  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lenet_core.widgets import (  # noqa: E402
    MAX_STATES,
    PrecomputedExplorer,
    precomputed_explorer,
    precomputed_explorer_2d,
    precomputed_explorer_nd,
    render_outputs,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _draw_line(k):
    plt.plot([0, 1, 2], [0, k, 2 * k])
    plt.title(f"slope {k}")


def _pngs(output_widget):
    return [o["data"]["image/png"] for o in output_widget.outputs if "image/png" in o.get("data", {})]


def _link_pairs(explorer):
    return [((l.source[0], l.source[1]), (l.target[0], l.target[1])) for l in explorer.links]


def test_one_state_per_value_with_a_figure_each():
    w = precomputed_explorer([1, 2, 3, 4], _draw_line, description="slope")
    assert isinstance(w, PrecomputedExplorer)
    assert len(w.states) == 4
    assert len(w.stack.children) == 4
    pngs = [_pngs(w.states[(i,)]) for i in range(4)]
    assert all(len(p) == 1 for p in pngs)
    assert all(base64.b64decode(p[0]).startswith(PNG_MAGIC) for p in pngs)
    # different values give different pictures
    assert len({p[0] for p in pngs}) == 4


def test_control_index_is_jslinked_to_the_stack():
    w = precomputed_explorer([1, 2, 3], _draw_line, description="slope")
    (ctrl,) = w.controls
    assert isinstance(ctrl, widgets.SelectionSlider)
    assert all(isinstance(l, Link) for l in w.links)
    assert _link_pairs(w) == [((ctrl, "index"), (w.stack, "selected_index"))]
    # the widget tree is control above stack
    assert list(w.children) == [ctrl, w.stack]


def test_labels_default_and_custom():
    w = precomputed_explorer([0.5, 1.0, 2], _draw_line)
    assert w.labels == [["0.5", "1", "2"]]
    assert list(w.controls[0].options) == ["0.5", "1", "2"]
    w = precomputed_explorer([1, 2], _draw_line, labels=["gentle", "steep"], control="dropdown")
    assert isinstance(w.controls[0], widgets.Dropdown)
    assert list(w.controls[0].options) == ["gentle", "steep"]


def test_buttons_control_and_initial_state():
    w = precomputed_explorer([1, 2, 3], _draw_line, control="buttons", initial=2)
    assert isinstance(w.controls[0], widgets.ToggleButtons)
    assert w.controls[0].index == 2
    assert w.stack.selected_index == 2
    assert w.current_output() is w.states[(2,)]


def test_printed_text_and_html_are_captured_without_blank_figures():
    def show(v):
        print("value is", v)
        return f"<b>{v}</b>"

    w = precomputed_explorer(["a", "b"], show)
    outs = w.states[(1,)].outputs
    assert outs[0] == {"output_type": "stream", "name": "stdout", "text": "value is b\n"}
    assert outs[1]["data"]["text/html"] == "<b>b</b>"
    assert not _pngs(w.states[(1,)])  # nothing was drawn, so no empty picture


def test_own_figures_are_captured_and_closed():
    before = set(plt.get_fignums())

    def draw(n):
        fig, axes = plt.subplots(1, n, figsize=(2 * n, 2))
        return fig

    w = precomputed_explorer([1, 2], draw)
    assert all(len(_pngs(w.states[(i,)])) == 1 for i in range(2))
    assert set(plt.get_fignums()) == before


def test_render_outputs_dpi_changes_picture_size():
    small = render_outputs(_draw_line, 1, dpi=40)[0]["data"]["image/png"]
    large = render_outputs(_draw_line, 1, dpi=120)[0]["data"]["image/png"]
    assert len(base64.b64decode(small)) < len(base64.b64decode(large))


def test_2d_explorer_nests_stacks_and_links_second_control_to_each_row():
    calls = []

    def draw(a, b):
        calls.append((a, b))
        plt.plot([0, a], [0, b])

    w = precomputed_explorer_2d([1, 2, 3], [10, 20], draw, descriptions=("a", "b"))
    assert len(calls) == 6 and sorted(w.states) == [(i, j) for i in range(3) for j in range(2)]
    a, b = w.controls
    assert len(w.stack.children) == 3
    inner = list(w.stack.children)
    assert all(isinstance(s, widgets.Stack) and len(s.children) == 2 for s in inner)
    assert inner[2].children[1] is w.states[(2, 1)]
    pairs = _link_pairs(w)
    assert ((a, "index"), (w.stack, "selected_index")) in pairs
    for s in inner:
        assert ((b, "index"), (s, "selected_index")) in pairs
    assert len(pairs) == 4
    assert w.labels == [["1", "2", "3"], ["10", "20"]]


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="max_states"):
        precomputed_explorer(range(MAX_STATES + 1), _draw_line)
    with pytest.raises(ValueError, match="max_states"):
        precomputed_explorer_2d(range(6), range(6), lambda a, b: None)
    with pytest.raises(ValueError, match="one label per value"):
        precomputed_explorer([1, 2], _draw_line, labels=["x"])
    with pytest.raises(ValueError, match="distinct"):
        precomputed_explorer([1, 2], _draw_line, labels=["x", "x"])
    with pytest.raises(ValueError, match="control must be one of"):
        precomputed_explorer([1, 2], _draw_line, control="knob")
    with pytest.raises(ValueError, match="at least one"):
        precomputed_explorer([], _draw_line)
    # raising the limit on purpose is allowed
    assert len(precomputed_explorer(range(3), print, max_states=3).states) == 3


# --- precomputed_explorer_nd -------------------------------------------------------------


def _stacks_at_depth(stack, depth):
    """Every Stack ``depth`` levels below ``stack`` (0: the stack itself)."""
    if depth == 0:
        return [stack]
    return [s for child in stack.children for s in _stacks_at_depth(child, depth - 1)]


def test_nd_explorer_renders_every_combination_once_and_nests_one_stack_level_per_control():
    calls = []

    def show(a, b, c):
        calls.append((a, b, c))
        return f"<p>{a}-{b}-{c}</p>"

    w = precomputed_explorer_nd([["x", "y"], [1, 2, 3], [0.5, 1.5]], show, descriptions=("a", "b", "c"),
                                controls=("buttons", "dropdown", "slider"), initial=(1, 2, 0))
    assert sorted(calls) == sorted((a, b, c) for a in "xy" for b in (1, 2, 3) for c in (0.5, 1.5))
    assert sorted(w.states) == [(i, j, k) for i in range(2) for j in range(3) for k in range(2)]
    assert w.states[(1, 2, 0)].outputs[0]["data"]["text/html"] == "<p>y-3-0.5</p>"
    # the leaf reached by (i, j, k) is the state (i, j, k)
    assert w.stack.children[1].children[0].children[1] is w.states[(1, 0, 1)]
    a, b, c = w.controls
    assert isinstance(a, widgets.ToggleButtons) and isinstance(b, widgets.Dropdown)
    assert isinstance(c, widgets.SelectionSlider)
    assert (a.index, b.index, c.index) == (1, 2, 0)
    assert w.current_output() is w.states[(1, 2, 0)]
    assert w.labels == [["x", "y"], ["1", "2", "3"], ["0.5", "1.5"]]
    assert len({id(out.layout) for out in w.states.values()}) == 1     # one shared layout


def test_nd_explorer_links_each_control_to_every_stack_at_its_depth():
    w = precomputed_explorer_nd([[1, 2], [1, 2, 3], [1, 2]], lambda *v: str(v))
    pairs = _link_pairs(w)
    for depth, ctrl in enumerate(w.controls):
        stacks = _stacks_at_depth(w.stack, depth)
        assert len(stacks) == [1, 2, 6][depth]
        for s in stacks:
            assert ((ctrl, "index"), (s, "selected_index")) in pairs
    assert len(pairs) == 1 + 2 + 6
    # the deepest stacks hold the Output widgets themselves
    assert all(isinstance(child, widgets.Output) for s in _stacks_at_depth(w.stack, 2) for child in s.children)


def test_nd_explorer_with_one_control_matches_the_1d_explorer():
    w = precomputed_explorer_nd([[1, 2, 3]], _draw_line, descriptions=["slope"])
    assert sorted(w.states) == [(0,), (1,), (2,)]
    assert all(len(_pngs(w.states[(i,)])) == 1 for i in range(3))
    assert _link_pairs(w) == [((w.controls[0], "index"), (w.stack, "selected_index"))]


def test_nd_explorer_errors_say_what_to_do():
    with pytest.raises(ValueError, match="one sequence of values per control"):
        precomputed_explorer_nd([], print)
    with pytest.raises(ValueError, match="at least one value per control"):
        precomputed_explorer_nd([[1], []], print)
    with pytest.raises(ValueError, match="descriptions has 1 entries for 2 controls"):
        precomputed_explorer_nd([[1], [2]], print, descriptions=["a"])
    with pytest.raises(ValueError, match="initial has 3 entries"):
        precomputed_explorer_nd([[1], [2]], print, initial=(0, 0, 0))
    with pytest.raises(ValueError, match="outside the grid 1 x 2"):
        precomputed_explorer_nd([[1], [2, 3]], print, initial=(0, 2))
    with pytest.raises(ValueError, match="max_states"):
        precomputed_explorer_nd([range(4), range(4), range(2)], print)
    with pytest.raises(ValueError, match="control 2"):
        precomputed_explorer_nd([[1], [2, 3]], print, labels=[None, ["only one"]])
    # raising the limit on purpose is allowed
    assert len(precomputed_explorer_nd([range(4), range(4), range(2)], lambda *v: "", max_states=32).states) == 32
