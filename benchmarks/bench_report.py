"""Benchmark of the report: its size, how long it takes to build, and how fast it is in a browser.

For fake runs of 3,359 galaxies (the size of the SDSS Galaxy Zoo 1 sample),
20,000 galaxies (the largest map of earlier reports, still one self-contained
file), 200,000 and 10^6 galaxies (the explorer's data and map thumbnails beside
the page, above ``report.inline_points``), each with an RGB cube, a latent
space, a t-SNE-like map, a soft clustering, an anomaly score and comparison
tables (``tests/report_fakerun.py``), it measures:

- the time and peak resident memory of ``build_report`` (in a process of its
  own) and the size of ``report.html``, of the files beside it
  (``report_files/``) and of the report's figures;
- in headless Chromium (``/usr/bin/chromium``), with WebGL (SwiftShader: on the
  CPU, so a lower bound of what a GPU gives) and, up to 20,000 points, with the
  Canvas 2D fallback: the time from navigation start to
  ``window.morphospaceReady`` (the map drawn and interactive), the frame
  interval while zooming with the wheel (60 frames; above 60,000 points the
  page draws a random 60,000 while the view moves, then all) and of full
  redraws of every point (60 frames), and, for 10 galaxies spread over the map,
  the time from a mouse move to the tooltip's text and to its thumbnail
  showing (beside the page: each first hover of a shard loads its files).

Usage::

    .venv/bin/python benchmarks/bench_report.py            # 3,359 and 20,000
    .venv/bin/python benchmarks/bench_report.py --quick    # 500 galaxies, a smoke test
    .venv/bin/python benchmarks/bench_report.py --sizes 200000 1000000 --image-size 16 --keep /tmp/bench-report
    .venv/bin/python benchmarks/bench_report.py --sizes 3359 --keep /tmp/bench-report

With ``--keep`` a fake run already there is reused (a 10^6 run with 16 px
images is a 3 GB cube). Timings depend on the machine and its load; the script
prints them with the settings and writes only into a temporary directory (or
``--keep``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def mb(n: int) -> str:
    """Bytes as megabytes.

    Parameters
    ----------
    n : int
        Bytes.

    Returns
    -------
    str
        E.g. ``"1.25 MB"``.
    """
    return f"{n / 1e6:.2f} MB"


def folder_size(path: Path) -> int:
    """Bytes of every file under a folder.

    Parameters
    ----------
    path : Path

    Returns
    -------
    int
        0 when the folder does not exist.
    """
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


WHEEL_JS = """async () => {
  const ov = document.getElementById('ex-overlay'), r = ov.getBoundingClientRect(), times = [];
  let last = performance.now();
  for (let k = 0; k < 60; k++) {   // zooming in with the wheel, as a person does: the page's own draw path
    ov.dispatchEvent(new WheelEvent('wheel', {deltaY: k < 30 ? -40 : 40, clientX: r.left + r.width / 2,
                                             clientY: r.top + r.height / 2, bubbles: true, cancelable: true}));
    await new Promise(res => requestAnimationFrame(res));
    const now = performance.now(); times.push(now - last); last = now;
  }
  await new Promise(res => setTimeout(res, 400));   // still again: every point drawn
  return times;
}"""

FRAMES_JS = """async () => {
  const E = window.morphospaceExplorer, v0 = E.view(), times = [];
  let last = performance.now();
  for (let k = 0; k < 60; k++) {
    E.setView({cx: v0.cx, cy: v0.cy, zoom: v0.zoom * (1 + 0.02 * k)});
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now(); times.push(now - last); last = now;
  }
  E.setView(v0);
  return times;
}"""


HOVER_WATCH_JS = """() => {
  const tt = document.getElementById('ex-tooltip'), img = tt.querySelector('.img');
  window.__hover = {};
  const note = () => {
    const i = tt.getAttribute('data-index'), t = performance.now();
    if (tt.hidden || i === null) return;
    if (tt.getAttribute('data-ready') === i && !(('text' + i) in window.__hover)) window.__hover['text' + i] = t;
    const thumb = img.getAttribute('data-thumb');   // beside the page: set once the sheet is in
    if ((thumb === i || (thumb === null && img.style.backgroundPosition)) && !(('thumb' + i) in window.__hover))
      window.__hover['thumb' + i] = t;
  };
  new MutationObserver(note).observe(tt, {attributes: true, subtree: true, childList: true});
}"""


def _wait(page, expression: str, timeout_s: float = 120.0):
    """Poll a JavaScript expression from Python until truthy (the page's CSP forbids wait_for_function's eval)."""
    end = time.monotonic() + timeout_s
    while True:
        v = page.evaluate(expression)
        if v:
            return v
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {expression}")
        time.sleep(0.005)


def browser_timings(report: Path, renderer_args: list[str], repeats: int = 3) -> dict:
    """Open the report in headless Chromium and time it.

    Parameters
    ----------
    report : Path
        ``report.html``.
    renderer_args : list of str
        Extra Chromium flags (e.g. the ones that disable WebGL).
    repeats : int
        Page loads.

    Returns
    -------
    dict
        ``ready_ms`` (navigation start to interactive, per load), ``frame_ms``
        (frame intervals while zooming with the wheel: above 60,000 points a
        random 60,000 are drawn while the view moves), ``full_ms`` (frame
        intervals of full redraws, every point, through ``setView``), ``text_ms`` (mouse move to the
        tooltip's text), ``thumb_ms`` (mouse move to its thumbnail),
        ``renderer``, ``points`` (points drawn) and ``outside`` (requests that
        left the report's folder).

    Raises
    ------
    RuntimeError
        When the page logs an error.
    """
    from playwright.sync_api import sync_playwright

    out = {"ready_ms": [], "frame_ms": [], "full_ms": [], "text_ms": [], "thumb_ms": [], "outside": []}
    base = report.resolve().parent.as_uri() + "/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + renderer_args)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("request", lambda r: r.url.startswith(base) or r.url.startswith("data:") or out["outside"].append(r.url))
            page.goto(report.resolve().as_uri())
            _wait(page, "window.morphospaceReady === true")
            out["ready_ms"].append(page.evaluate("window.morphospaceReadyAt"))
            out["renderer"] = page.evaluate("morphospaceExplorer.renderer()")
            out["points"] = page.evaluate("morphospaceExplorer.pointCount()")
            page.evaluate("document.getElementById('ex-stage').scrollIntoView({block: 'center', behavior: 'instant'})")
            times = page.evaluate(WHEEL_JS)
            out["frame_ms"].extend(times[5:])  # the first frames include shader / buffer warm-up
            times = page.evaluate(FRAMES_JS)
            out["full_ms"].extend(times[5:])
            # hover: move onto points spread over the map (and over the shards), time the tooltip and thumbnail
            page.evaluate(HOVER_WATCH_JS)
            n = out["points"]
            for i in range(n // 20, n, max(1, n // 10)):
                pos = page.evaluate(f"morphospaceExplorer.screenPosition({i})")
                if page.evaluate(f"morphospaceExplorer.pick({pos['x']}, {pos['y']})") != i:
                    continue
                page.mouse.move(pos["x"] + 30, pos["y"] + 30)
                t = page.evaluate("performance.now()")
                page.mouse.move(pos["x"], pos["y"])
                got = _wait(page, f"window.__hover['text{i}'] !== undefined && window.__hover['thumb{i}'] !== undefined"
                            f" && [window.__hover['text{i}'], window.__hover['thumb{i}']]", 60)
                out["text_ms"].append(got[0] - t)
                out["thumb_ms"].append(got[1] - t)
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            page.close()
        browser.close()
    return out


def interactions(report: Path) -> dict:
    """Time "more like this", a box over the whole map, a lasso and the search box, once each, in a fresh page.

    Parameters
    ----------
    report : Path
        ``report.html``.

    Returns
    -------
    dict
        Milliseconds (``click_ms``: click to the neighbours' thumbnails shown;
        ``box_ms``: box over the whole map to the selection counted;
        ``lasso_ms``; ``search_ms``: typing an id to its hit listed, every id
        loaded first beside the page) and what they gave (``neighbours``,
        ``box``, ``lasso``).
    """
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(report.resolve().as_uri())
        _wait(page, "window.morphospaceReady === true")
        page.evaluate("document.getElementById('ex-stage').scrollIntoView({block: 'center', behavior: 'instant'})")
        n = page.evaluate("morphospaceExplorer.total()")
        for i in range(n // 3, n, max(1, n // 50)):
            pos = page.evaluate(f"morphospaceExplorer.screenPosition({i})")
            if page.evaluate(f"morphospaceExplorer.pick({pos['x']}, {pos['y']})") == i:
                break
        t = page.evaluate("performance.now()")
        page.mouse.click(pos["x"], pos["y"])
        _wait(page, f"morphospaceExplorer.focused() === {i} && [...document.querySelectorAll('#ex-nn .img')]"
                    ".every(e => e.getAttribute('data-thumb') !== '')", 60)
        out["click_ms"] = page.evaluate("performance.now()") - t
        out["neighbours"] = page.evaluate("document.querySelectorAll('#ex-nn .thumb').length")
        box = page.locator("#ex-overlay").bounding_box()
        page.keyboard.press("Escape")
        page.click(".ex-modes button[data-mode=box]")
        page.mouse.move(box["x"] + 12, box["y"] + 12)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 12, box["y"] + box["height"] - 12, steps=4)
        t = page.evaluate("performance.now()")
        page.mouse.up()
        out["box"] = page.evaluate("morphospaceExplorer.selection().length")
        out["box_ms"] = page.evaluate("performance.now()") - t
        page.click("#ex-clear")
        page.click(".ex-modes button[data-mode=lasso]")
        x0, y0 = box["x"] + 12, box["y"] + 12
        x1, y1 = box["x"] + box["width"] - 12, box["y"] + box["height"] - 12
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y0, steps=6)
        page.mouse.move(x0, y1, steps=6)
        page.mouse.move(x0, y0 + 5, steps=6)
        t = page.evaluate("performance.now()")
        page.mouse.up()
        out["lasso"] = page.evaluate("morphospaceExplorer.selection().length")
        out["lasso_ms"] = page.evaluate("performance.now()") - t
        page.keyboard.press("Escape")
        target = "G%06d" % (n - 7)
        t = page.evaluate("performance.now()")
        page.fill("#ex-search", target)
        _wait(page, f"document.querySelector('#ex-search-hits .ex-hit') !== null && "
                    f"document.querySelector('#ex-search-hits .ex-hit').getAttribute('data-index') === '{n - 7}'", 120)
        out["search_ms"] = page.evaluate("performance.now()") - t
        if errors:
            raise RuntimeError(f"page errors: {errors}")
        browser.close()
    return out


def summarise(values: list[float]) -> str:
    """Median and 95th percentile of timings.

    Parameters
    ----------
    values : list of float
        Milliseconds.

    Returns
    -------
    str
        ``"-"`` when there is none.
    """
    if not values:
        return "-"
    v = sorted(values)
    p95 = v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]
    return f"median {statistics.median(v):.1f} ms, p95 {p95:.1f} ms (n={len(v)})"


def build(path: Path) -> dict:
    """Build the report of the run at ``path`` in this process; its time and this process's peak RSS.

    Parameters
    ----------
    path : Path
        The run directory.

    Returns
    -------
    dict
        ``seconds``, ``peak_rss_mb`` and ``report`` (the page's path).
    """
    from morphospace.config import Config
    from morphospace.progress import set_quiet
    from morphospace.report import build_report

    set_quiet(True)
    t0 = time.perf_counter()
    report = build_report(path, Config())
    return {"seconds": time.perf_counter() - t0, "report": str(report), "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``ru_maxrss`` would
    carry over the peak of the process that forked this one (Linux keeps it
    across ``exec``), i.e. the fake run's.

    Returns
    -------
    float
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(n: int, base: Path, size: int) -> None:
    """Make (or reuse) a fake run, build its report and print its sizes and (with Chromium) its browser timings.

    Parameters
    ----------
    n : int
        Galaxies.
    base : Path
        Folder of the run (``base/run<n>``).
    size : int
        Side of the images.
    """
    import numpy as np

    from morphospace.config import Config
    from morphospace.progress import set_quiet
    from morphospace.run import RunDir
    from report_fakerun import make_fake_run

    set_quiet(True)
    path = base / f"run{n}"
    t0 = time.perf_counter()
    if (path / "vade_galaxies.parquet").exists() and np.load(RunDir(path).cube, mmap_mode="r").shape[0] == n:
        run, made = RunDir(path), "reused"
    else:
        run = make_fake_run(path, n=n, size=size, seed=1, chunk=5000)
        made = f"made in {time.perf_counter() - t0:.1f} s"
    # build_report in a process of its own: its peak RSS is its own, not the fake run's
    proc = subprocess.run([sys.executable, __file__, "--build-only", str(path)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    b = json.loads(proc.stdout.strip().splitlines()[-1])
    report = Path(b["report"])
    cfg = Config()
    html = report.stat().st_size
    side = folder_size(run.path / "report_files")
    n_files = sum(1 for _ in (run.path / "report_files").glob("*")) if (run.path / "report_files").exists() else 0
    figs = sum(p.stat().st_size for p in (run.path / "figures").glob("report_*.png"))
    cube = np.load(run.cube, mmap_mode="r").shape
    beside = n > cfg.report.inline_points
    tile = min(cfg.report.thumb_size, cfg.report.large_thumb_size) if beside else cfg.report.thumb_size
    print(f"\n== {n:,} galaxies, cube {'x'.join(map(str, cube))} (fake run {made})")
    print(f"build_report: {b['seconds']:.1f} s, peak RSS {b['peak_rss_mb']:.0f} MB (map thumbnails {tile} px "
          f"{cfg.report.thumb_format} q{cfg.report.thumb_quality}; explorer data "
          f"{'beside the page' if beside else 'inside the page'})")
    print(f"report.html: {mb(html)}; report_files/: {mb(side)} in {n_files} files; page + files: {mb(html + side)}; "
          f"report figures (PNG, also inside the page): {mb(figs)}")
    if not CHROMIUM.exists():
        print("browser: skipped (no /usr/bin/chromium; run .ci/install-browser.sh)")
        return
    modes = [("WebGL (SwiftShader)", [])]
    if n <= 20000:  # the fallback draws every point with Canvas 2D: measured where it is meant to cope
        modes.append(("Canvas 2D (WebGL disabled)", ["--disable-3d-apis", "--disable-webgl"]))
    for label, extra in modes:
        t = browser_timings(report, extra)
        print(f"browser, {label}: renderer={t['renderer']}, points drawn={t['points']:,}, "
              f"requests outside the run folder: {len(t['outside'])}")
        print(f"  navigation start -> interactive: {summarise(t['ready_ms'])}")
        print(f"  frame interval, wheel zoom:      {summarise(t['frame_ms'])}")
        print(f"  frame interval, full redraws:    {summarise(t['full_ms'])}")
        print(f"  mouse move -> tooltip text:      {summarise(t['text_ms'])}")
        print(f"  mouse move -> thumbnail shown:   {summarise(t['thumb_ms'])}")
    if CHROMIUM.exists():
        a = interactions(report)
        print(f"  click -> {a['neighbours']} neighbours with thumbnails: {a['click_ms']:.0f} ms; box over the map -> "
              f"{a['box']:,} selected: {a['box_ms']:.0f} ms; lasso -> {a['lasso']:,}: {a['lasso_ms']:.0f} ms; "
              f"search an id -> its hit: {a['search_ms']:.0f} ms")


def main() -> None:
    """Run the benchmark from the command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3359, 20000])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="one run of 500 galaxies")
    ap.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them (and reuse them)")
    ap.add_argument("--build-only", type=Path, default=None, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.build_only:
        print(json.dumps(build(args.build_only)))
        return
    sizes = [500] if args.quick else args.sizes
    print(f"report benchmark: sizes {sizes}, {args.image_size} px cubes, chromium {'found' if CHROMIUM.exists() else 'absent'}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            run_size(n, args.keep, args.image_size)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            for n in sizes:
                run_size(n, Path(tmp), args.image_size)


if __name__ == "__main__":
    from _entry import run

    run(main)
