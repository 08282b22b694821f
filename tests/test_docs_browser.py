"""The built documentation, opened in headless Chromium as a reader would: the landing page, a
tutorial and an API page. The math must render with the bundled MathJax (no CDN: every script
the page loads is local) and every figure must load (``naturalWidth > 0``).

Each page is copied to a probe page next to it (same folder, so every relative link holds) with
a script that, once MathJax has typeset the page and every image has settled, writes what it
found into the DOM; Chromium's ``--dump-dom`` returns the DOM after the scripts ran, and
``--screenshot`` keeps a picture (in ``$PYRO_DEEPGEN_SCREENSHOTS`` when set, for a human to look
at). Skipped where no Chromium is installed (Debian's ``chromium`` package; ``.ci/run`` installs
it where apt is available).
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_docs import docs_build  # noqa: F401  (the one session-wide build)

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium)")

PAGES = {"landing": "index.html", "tutorial": "tutorials/t01_vae_iwae_dreg.html", "api": "models.html"}
PROBE = """
<script>
window.addEventListener("load", async () => {
  const report = {};
  try {
    if (window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
    const images = Array.from(document.images);
    await Promise.all(images.map(img => img.complete ? null :
        new Promise(done => { img.onload = done; img.onerror = done; })));
    report.mathjax = !!(window.MathJax && MathJax.version);
    report.version = window.MathJax ? (MathJax.version || null) : null;
    report.math = document.querySelectorAll("span.math, div.math").length;
    report.typeset = document.querySelectorAll("mjx-container").length;
    report.errors = document.querySelectorAll("mjx-merror").length;
    report.untypeset = Array.from(document.querySelectorAll("span.math, div.math"))
        .filter(el => !el.querySelector("mjx-container")).length;
    report.images = images.map(img => [img.getAttribute("src"), img.naturalWidth]);
    report.scripts = Array.from(document.scripts).map(s => s.src).filter(Boolean);
  } catch (e) { report.exception = String(e); }
  const out = document.createElement("pre");
  out.id = "probe-report";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>
"""
REPORT = re.compile(r'<pre id="probe-report">(.*?)</pre>', re.S)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--allow-file-access-from-files", "--virtual-time-budget=20000"]


def _chromium(args, tmp_path):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a new, empty profile
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _open(docs_build, name, tmp_path, min_bytes=10_000):  # noqa: F811
    assert docs_build.returncode == 0, docs_build.stderr[-2000:]
    page = docs_build.out / PAGES[name]
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(["--dump-dom", probe.as_uri()], tmp_path)
    found = REPORT.search(dom.stdout)
    assert found, f"no probe report for {name}: {dom.stderr[-2000:]}"
    shots = Path(os.environ.get("PYRO_DEEPGEN_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / f"{name}.png"
    _chromium([f"--screenshot={shot}", "--window-size=1280,2400", probe.as_uri()], tmp_path)
    assert shot.exists() and shot.stat().st_size > min_bytes, f"no screenshot of {name}"
    return json.loads(found.group(1))


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_renders_its_math_and_figures(docs_build, name, tmp_path):  # noqa: F811
    report = _open(docs_build, name, tmp_path)
    assert "exception" not in report, report
    assert report["mathjax"] and report["version"].startswith("3."), report
    assert report["math"] > 0 and report["typeset"] >= report["math"], report
    assert report["untypeset"] == 0 and report["errors"] == 0, report
    assert all(src.startswith("file://") for src in report["scripts"]), f"a non-local script: {report['scripts']}"
    broken = [src for src, width in report["images"] if width == 0]
    assert not broken, f"figures that did not load: {broken}"
    if name == "tutorial":
        assert sum(1 for src, _ in report["images"] if "sphx_glr_t01" in src) >= 2, report["images"]


def test_the_probe_sees_a_missing_figure(docs_build, tmp_path):  # noqa: F811
    """A page with a broken image and raw TeX without MathJax fails the checks above."""
    page = docs_build.out / "probe-selftest.html"
    page.write_text('<html><body><span class="math">\\(x^2\\)</span><img src="_images/nothing.png"></body></html>')
    PAGES["selftest"] = page.name
    try:
        report = _open(docs_build, "selftest", tmp_path, min_bytes=0)
    finally:
        del PAGES["selftest"]
    assert report["untypeset"] == 1 and not report["mathjax"]
    assert report["images"] and report["images"][0][1] == 0
