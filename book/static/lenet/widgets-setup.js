/*
 * LeNet-5 from Scratch: set-up for the ipywidgets embed manager on the book's pages.
 * Loaded after RequireJS and before the embed bundle (see book/lenet_book.py).
 *
 * 1. Fonts. When the bundle is served from the site (data-assets="<folder>" on
 *    this script tag, relative to this script), tell it where its icon fonts
 *    are. Otherwise it derives their URL from an AMD module name, relative to
 *    the page, and the requests fail.
 * 2. anywidget. When the vendored anywidget module is named (data-anywidget="<file>",
 *    relative to this script), map the AMD module name "anywidget" to it: the embed
 *    manager asks RequireJS for a widget's module before it would try a CDN.
 * 3. MathJax. ipywidgets typesets widget labels with the MathJax 2 API
 *    (MathJax.Hub.Queue); the book uses MathJax 3, which has no Hub, so every
 *    widget would throw. Give MathJax 3 a small Hub.Queue that calls
 *    MathJax.typesetPromise instead.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var assets = script && script.getAttribute("data-assets");
  if (assets) {
    var folder = new URL(assets, script.src).href.replace(/\/?$/, "/");
    window.__jupyter_widgets_assets_path__ = folder;
    if (window.require && window.require.config) {
      // The bundle defines several named AMD modules (@jupyter-widgets/base,
      // .../controls, .../html-manager, ...) and each one finds its fonts
      // beside its own module URL: map them all into the vendored folder.
      var dir = folder.replace(/\/$/, "");
      window.require.config({
        paths: {
          "@jupyter-widgets": dir,
          "@jupyter-widgets/html-manager/dist": dir
        }
      });
    }
  }

  var anywidget = script && script.getAttribute("data-anywidget");
  if (anywidget && window.require && window.require.config) {
    window.require.config({
      paths: { anywidget: new URL(anywidget, script.src).href.replace(/\.js$/, "") }
    });
  }

  function addHub(mj) {
    if (mj && typeof mj === "object" && mj.version && !mj.Hub) {
      mj.Hub = {
        Queue: function () {
          var jobs = Array.prototype.slice.call(arguments);
          var run = function () {
            jobs.forEach(function (job) {
              if (Array.isArray(job) && job[0] === "Typeset" && mj.typesetPromise) {
                mj.typesetPromise(job[2] ? [job[2]] : undefined).catch(function () {});
              }
            });
          };
          if (mj.startup && mj.startup.promise) {
            mj.startup.promise.then(run);
          } else {
            window.addEventListener("load", run);
          }
        }
      };
    }
    return mj;
  }

  // MathJax 3 replaces window.MathJax (its configuration) by itself when it
  // loads, after this script has run: catch that assignment.
  var current = window.MathJax;
  try {
    Object.defineProperty(window, "MathJax", {
      configurable: true,
      enumerable: true,
      get: function () { return current; },
      set: function (value) { current = addHub(value); }
    });
  } catch (err) {
    /* leave MathJax alone if the property cannot be redefined */
  }
  addHub(current);
})();
