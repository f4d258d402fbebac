"""Widgets that keep working in the static book, where no Python kernel runs.

An ordinary ``ipywidgets.interact`` calls Python every time the slider moves. On
the published pages there is no Python to call, so such a widget shows nothing.
The helpers here compute every state *in advance* instead: each value is
rendered once (a matplotlib figure, printed text or HTML) into its own
``Output`` widget, the outputs are stacked in an ``ipywidgets.Stack`` and the
control's index is linked to the stack's ``selected_index`` with
``ipywidgets.jslink``. The link runs in the browser, so moving the control
switches between the pre-rendered states with or without a kernel: in Jupyter,
in a notebook viewer that renders widget state, and on the book's pages (the
build saves the widget state in the executed notebook and embeds it).

Keep the number of states modest (at most 30 by default) and figures small: every
state is a PNG stored in the page.

Example::

    import numpy as np
    import matplotlib.pyplot as plt
    from lenet_core.widgets import precomputed_explorer

    x = np.linspace(-4, 4, 200)

    def draw(slope):
        plt.plot(x, np.tanh(slope * x))
        plt.title(f"tanh({slope} x)")
        plt.xlabel("x")
        plt.ylabel("activation")

    precomputed_explorer([0.5, 1, 2, 4], draw, description="slope")

The last line of the cell displays the widget. ``render`` may also ``print``
text, return an HTML string, or return a matplotlib figure it created.
"""
from __future__ import annotations

import base64
import contextlib
import html as _html
import io
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["PrecomputedExplorer", "precomputed_explorer", "precomputed_explorer_2d", "render_outputs",
           "LIVE_CLASS"]

#: Default upper bound on the number of pre-rendered states of one widget.
MAX_STATES = 30

#: CSS class for interactive content that is *not* a precomputed explorer (it needs a
#: kernel, or the page's own script drives it, like a drawing canvas). The book's generic
#: browser test (tests/browser/widgetkit.py) moves every control of every widget on every
#: page and expects the picture to change; it skips whatever sits inside an element of
#: this class, which that page's own test must cover. Mark a widget with
#: ``widget.add_class(LIVE_CLASS)``, or HTML with ``<div class="lenet-live">``.
LIVE_CLASS = "lenet-live"

_CONTROLS = ("slider", "dropdown", "buttons")


def _figure_png(fig, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_is_empty(fig) -> bool:
    return not fig.axes and not fig.texts and not fig.images and not fig.lines and not fig.patches


def render_outputs(render: Callable[..., Any], *args: Any, dpi: int = 80,
                   figsize: tuple[float, float] | None = None) -> list[dict]:
    """Call ``render(*args)`` and return what it showed as notebook output dicts.

    Captured, in order: text printed to stdout; every matplotlib figure that is
    open after the call and was not open before it (``render`` draws into a fresh
    current figure, or makes its own with ``plt.subplots``), as a PNG at ``dpi``;
    and the return value if it is a figure, an HTML string, or an object with
    ``_repr_html_``. The new figures are closed, so they are not shown again
    at the end of the cell.

    These dicts are the format of ``ipywidgets.Output.outputs``.
    """
    before = set(plt.get_fignums())
    fig_kwargs = {"dpi": dpi}
    if figsize is not None:
        fig_kwargs["figsize"] = figsize
    blank = plt.figure(**fig_kwargs)
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            result = render(*args)
        figures = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        if isinstance(result, Figure) and result not in figures:
            figures.append(result)
        outputs: list[dict] = []
        if stdout.getvalue():
            outputs.append({"output_type": "stream", "name": "stdout", "text": stdout.getvalue()})
        for fig in figures:
            if fig is blank and _figure_is_empty(fig):
                continue
            outputs.append({
                "output_type": "display_data",
                "data": {"image/png": _figure_png(fig, dpi), "text/plain": "<Figure>"},
                "metadata": {},
            })
        if isinstance(result, str):
            outputs.append({
                "output_type": "display_data",
                "data": {"text/html": result, "text/plain": _html.unescape(result)},
                "metadata": {},
            })
        elif result is not None and hasattr(result, "_repr_html_") and not isinstance(result, Figure):
            outputs.append({
                "output_type": "display_data",
                "data": {"text/html": result._repr_html_(), "text/plain": repr(result)},
                "metadata": {},
            })
        return outputs
    finally:
        for n in plt.get_fignums():
            if n not in before:
                plt.close(n)


def _labels_for(values: Sequence[Any], labels: Sequence[str] | None, what: str) -> list[str]:
    if labels is None:
        labels = [_format_value(v) for v in values]
    labels = [str(label) for label in labels]
    if len(labels) != len(values):
        raise ValueError(f"{what}: got {len(labels)} labels for {len(values)} values; give one label per value")
    if len(set(labels)) != len(labels):
        raise ValueError(f"{what}: labels must be distinct, got {labels}")
    return labels


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _make_control(control: str, labels: list[str], description: str, index: int) -> widgets.Widget:
    """A control whose ``index`` trait picks one of ``labels``."""
    options = list(labels)
    style = {"description_width": "initial"}
    if control == "slider":
        return widgets.SelectionSlider(
            options=options, index=index, description=description, continuous_update=True,
            style=style, layout=widgets.Layout(width="min(100%, 480px)"),
        )
    if control == "dropdown":
        return widgets.Dropdown(options=options, index=index, description=description, style=style)
    if control == "buttons":
        return widgets.ToggleButtons(options=options, index=index, description=description, style=style)
    raise ValueError(f"control must be one of {_CONTROLS}, got {control!r}")


def _output_widget(outputs: list[dict]) -> widgets.Output:
    out = widgets.Output()
    out.outputs = tuple(outputs)
    return out


def _check_count(n: int, max_states: int) -> None:
    if n == 0:
        raise ValueError("values is empty: give at least one value to show")
    if n > max_states:
        raise ValueError(
            f"{n} states to pre-render, more than max_states={max_states}. Every state is stored "
            "in the page as a picture; use fewer values, or raise max_states if you mean it."
        )


class PrecomputedExplorer(widgets.VBox):
    """A control above a stack of pre-rendered outputs, linked in the browser.

    Made by :func:`precomputed_explorer` and :func:`precomputed_explorer_2d`.
    Attributes, for tests and for code that wants to inspect the states:

    ``controls``
        the control widgets (one, or two for the 2-D explorer);
    ``stack``
        the outer ``ipywidgets.Stack``;
    ``states``
        dict mapping a tuple of indices (one per control) to the ``Output`` widget
        showing that state;
    ``links``
        the ``jslink`` objects tying the controls to the stacks;
    ``labels``
        one list of labels per control.
    """

    #: CSS class of the widget's box on the page (the book's browser tests look for it).
    dom_class = "lenet-explorer"

    def __init__(self, controls, stack, states, links, labels, **kwargs):
        super().__init__(children=[*controls, stack], **kwargs)
        self.add_class(self.dom_class)
        self.controls = list(controls)
        self.stack = stack
        self.states = states
        self.links = list(links)
        self.labels = [list(lab) for lab in labels]

    def current_output(self) -> widgets.Output:
        """The ``Output`` widget the controls currently select (kernel side)."""
        return self.states[tuple(c.index for c in self.controls)]


def precomputed_explorer(
    values: Sequence[Any],
    render: Callable[[Any], Any],
    description: str = "",
    control: str = "slider",
    labels: Sequence[str] | None = None,
    *,
    initial: int = 0,
    dpi: int = 80,
    figsize: tuple[float, float] | None = None,
    max_states: int = MAX_STATES,
) -> PrecomputedExplorer:
    """A widget that shows ``render(value)`` for the value picked by a control.

    Every value is rendered once, now; the control switches between the results
    in the browser (``jslink``), so the widget also works in the static book.

    Parameters
    ----------
    values : sequence
        The values to offer, at most ``max_states`` of them.
    render : callable
        ``render(value)`` draws into the current matplotlib figure (or creates
        its own), prints text, and/or returns an HTML string or a figure.
    description : str
        Label shown next to the control, e.g. ``"kernel size"``.
    control : {"slider", "dropdown", "buttons"}
        A selection slider (ordered values), a dropdown, or toggle buttons.
    labels : sequence of str, optional
        Text shown for each value; defaults to ``str(value)`` (``:g`` for floats).
    initial : int
        Index of the value shown first.
    dpi, figsize
        Resolution and size of the pre-rendered figures. The default 80 dpi and
        matplotlib's figure size keep each state around 20-40 kB.
    max_states : int
        Safety limit on ``len(values)``.

    Returns
    -------
    PrecomputedExplorer
        A ``VBox`` holding the control and an ``ipywidgets.Stack`` of ``Output``
        widgets. Display it (last expression of a cell) to show it.

    Example
    -------
    >>> import matplotlib.pyplot as plt
    >>> def draw(k):
    ...     plt.plot([0, 1, 2], [0, k, 2 * k])
    ...     plt.title(f"slope {k}")
    >>> w = precomputed_explorer([1, 2, 3], draw, description="slope")
    >>> len(w.states), w.labels
    (3, [['1', '2', '3']])
    """
    values = list(values)
    _check_count(len(values), max_states)
    labels = _labels_for(values, labels, "precomputed_explorer")
    if not 0 <= initial < len(values):
        raise ValueError(f"initial must be an index into values (0..{len(values) - 1}), got {initial}")
    states = {(i,): _output_widget(render_outputs(render, v, dpi=dpi, figsize=figsize))
              for i, v in enumerate(values)}
    stack = widgets.Stack(children=[states[(i,)] for i in range(len(values))], selected_index=initial)
    ctrl = _make_control(control, labels, description, initial)
    link = widgets.jslink((ctrl, "index"), (stack, "selected_index"))
    return PrecomputedExplorer([ctrl], stack, states, [link], [labels])


def precomputed_explorer_2d(
    values_a: Sequence[Any],
    values_b: Sequence[Any],
    render: Callable[[Any, Any], Any],
    descriptions: tuple[str, str] = ("", ""),
    controls: tuple[str, str] = ("slider", "slider"),
    labels: tuple[Sequence[str] | None, Sequence[str] | None] = (None, None),
    *,
    initial: tuple[int, int] = (0, 0),
    dpi: int = 80,
    figsize: tuple[float, float] | None = None,
    max_states: int = MAX_STATES,
) -> PrecomputedExplorer:
    """Like :func:`precomputed_explorer`, with two controls for two parameters.

    ``render(a, b)`` is called for every pair, so ``len(values_a) * len(values_b)``
    must stay within ``max_states``. In the browser the first control picks a
    row of an outer ``Stack`` whose children are inner ``Stack`` widgets, and the
    second control is ``jslink``-ed to every inner stack: no kernel is needed to
    combine the two choices.

    Example
    -------
    >>> import numpy as np, matplotlib.pyplot as plt
    >>> def draw(kernel, stride):
    ...     plt.imshow(np.zeros((kernel, stride)))
    ...     plt.title(f"K={kernel}, S={stride}")
    >>> w = precomputed_explorer_2d([3, 5], [1, 2], draw, descriptions=("K", "S"))
    >>> sorted(w.states)
    [(0, 0), (0, 1), (1, 0), (1, 1)]
    """
    values_a, values_b = list(values_a), list(values_b)
    _check_count(len(values_a) * len(values_b), max_states)
    labels_a = _labels_for(values_a, labels[0], "precomputed_explorer_2d (first control)")
    labels_b = _labels_for(values_b, labels[1], "precomputed_explorer_2d (second control)")
    ia, ib = initial
    if not (0 <= ia < len(values_a) and 0 <= ib < len(values_b)):
        raise ValueError(f"initial={initial} is outside the grid {len(values_a)} x {len(values_b)}")
    states = {
        (i, j): _output_widget(render_outputs(render, a, b, dpi=dpi, figsize=figsize))
        for i, a in enumerate(values_a)
        for j, b in enumerate(values_b)
    }
    inner = [
        widgets.Stack(children=[states[(i, j)] for j in range(len(values_b))], selected_index=ib)
        for i in range(len(values_a))
    ]
    outer = widgets.Stack(children=inner, selected_index=ia)
    ctrl_a = _make_control(controls[0], labels_a, descriptions[0], ia)
    ctrl_b = _make_control(controls[1], labels_b, descriptions[1], ib)
    links = [widgets.jslink((ctrl_a, "index"), (outer, "selected_index"))]
    links += [widgets.jslink((ctrl_b, "index"), (s, "selected_index")) for s in inner]
    return PrecomputedExplorer([ctrl_a, ctrl_b], outer, states, links, [labels_a, labels_b])


def precomputed_explorer_nd(
    values: Sequence[Sequence[Any]],
    render: Callable[..., Any],
    descriptions: Sequence[str] | None = None,
    controls: Sequence[str] | None = None,
    labels: Sequence[Sequence[str] | None] | None = None,
    *,
    initial: Sequence[int] | None = None,
    dpi: int = 80,
    figsize: tuple[float, float] | None = None,
    max_states: int = MAX_STATES,
) -> PrecomputedExplorer:
    """Like :func:`precomputed_explorer_2d`, with one control per entry of ``values``.

    ``values`` holds one sequence of values per control, e.g. ``[optimizers,
    learning_rates, iterations]``; ``render(a, b, c, ...)`` is called once for every
    combination, so the product of the lengths must stay within ``max_states``
    (raise it on purpose for many light states: ``render`` returning a small HTML
    or SVG drawing instead of a matplotlib figure keeps each state a few kB).
    ``descriptions``, ``controls`` and ``labels`` give one entry per control
    (defaults: no description, sliders, ``str(value)``); ``initial`` one index per
    control (default all 0).

    In the browser the controls pick one path through nested ``Stack`` widgets,
    one level per control: control ``d`` is ``jslink``-ed to every stack at depth
    ``d``, so no kernel is needed to combine the choices. ``states`` maps a tuple
    of indices, one per control, to the ``Output`` showing that combination; all
    of them share one ``Layout`` (a page stores every widget's layout, and a
    layout is several times larger than an empty ``Output``).

    Example
    -------
    >>> import matplotlib.pyplot as plt
    >>> w = precomputed_explorer_nd([["a", "b"], [1, 2], [10, 20, 30]],
    ...                             lambda s, i, j: f"<p>{s} {i} {j}</p>",
    ...                             descriptions=("s", "i", "j"))
    >>> len(w.states), len(w.controls), len(w.links)
    (12, 3, 7)
    """
    axes = [list(v) for v in values]
    n = len(axes)
    if n == 0:
        raise ValueError("values is empty: give one sequence of values per control")
    descriptions = [""] * n if descriptions is None else list(descriptions)
    controls = ["slider"] * n if controls is None else list(controls)
    labels = [None] * n if labels is None else list(labels)
    initial = [0] * n if initial is None else [int(i) for i in initial]
    for name, given in (("descriptions", descriptions), ("controls", controls), ("labels", labels),
                        ("initial", initial)):
        if len(given) != n:
            raise ValueError(f"precomputed_explorer_nd: {name} has {len(given)} entries for {n} controls; "
                             "give one per entry of values")
    if any(len(a) == 0 for a in axes):
        raise ValueError("values holds an empty sequence: give at least one value per control")
    total = 1
    for a in axes:
        total *= len(a)
    _check_count(total, max_states)
    all_labels = [_labels_for(a, lab, f"precomputed_explorer_nd (control {d + 1})")
                  for d, (a, lab) in enumerate(zip(axes, labels))]
    shape = tuple(len(a) for a in axes)
    if not all(0 <= i < s for i, s in zip(initial, shape)):
        raise ValueError(f"initial={tuple(initial)} is outside the grid {' x '.join(map(str, shape))}")
    shared = widgets.Layout()       # one layout model for all states keeps the saved page small
    states = {}
    for idx in _grid(shape):
        states[idx] = widgets.Output(layout=shared)
        states[idx].outputs = tuple(render_outputs(render, *(a[i] for a, i in zip(axes, idx)), dpi=dpi,
                                                   figsize=figsize))
    levels: list[list[widgets.Stack]] = [[] for _ in range(n)]
    outer = _nested_stacks(states, shape, (), initial, levels)
    ctrls = [_make_control(c, lab, desc, i)
             for c, lab, desc, i in zip(controls, all_labels, descriptions, initial)]
    links = [widgets.jslink((ctrl, "index"), (stack, "selected_index"))
             for ctrl, level in zip(ctrls, levels) for stack in level]
    return PrecomputedExplorer(ctrls, outer, states, links, all_labels)


def _grid(shape):
    """Every index tuple of a grid of ``shape``, last index fastest (like ``itertools.product``)."""
    if not shape:
        return [()]
    return [(i,) + rest for i in range(shape[0]) for rest in _grid(shape[1:])]


def _nested_stacks(states, shape, prefix, initial, levels):
    """The ``Stack`` choosing among the states whose indices start with ``prefix`` (recorded in ``levels``)."""
    depth = len(prefix)
    children = [states[prefix + (i,)] if depth == len(shape) - 1
                else _nested_stacks(states, shape, prefix + (i,), initial, levels)
                for i in range(shape[depth])]
    stack = widgets.Stack(children=children, selected_index=initial[depth])
    levels[depth].append(stack)
    return stack


__all__ += ["precomputed_explorer_nd"]
