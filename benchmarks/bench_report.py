"""Benchmark of the report: its size, how long it takes to build, and how fast it is in a browser.

For fake runs of 3,359 galaxies (the size of the SDSS Galaxy Zoo 1 sample) and
20,000 galaxies (``report.max_points``), each with a 64 x 64 RGB cube, a
latent space, a t-SNE-like map, a soft clustering, an anomaly score and
comparison tables (``tests/report_fakerun.py``), it measures:

- the time of ``build_report`` and the size of ``report.html``, of the sprite
  sheets beside it (``report_files/``) and of the report's figures;
- in headless Chromium (``/usr/bin/chromium``), with WebGL (SwiftShader: on the
  CPU, so a lower bound of what a GPU gives) and with the Canvas 2D fallback:
  the time from navigation start to ``window.morphospaceReady`` (the map drawn
  and interactive), the frame interval while zooming (60 frames), and the time
  from a mouse move to the tooltip showing.

Usage::

    .venv/bin/python benchmarks/bench_report.py            # 3,359 and 20,000
    .venv/bin/python benchmarks/bench_report.py --quick    # 500 galaxies, a smoke test
    .venv/bin/python benchmarks/bench_report.py --sizes 3359 --keep /tmp/bench-report

Timings depend on the machine and its load; the script prints them with the
settings and writes only into a temporary directory (or ``--keep``).
"""

from __future__ import annotations

import argparse
import statistics
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
        (frame intervals while zooming), ``hover_ms`` (mouse move to tooltip),
        ``renderer`` and ``points`` (points drawn).

    Raises
    ------
    RuntimeError
        When the page logs an error.
    """
    from playwright.sync_api import sync_playwright

    out = {"ready_ms": [], "frame_ms": [], "hover_ms": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + renderer_args)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.resolve().as_uri())
            page.wait_for_function("window.morphospaceReady === true", timeout=120_000)
            out["ready_ms"].append(page.evaluate("window.morphospaceReadyAt"))
            out["renderer"] = page.evaluate("morphospaceExplorer.renderer()")
            out["points"] = page.evaluate("morphospaceExplorer.pointCount()")
            page.evaluate("document.getElementById('ex-stage').scrollIntoView({block: 'center', behavior: 'instant'})")
            times = page.evaluate(FRAMES_JS)
            out["frame_ms"].extend(times[5:])  # the first frames include shader / buffer warm-up
            # hover: move onto points, wait for the tooltip to name them
            n = out["points"]
            for i in range(0, n, max(1, n // 10)):
                pos = page.evaluate(f"morphospaceExplorer.screenPosition({i})")
                if page.evaluate(f"morphospaceExplorer.pick({pos['x']}, {pos['y']})") != i:
                    continue
                page.mouse.move(pos["x"] + 30, pos["y"] + 30)
                t = page.evaluate("performance.now()")
                page.mouse.move(pos["x"], pos["y"])
                page.wait_for_function(f"document.getElementById('ex-tooltip').getAttribute('data-index') === '{i}'"
                                       " && !document.getElementById('ex-tooltip').hidden")
                out["hover_ms"].append(page.evaluate("performance.now()") - t)
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            page.close()
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


def run_size(n: int, base: Path, size: int) -> None:
    """Make a fake run, build its report and print its sizes and (with Chromium) its browser timings.

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
    from morphospace.report import build_report
    from report_fakerun import make_fake_run

    set_quiet(True)
    path = base / f"run{n}"
    t0 = time.perf_counter()
    run = make_fake_run(path, n=n, size=size, seed=1)
    t_fake = time.perf_counter() - t0
    cfg = Config()
    t0 = time.perf_counter()
    report = build_report(run, cfg)
    t_build = time.perf_counter() - t0
    html = report.stat().st_size
    side = folder_size(run.path / "report_files")
    figs = sum(p.stat().st_size for p in (run.path / "figures").glob("report_*.png"))
    cube = np.load(run.cube, mmap_mode="r").shape
    print(f"\n== {n:,} galaxies, cube {'x'.join(map(str, cube))} (fake run made in {t_fake:.1f} s)")
    print(f"build_report: {t_build:.1f} s (thumbnails {cfg.report.thumb_size} px {cfg.report.thumb_format} "
          f"q{cfg.report.thumb_quality}, inline up to {cfg.report.inline_limit_mb} MB)")
    print(f"report.html: {mb(html)}; report_files/: {mb(side)}; page + files: {mb(html + side)}; "
          f"report figures (PNG, also inside the page): {mb(figs)}")
    if not CHROMIUM.exists():
        print("browser: skipped (no /usr/bin/chromium; run .ci/install-browser.sh)")
        return
    for label, extra in (("WebGL (SwiftShader)", []), ("Canvas 2D (WebGL disabled)", ["--disable-3d-apis", "--disable-webgl"])):
        t = browser_timings(report, extra)
        print(f"browser, {label}: renderer={t['renderer']}, points drawn={t['points']:,}")
        print(f"  navigation start -> interactive: {summarise(t['ready_ms'])}")
        print(f"  frame interval while zooming:    {summarise(t['frame_ms'])}")
        print(f"  mouse move -> tooltip:           {summarise(t['hover_ms'])}")


def main() -> None:
    """Run the benchmark from the command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3359, 20000])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="one run of 500 galaxies")
    ap.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them")
    args = ap.parse_args()
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
    main()
