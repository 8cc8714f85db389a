"""The asv dashboard tools: benchmarks/vendor_asv_js.py (offline, on fake npm tarballs) and, when Chromium
and asv are installed, the whole chain on a one-benchmark project: asv run, asv publish, vendoring, and
benchmarks/dashboard_check.py in headless Chromium. Skips say why (no Chromium, no asv, no npm registry)."""
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from benchmarks import dashboard_check, vendor_asv_js

ROOT = Path(__file__).resolve().parent.parent

PAGE = """<html><head>
<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="sha256-AAAA" crossorigin="anonymous" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js" integrity="sha512-BBBB" crossorigin="anonymous" referrerpolicy="no-referrer" onerror="js_load_failure()"></script>
<script src="https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js"></script>
<script src="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js"></script>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css" integrity="sha256-CCCC" crossorigin="anonymous">
<a href="https://github.com/airspeed-velocity/asv/">asv</a>
</head></html>"""


def _tarball(cache, spec, files):
    name = vendor_asv_js.tarball_name(spec)
    with tarfile.open(cache / name, "w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo("package/" + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_rules_map_every_cdn_url():
    assert vendor_asv_js.resolve("https://code.jquery.com/jquery-3.3.1.min.js") == ("jquery@3.3.1", "dist/jquery.min.js")
    assert vendor_asv_js.resolve("https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js") == \
        ("flot@0.8.3", "jquery.flot.js")
    assert vendor_asv_js.resolve("https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js") == \
        ("flot-orderbars@1.0.0", "js/jquery.flot.orderBars.js")
    with pytest.raises(vendor_asv_js.VendorError, match="no rule"):
        vendor_asv_js.resolve("https://example.com/some.js")


def test_rules_cover_the_installed_asv():
    """Every CDN URL of the installed asv's page has a rule (an asv upgrade that adds one fails here)."""
    asv = pytest.importorskip("asv", reason="asv is not installed (pip install -e '.[bench]')")
    www = Path(asv.__file__).parent / "www"
    urls = [u for f in www.glob("*.html") for u in vendor_asv_js.TAG.findall(f.read_text())]
    assert urls, "asv's page loads nothing from a CDN any more: vendor_asv_js.py may be unnecessary"
    for _, _, url in urls:
        vendor_asv_js.resolve(url)


def test_vendor_rewrites_the_page_to_local_copies(tmp_path):
    html, cache = tmp_path / "html", tmp_path / "cache"
    html.mkdir(), cache.mkdir()
    (html / "index.html").write_text(PAGE)
    (html / "error.html").write_text("<html>no CDN here</html>")
    jquery = b"/* jquery */"
    _tarball(cache, "jquery@3.3.1", {"dist/jquery.min.js": jquery})
    _tarball(cache, "flot@0.8.3", {"jquery.flot.time.js": b"/* flot time */"})
    _tarball(cache, "stupid-table-plugin@1.1.3", {"stupidtable.min.js": b"/* st */"})
    _tarball(cache, "bootstrap@3.1.1", {
        "dist/js/bootstrap.min.js": b"/* bs */",
        "dist/css/bootstrap.min.css": b"@font-face{src:url('../fonts/g.eot');src:url(../fonts/g.eot?#iefix) format('x')}",
        "dist/fonts/g.eot": b"font"})
    records = vendor_asv_js.vendor(str(html), str(cache), log=lambda *a: None)
    assert len(records) == 5
    page = (html / "index.html").read_text()
    assert "cdn" not in page and "code.jquery.com" not in page and "integrity" not in page and "crossorigin" not in page
    assert 'src="vendor/jquery@3.3.1/dist/jquery.min.js" onerror="js_load_failure()"' in page
    assert 'href="https://github.com/airspeed-velocity/asv/"' in page           # links stay
    assert (html / "vendor/jquery@3.3.1/dist/jquery.min.js").read_bytes() == jquery
    assert (html / "vendor/bootstrap@3.1.1/dist/fonts/g.eot").read_bytes() == b"font"   # what the CSS loads
    assert "| https://code.jquery.com/jquery-3.3.1.min.js | vendor/jquery@3.3.1/dist/jquery.min.js |" in \
        (html / "vendor/VENDORED.md").read_text()
    same = {url: s for url, _, _, s, _ in records}
    assert same["https://code.jquery.com/jquery-3.3.1.min.js"] is False     # the fake's bytes are not the CDN's
    assert same["https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js"] is None
    assert vendor_asv_js.vendor(str(html), str(cache), log=lambda *a: None) == []     # idempotent


def test_vendor_refuses_a_package_it_cannot_get(tmp_path, monkeypatch):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(PAGE)
    monkeypatch.setattr(vendor_asv_js.shutil, "which", lambda name: None)       # no npm
    with pytest.raises(vendor_asv_js.VendorError, match="npm is not installed"):
        vendor_asv_js.vendor(str(html), str(tmp_path / "empty-cache"), log=lambda *a: None)


def test_integrity_check():
    import base64
    import hashlib
    data = b"x"
    good = "sha256-" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert vendor_asv_js.integrity_matches(data, good) is True
    assert vendor_asv_js.integrity_matches(b"y", good) is False
    assert vendor_asv_js.integrity_matches(data, None) is None


def test_dashboard_check_static_part_and_exit_codes(tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text(PAGE)
    (failure,) = dashboard_check.static_failures(str(tmp_path))
    assert "index.html loads 5 file(s) from the network" in failure and "vendor_asv_js.py" in failure
    assert dashboard_check.main(["--html", str(tmp_path / "nothing"), "--chromium", sys.executable]) == 2
    monkeypatch.setattr(dashboard_check.shutil, "which", lambda name: None)
    assert dashboard_check.find_chromium() is None
    assert dashboard_check.main(["--html", str(tmp_path)]) == 2          # no browser: exit 2, not a pass


BENCH = '''
class Tiny:
    def track_value(self):
        return 42.0
    track_value.unit = "things"


class NeedsSomethingOptional:
    def setup(self):
        raise NotImplementedError("an optional package is not installed")

    def track_value(self):
        return 1.0
'''


def test_dashboard_renders_offline_in_chromium(tmp_path):
    """asv run + publish + vendor + dashboard_check on a tiny project against this repository (one benchmark
with a value, one that skips with a reason)."""
    browser = dashboard_check.find_chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): dashboard check not run")
    pytest.importorskip("asv", reason="asv is not installed (pip install -e '.[bench]')")
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if branch.returncode or branch.stdout.strip() == "HEAD":
        pytest.skip("not on a git branch: asv publish graphs the commits of named branches")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "bench_tiny.py").write_text(BENCH)
    (tmp_path / "asv.conf.json").write_text(
        '{"version": 1, "project": "fastnn", "repo": "%s", "branches": ["%s"], "environment_type": "existing",'
        ' "benchmark_dir": "benchmarks", "results_dir": "results", "html_dir": "html", "env_dir": "env"}'
        % (ROOT, branch.stdout.strip()))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    asv = [sys.executable, "-m", "asv"]
    for cmd in (["machine", "--yes", "--machine", "smoke"],
                ["run", "--python=same", "--quick", "--machine", "smoke", "--set-commit-hash", head],
                ["publish"]):
        res = subprocess.run(asv + cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, HOME=str(tmp_path)))
        assert res.returncode == 0, f"asv {cmd[0]}:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        if cmd[0] == "run":     # NotImplementedError in setup: skipped (n/a), not failed, and asv exits 0
            assert "NeedsSomethingOptional.track_value" in res.stdout and "n/a" in res.stdout
            assert "failed" not in res.stdout
    try:
        vendor_asv_js.vendor(str(tmp_path / "html"), vendor_asv_js.DEFAULT_CACHE, log=lambda *a: None)
    except vendor_asv_js.VendorError as e:
        pytest.skip(f"asv's JavaScript could not be vendored (no npm registry here?): {e}")
    shot = tmp_path / "check.png"
    failures = dashboard_check.check(str(tmp_path / "html"), browser, "bench_tiny.Tiny.track_value",
                                     min_points=1, screenshot=str(shot), log=lambda *a: None)
    assert failures == []
    assert shot.stat().st_size > 1000
    shutil.rmtree(tmp_path / "env", ignore_errors=True)
