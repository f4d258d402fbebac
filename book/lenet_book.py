"""Sphinx helpers for the LeNet-5 from Scratch book (loaded from ``_config.yml``).

Three small jobs:

1. **Offline assets.** The book's pages need MathJax (equations) and the
   ipywidgets "embed" manager plus RequireJS (widgets that work without a
   kernel). By default Sphinx and MyST-NB load those from public CDNs. Here we
   vendor pinned versions from the npm registry into ``book/_vendor/`` (ignored
   by git), serve them from the built site (``_static/vendor/``) and point
   ``mathjax_path`` and ``nb_ipywidgets_js`` at the local copies, so that a
   built page requests nothing from another host. ``book/static/lenet/
   widgets-setup.js`` (committed) runs between RequireJS and the embed bundle:
   it tells the bundle where its fonts are, tells RequireJS where the vendored
   ``anywidget`` module is, and lets ipywidgets typeset labels with MathJax 3.
   ``book/static`` is added to ``html_static_path`` too.

   ``anywidget`` is there for the page *Draw a digit*, whose widget
   (``lenet_core.live.LiveLeNet``) runs LeNet-5 in the browser. Why a widget
   and not a plain script in ``book/static``: the same object then works in
   Jupyter with a kernel (it can show the notebook's current model and sends
   the drawn digit back to Python) and on the static page, where the build saves
   its state (the weights, as web exports) in the HTML and the embed manager
   renders it, with no kernel and no request outside the site. The embed
   manager loads a widget's module with ``require(["anywidget"])`` before it
   would try a CDN; the npm package's ``dist/index.js`` is an AMD module that
   needs only ``@jupyter-widgets/base``, which the embed bundle defines.

   Where the files come from, first match wins:

   * ``book/_vendor/static/vendor/`` already filled by an earlier build;
   * an existing ``node_modules`` folder holding the pinned versions
     (``$LENET_NODE_MODULES``, else ``./node_modules`` at the repository root);
   * ``npm pack`` of the three pinned packages (tarballs only, no dependency
     tree: the packages ship ready-made bundles), checked against the
     registry's sha512 integrity pinned below.

   If none of that works (say, no ``npm`` on a reader's machine), the build
   goes on with the public CDN scripts and says so in an *info* message (not a
   Sphinx warning, so ``-W`` builds do not fail for it).

2. **Launch buttons.** Binder and Colab buttons need a public repository URL.
   They are switched on by setting ``repository: url:`` in ``_config.yml``;
   while it is empty the launch providers are removed here, so nothing breaks
   and no page links to a repository that does not exist. The ``.ipynb``
   download button is always there.

3. **Duplicate scripts.** One copy of each ``<script>`` per page (see
   ``_drop_duplicate_scripts``).

Set ``LENET_BOOK_CDN=1`` to skip vendoring on purpose and use the CDNs.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: npm packages vendored into the site: name -> (version, sha512 integrity).
#: html-manager 1.0.x is the embed manager matching ipywidgets 8.1.
PACKAGES = {
    "@jupyter-widgets/html-manager": (
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//"
        "SABeNz1yp47bCrJ3CQA==",
    ),
    "mathjax": (
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvt"
        "RZM1vO+geW0OhGw==",
    ),
    "requirejs": (
        "2.3.7",
        "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPV"
        "HJ0pyBkM1z+pDsw==",
    ),
    # the front end of anywidget 0.11 (PyPI anywidget 0.11.0 carries the same file)
    "anywidget": (
        "0.11.0",
        "sha512-LHZgW2j5UjyerZSZcO+BtZPXGMSORQV2bUT480hOR5x/BXS8sOradi/71amJfMueSEnKX0dq"
        "PwTfsOGHTsyZpQ==",
    ),
}

#: Which files of each package the site needs: package -> (source dir inside the
#: package, destination dir under ``_static/vendor``, filter on relative paths).
_LAYOUT = {
    "@jupyter-widgets/html-manager": (
        "dist",
        "html-manager",
        # the AMD bundles and the icon fonts they load; no source maps
        lambda rel: not rel.endswith(".map") and rel not in ("embed.js",),
    ),
    "mathjax": (
        "es5",
        "mathjax",
        # the combined component Sphinx uses, plus everything it loads lazily
        lambda rel: "/" in rel or rel in ("tex-mml-chtml.js", "startup.js", "core.js", "loader.js"),
    ),
    "requirejs": ("", "requirejs", lambda rel: rel == "require.js"),
    "anywidget": ("dist", "anywidget", lambda rel: rel == "index.js"),
}

MATHJAX_PATH = "vendor/mathjax/tex-mml-chtml.js"
REQUIRE_PATH = "vendor/requirejs/require.js"
EMBED_PATH = "vendor/html-manager/embed-amd.js"
ANYWIDGET_PATH = "vendor/anywidget/index.js"
#: Committed helper loaded between RequireJS and the embed bundle (fonts, MathJax 3).
SETUP_JS = "lenet/widgets-setup.js"


def _stamp() -> dict:
    return {name: version for name, (version, _) in PACKAGES.items()}


def _vendor_root(srcdir: Path) -> Path:
    return srcdir / "book" / "_vendor"


def _static_dir(srcdir: Path) -> Path:
    """The folder added to ``html_static_path``; its ``vendor/`` lands in ``_static/``."""
    return _vendor_root(srcdir) / "static"


def _is_complete(static: Path) -> bool:
    stamp = static / "vendor" / "versions.json"
    if not stamp.is_file():
        return False
    try:
        if json.loads(stamp.read_text()) != _stamp():
            return False
    except ValueError:
        return False
    return all((static / rel).is_file() for rel in (MATHJAX_PATH, REQUIRE_PATH, EMBED_PATH, ANYWIDGET_PATH))


def _copy_package(pkg_root: Path, name: str, dest_vendor: Path) -> None:
    src_sub, dest_sub, keep = _LAYOUT[name]
    src = pkg_root / src_sub if src_sub else pkg_root
    dest = dest_vendor / dest_sub
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if path.is_file() and keep(rel):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _package_version(pkg_root: Path) -> str | None:
    try:
        return json.loads((pkg_root / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _from_node_modules(node_modules: Path, dest_vendor: Path) -> bool:
    roots = {name: node_modules.joinpath(*name.split("/")) for name in PACKAGES}
    if any(_package_version(root) != PACKAGES[name][0] for name, root in roots.items()):
        return False
    for name, root in roots.items():
        _copy_package(root, name, dest_vendor)
    return True


def _check_integrity(data: bytes, integrity: str) -> bool:
    algo, _, expected = integrity.partition("-")
    return base64.b64encode(hashlib.new(algo, data).digest()).decode() == expected


def _safe_extract(tgz: bytes, into: Path) -> Path:
    """Extract an npm tarball (members under ``package/``) refusing odd paths."""
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for member in tar.getmembers():
            target = (into / member.name).resolve()
            if not str(target).startswith(str(into.resolve())) or member.issym() or member.islnk():
                raise RuntimeError(f"unexpected path in npm tarball: {member.name}")
            if member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as fh:  # type: ignore[union-attr]
                    target.write_bytes(fh.read())
    return into / "package"


def _from_npm(npm: str, cache: Path, dest_vendor: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    specs = [f"{name}@{version}" for name, (version, _) in PACKAGES.items()]
    missing = [s for s in specs if not (cache / _tarball_name(s)).is_file()]
    if missing:
        logger.info("lenet_book: npm pack %s", " ".join(missing))
        subprocess.run(
            [npm, "pack", "--silent", "--pack-destination", str(cache), *missing],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    for name, (version, integrity) in PACKAGES.items():
        tgz = (cache / _tarball_name(f"{name}@{version}")).read_bytes()
        if not _check_integrity(tgz, integrity):
            raise RuntimeError(f"{name}@{version}: tarball does not match the pinned sha512")
        with tempfile.TemporaryDirectory() as tmp:
            _copy_package(_safe_extract(tgz, Path(tmp)), name, dest_vendor)


def _tarball_name(spec: str) -> str:
    """The file name ``npm pack`` gives a package: ``@a/b@1.0`` -> ``a-b-1.0.tgz``."""
    name, _, version = spec.rpartition("@")
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def vendor_assets(srcdir: Path) -> tuple[bool, str]:
    """Make sure the pinned assets sit in ``book/_vendor/static/vendor``.

    Returns ``(ok, how)``: whether the local copies can be used and where
    they came from (or why not).
    """
    static = _static_dir(srcdir)
    if _is_complete(static):
        return True, "already vendored"
    tmp_static = static.with_name("static.partial")
    shutil.rmtree(tmp_static, ignore_errors=True)
    dest_vendor = tmp_static / "vendor"
    how = None
    candidates = [os.environ.get("LENET_NODE_MODULES"), str(srcdir / "node_modules")]
    for candidate in filter(None, candidates):
        if Path(candidate).is_dir() and _from_node_modules(Path(candidate), dest_vendor):
            how = f"copied from {candidate}"
            break
    if how is None:
        npm = shutil.which("npm")
        if npm is None:
            return False, "npm was not found on PATH"
        try:
            _from_npm(npm, _vendor_root(srcdir) / "npm", dest_vendor)
        except (OSError, subprocess.SubprocessError, RuntimeError) as err:
            detail = getattr(err, "stderr", b"") or b""
            detail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
            return False, f"npm pack failed ({err}{': ' + detail[0] if detail else ''})"
        how = "fetched with npm pack"
    dest_vendor.mkdir(parents=True, exist_ok=True)
    (dest_vendor / "versions.json").write_text(json.dumps(_stamp(), indent=1) + "\n")
    shutil.rmtree(static, ignore_errors=True)
    tmp_static.rename(static)
    return True, how


def _cdn_widget_scripts(defaults: dict) -> dict:
    """MyST-NB's default (CDN) scripts with the set-up script slotted in before the embed."""
    scripts = {}
    for url, attrs in defaults.items():
        if "html-manager" in url:
            scripts[SETUP_JS] = {}
        scripts[url] = attrs
    scripts.setdefault(SETUP_JS, {})
    return scripts


def _use_local_assets(app, config) -> None:
    srcdir = Path(app.srcdir)
    own_static = str(srcdir / "book" / "static")
    if own_static not in config.html_static_path:
        config.html_static_path.append(own_static)
    if os.environ.get("LENET_BOOK_CDN", "").strip() not in ("", "0"):
        logger.info("lenet_book: LENET_BOOK_CDN is set, MathJax and widgets load from public CDNs")
        ok, how = False, None
    else:
        ok, how = vendor_assets(srcdir)
        if not ok:
            logger.info(
                "lenet_book: could not vendor MathJax and the ipywidgets embed script (%s); "
                "the pages will load them from public CDNs instead. Install Node.js/npm and "
                "rebuild for a site that works offline.",
                how,
            )
    if not ok:
        config.nb_ipywidgets_js = _cdn_widget_scripts(dict(config.nb_ipywidgets_js))
        return
    logger.info("lenet_book: serving MathJax and ipywidgets from _static/vendor (%s)", how)
    static = str(_static_dir(srcdir))
    if static not in config.html_static_path:
        config.html_static_path.append(static)
    config.mathjax_path = MATHJAX_PATH
    config.nb_ipywidgets_js = {
        REQUIRE_PATH: {},
        # data-assets: where the embed bundle's fonts are, relative to SETUP_JS;
        # data-anywidget: the anywidget module, for RequireJS
        SETUP_JS: {"data-assets": "../" + EMBED_PATH.rsplit("/", 1)[0] + "/",
                   "data-anywidget": "../" + ANYWIDGET_PATH},
        # No CDN attribute: the embed manager only needs the CDN for third-party
        # widget libraries, and the book's one (anywidget) is vendored.
        EMBED_PATH: {},
    }


def _guard_launch_buttons(app, config) -> None:
    """Drop Binder/Colab launch buttons unless a repository URL is configured."""
    options = config.html_theme_options or {}
    if (options.get("repository_url") or "").strip():
        return
    launch = dict(options.get("launch_buttons") or {})
    for key in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "jupyterlite_url"):
        launch.pop(key, None)
    launch["thebe"] = False
    options["launch_buttons"] = launch
    config.html_theme_options = options


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep one copy of each script tag.

    sphinx-thebe (loaded by Jupyter Book) can register its inline configuration
    script twice; the second ``const THEBE_JS_URL`` then throws a SyntaxError in
    the reader's browser console.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        # the same script may be registered with filename None and with ""
        attributes = getattr(js, "attributes", {}) or {}
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _on_config_inited(app, config) -> None:
    _use_local_assets(app, config)
    _guard_launch_buttons(app, config)


def setup(app):
    # config-inited runs before Sphinx compares the configuration with the
    # previous build's, and before MyST-NB reads its nb_* values.
    app.connect("config-inited", _on_config_inited)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
