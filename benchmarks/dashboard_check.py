"""Open the published asv dashboard in real headless Chromium, offline, and check that graphs rendered.

    python -m benchmarks.dashboard_check                                   # benchmarks/html, any benchmark
    python -m benchmarks.dashboard_check --min-points 10 --screenshot /tmp/dashboard.png \
        --benchmark bench_compile.CompileTime.track_import_s

What it does (exit status 0 = the dashboard works; 1 = it does not; 2 = no Chromium or nothing published):

1. static: ``html/index.html`` exists and no published HTML file still loads a script or stylesheet from
   the network (``vendor_asv_js.py`` rewrites them to local copies);
2. serves ``html/`` on 127.0.0.1 (Python's http.server: asv's page fetches its JSON with XHR, which
   browsers refuse over file://, so a user views it through ``asv preview`` or any web server too);
3. runs Chromium (``chromium``, Debian's package) headless with every host name but 127.0.0.1 mapped to
   "not found" (``--host-resolver-rules``): a page that still needs a CDN fails here even on a machine with
   network;
4. the benchmark grid (``index.html``): asserts no error page ("Can not determine continental origin of
   swallow") and no "Error fetching content" dialog, and that flot drew graphs (``canvas.flot-base``);
5. one benchmark's page (``index.html#<benchmark>``, by default the one with the most recorded commits):
   the main graph has a flot canvas and tick labels (its axes), not "No graphs to load"; the benchmark's
   graph JSON has at least ``--min-points`` commits with a value (``--min-points 10`` checks a history);
6. writes a screenshot PNG of that page (``--screenshot``, default ``html/dashboard-check.png``), and of
   the grid next to it (``*-grid.png``).

Chromium's DOM dump waits ``--budget`` ms of virtual time (network waits pause it) for the page's scripts.
"""
import argparse
import functools
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
SWALLOW = "continental origin of swallow"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REMOTE_ASSET = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")


def find_chromium(explicit=None):
    if explicit:
        return explicit if shutil.which(explicit) else None
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests = None

    def log_message(self, fmt, *args):
        if self.requests is not None:
            self.requests.append(self.path)


def serve(directory):
    """(server, base URL, list of requested paths): a web server for ``directory`` on a free local port."""
    requests = []
    handler = functools.partial(type("Handler", (_Quiet,), {"requests": requests}), directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", requests


def chromium(browser, url, profile, *, dump_dom=False, screenshot=None, budget_ms=20000, size=(1400, 1000)):
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
            # offline: only the local server resolves
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}"]
    if dump_dom:
        args.append("--dump-dom")
    if screenshot:
        args.append(f"--screenshot={screenshot}")
    res = subprocess.run(args + [url], capture_output=True, text=True, timeout=180)
    if res.returncode:
        raise RuntimeError(f"chromium exited {res.returncode}: {res.stderr[-2000:]}")
    return res.stdout


def graph_points(html_dir, benchmark):
    """Commits with a value, over every parameter/environment graph file of ``benchmark``."""
    best = 0
    for path in glob.glob(os.path.join(html_dir, "graphs", "**", f"{benchmark}.json"), recursive=True):
        with open(path) as f:
            data = json.load(f)
        def has_value(v):
            return v is not None and (not isinstance(v, list) or any(x is not None for x in v))
        best = max(best, sum(1 for _, v in data if has_value(v)))
    return best


def static_failures(html_dir):
    """Published HTML files that still load a script or stylesheet from the network."""
    failures = []
    for page in sorted(glob.glob(os.path.join(html_dir, "*.html"))):
        with open(page, encoding="utf-8") as f:
            remote = [u for u in REMOTE_ASSET.findall(f.read()) if not u.startswith("https://github.com")]
        if remote:
            failures.append(f"{os.path.basename(page)} loads {len(remote)} file(s) from the network (e.g. "
                            f"{remote[0]}): run benchmarks/vendor_asv_js.py after asv publish")
    return failures


def check(html_dir, browser, benchmark=None, min_points=1, screenshot=None, budget_ms=20000, log=print):
    """A list of failures (empty: the dashboard works)."""
    failures = static_failures(html_dir)
    with open(os.path.join(html_dir, "index.json")) as f:
        index = json.load(f)
    names = sorted(index.get("benchmarks", {}))
    if not names:
        return failures + ["index.json lists no benchmarks"]
    points = {name: graph_points(html_dir, name) for name in names}
    if benchmark is None:
        benchmark = max(names, key=lambda n: (points[n], n))
    elif benchmark not in points:
        return failures + [f"{benchmark} is not in the published index ({len(names)} benchmarks)"]
    log(f"published: {len(names)} benchmarks, {len(index.get('revision_to_hash', {}))} commits; "
        f"{benchmark}: {points[benchmark]} commit(s) with a value")
    if points[benchmark] < min_points:
        failures.append(f"{benchmark} has {points[benchmark]} commit(s) with a value, fewer than --min-points {min_points}")

    screenshot = screenshot or os.path.join(html_dir, "dashboard-check.png")
    server, base, requests = serve(html_dir)
    profile = tempfile.mkdtemp(prefix="fastnn-dashboard-check-")
    try:
        grid = chromium(browser, f"{base}/index.html", profile, dump_dom=True, budget_ms=budget_ms)
        graph_url = f"{base}/index.html#{benchmark}"
        page = chromium(browser, graph_url, profile, dump_dom=True, budget_ms=budget_ms)
        chromium(browser, graph_url, profile, screenshot=screenshot, budget_ms=budget_ms)
        chromium(browser, f"{base}/index.html", profile, screenshot=screenshot.replace(".png", "-grid.png"),
                 budget_ms=budget_ms)
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)

    for name, dom in (("grid", grid), (f"graph of {benchmark}", page)):
        if SWALLOW in dom:
            failures.append(f"{name}: asv's error page ('Can not determine {SWALLOW}'): a script did not load")
        m = re.search(r'id="error-message"[^>]*>([^<]+)<', dom)
        if m and m.group(1).strip():
            failures.append(f"{name}: error dialog: {m.group(1).strip()}")
    n_grid = grid.count('class="flot-base"')
    if n_grid == 0:
        failures.append("grid: no graph drawn (no flot canvas)")
    main = page.split('id="main-graph"', 1)[1] if 'id="main-graph"' in page else ""
    if "flot-base" not in main:
        failures.append(f"graph of {benchmark}: no main graph drawn")
    if "No graphs to load" in page or "No data for this combination" in page:
        failures.append(f"graph of {benchmark}: asv says there is nothing to plot")
    n_ticks = main.count("flot-tick-label")
    log(f"grid: {n_grid} graph(s) drawn; {benchmark}: main graph {'drawn' if 'flot-base' in main else 'MISSING'}, "
        f"{n_ticks} axis tick labels; {len(requests)} requests, all to the local server")
    log(f"screenshot: {screenshot} (grid: {screenshot.replace('.png', '-grid.png')})")
    if not os.path.exists(screenshot) or os.path.getsize(screenshot) < 1000:
        failures.append(f"no screenshot written at {screenshot}")
    return failures


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default=os.path.join(HERE, "html"), help="asv's html_dir (default: benchmarks/html)")
    ap.add_argument("--benchmark", help="the benchmark whose page is checked (default: the most commits)")
    ap.add_argument("--min-points", type=int, default=1, help="commits with a value that graph must have")
    ap.add_argument("--screenshot", help="PNG path (default: <html>/dashboard-check.png)")
    ap.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    ap.add_argument("--budget", type=int, default=20000, help="virtual-time budget per page load, ms")
    args = ap.parse_args(argv)
    browser = find_chromium(args.chromium)
    if browser is None:
        print("dashboard check: no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(args.html, "index.json")):
        print(f"dashboard check: nothing published in {args.html} (run asv publish)", file=sys.stderr)
        return 2
    failures = check(args.html, browser, args.benchmark, args.min_points, args.screenshot, args.budget)
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    print("dashboard check: " + ("OK" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
