"""Make asv's published dashboard render offline: vendor its JavaScript/CSS from the npm registry.

asv 0.6's ``www/index.html`` (copied into ``html/`` by ``asv publish``) loads jQuery, flot and its plugins,
stupidtable, blueimp-md5 and bootstrap from CDNs (code.jquery.com, cdnjs, jsdelivr). Without network the
page shows asv's error page ("Can not determine continental origin of swallow"). This script, run after
every ``asv publish``:

1. finds every ``<script src="http...">`` / ``<link href="http...">`` in the published HTML files;
2. maps each URL to an npm package, version and file (the table ``RULES``; an unknown URL is an error, so
   an asv upgrade that adds a dependency is noticed, not silently left on the CDN);
3. fetches the package tarballs with ``npm pack`` (the npm registry, at build time; tarballs are cached in
   ``--cache``, default ``~/.cache/fastnn/asv-vendor``, so later runs need no network at all; ``--cache``
   may also point at a directory of tarballs brought in by hand);
4. copies the files into ``html/vendor/<package>@<version>/<path>`` (files a stylesheet refers to with
   ``url(...)``, e.g. bootstrap's glyphicon fonts, too) and rewrites the tags to load those copies (the
   ``integrity`` / ``crossorigin`` / ``referrerpolicy`` attributes go: they name the CDN's bytes);
5. writes ``html/vendor/VENDORED.md``: every URL, the file that replaced it, its sha256, and whether it
   is byte-identical to what the CDN serves (checked against the page's own ``integrity`` hash).

Nothing is downloaded when the page is viewed. Exit status 0 on success, 1 on an unknown URL or a file
that could not be fetched.

    cd benchmarks && python -m asv publish && python vendor_asv_js.py      # html/ in place
    python -m benchmarks.vendor_asv_js --html benchmarks/html             # from the repository root
"""
import argparse
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "fastnn", "asv-vendor")

#: (URL pattern, npm "package@version", file inside the package). Groups of the pattern fill {1}, {2}, ...
#: Versions follow the CDN URL, except stupidtable: npm has no 1.0.x of stupid-table-plugin, so its
#: oldest published release, 1.1.3 (same ``$.fn.stupidtable`` API), stands in.
RULES = [
    (r"https://code\.jquery\.com/jquery-([\d.]+)\.min\.js", "jquery@{1}", "dist/jquery.min.js"),
    # flot 0.8.3 on npm ships unminified files only; same code as cdnjs's .min.js
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/flot/([\d.]+)/(jquery\.flot(?:\.\w+)?)\.min\.js",
     "flot@{1}", "{2}.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/stupidtable/[\d.]+/stupidtable(\.min)?\.js",
     "stupid-table-plugin@1.1.3", "stupidtable{1}.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/blueimp-md5/([\d.]+)/(js/md5(?:\.min)?\.js)",
     "blueimp-md5@{1}", "{2}"),
    # jsdelivr's /npm/ URLs are npm packages served verbatim
    (r"https://cdn\.jsdelivr\.net/npm/((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)", "{1}@{2}", "{3}"),
]

TAG = re.compile(r"<(script|link)\b[^>]*?\b(src|href)=\"(https?://[^\"]+)\"[^>]*>", re.S)
DROP_ATTRS = re.compile(r"\s+(integrity|crossorigin|referrerpolicy)=\"[^\"]*\"")
INTEGRITY = re.compile(r"\bintegrity=\"([^\"]+)\"")
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")?#]+)[^)]*\)")


class VendorError(Exception):
    pass


def resolve(url):
    """(npm spec, path inside the package) for a CDN URL; VendorError when no rule knows it."""
    for pattern, spec, path in RULES:
        m = re.fullmatch(pattern, url)
        if m:
            groups = {str(i): (g or "") for i, g in enumerate(m.groups(), 1)}
            fill = lambda s: re.sub(r"\{(\d+)\}", lambda k: groups[k.group(1)], s)   # noqa: E731
            return fill(spec), fill(path)
    raise VendorError(f"no rule maps {url} to an npm package: add one to RULES in {__file__}")


def tarball_name(spec):
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch_tarball(spec, cache):
    """Path of the package's tarball in ``cache``, fetched with ``npm pack`` when it is not there yet."""
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, tarball_name(spec))
    if os.path.exists(path):
        return path
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(f"{spec}: not in {cache} and npm is not installed (apt-get install npm, "
                          f"or put {tarball_name(spec)} from the npm registry there)")
    res = subprocess.run([npm, "pack", spec, "--silent", "--pack-destination", cache],
                         capture_output=True, text=True, timeout=300)
    if res.returncode or not os.path.exists(path):
        raise VendorError(f"npm pack {spec} failed:\n{res.stdout}{res.stderr}")
    return path


def extract(tgz, member_path, dest):
    """Copy ``package/<member_path>`` of an npm tarball to ``dest``; its bytes."""
    with tarfile.open(tgz) as tar:
        try:
            member = tar.getmember("package/" + member_path)
        except KeyError:
            raise VendorError(f"{os.path.basename(tgz)} has no {member_path}") from None
        data = tar.extractfile(member).read()
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(data)
    return data


def integrity_matches(data, integrity):
    """True/False when the tag carries an SRI hash (the CDN file's), None when it has none."""
    if not integrity:
        return None
    for item in integrity.split():
        algo, _, b64 = item.partition("-")
        if algo in ("sha256", "sha384", "sha512"):
            return base64.b64encode(hashlib.new(algo, data).digest()).decode() == b64
    return None


def vendor_css_assets(tgz, css_path, css_bytes, vendor_root):
    """Files a vendored stylesheet loads with relative ``url(...)`` (fonts, images), from the same package."""
    copied = []
    for ref in sorted(set(CSS_URL.findall(css_bytes.decode("utf-8", "replace")))):
        if ref.startswith(("data:", "http:", "https:", "/")):
            continue
        member = os.path.normpath(os.path.join(os.path.dirname(css_path), ref)).replace(os.sep, "/")
        extract(tgz, member, os.path.join(vendor_root, member))
        copied.append(member)
    return copied


def vendor(html_dir, cache=DEFAULT_CACHE, log=print):
    """Vendor and rewrite every HTML file of ``html_dir``; the list of (url, local path, sha256, same)."""
    if not os.path.exists(os.path.join(html_dir, "index.html")):
        raise VendorError(f"{html_dir}/index.html does not exist: run `asv publish` first")
    records = []
    done = {}
    for fname in sorted(os.listdir(html_dir)):
        if not fname.endswith(".html"):
            continue
        page_path = os.path.join(html_dir, fname)
        with open(page_path, encoding="utf-8") as f:
            page = f.read()

        def replace(m):
            tag, attr, url = m.group(0), m.group(2), m.group(3)
            if url not in done:
                spec, path = resolve(url)
                tgz = fetch_tarball(spec, cache)
                rel = f"vendor/{spec.replace('/', '__')}/{path}"
                data = extract(tgz, path, os.path.join(html_dir, rel))
                extra = []
                if path.endswith(".css"):
                    extra = vendor_css_assets(tgz, path, data, os.path.join(html_dir, f"vendor/{spec.replace('/', '__')}"))
                im = INTEGRITY.search(tag)
                same = integrity_matches(data, im.group(1) if im else None)
                done[url] = rel
                records.append((url, rel, hashlib.sha256(data).hexdigest(), same, extra))
                verdict = ("identical to the CDN's file" if same else
                           "not byte-identical to the CDN's file: npm ships it unminified or another release"
                           if same is False else "no hash to compare")
                log(f"  {url}\n    -> {rel}  ({spec}; {verdict}"
                    + (f"; + {len(extra)} file(s) it refers to" if extra else "") + ")")
            new = tag.replace(f'{attr}="{url}"', f'{attr}="{done[url]}"')
            return DROP_ATTRS.sub("", new)

        new_page = TAG.sub(replace, page)
        if new_page != page:
            with open(page_path, "w", encoding="utf-8") as f:
                f.write(new_page)
        left = re.findall(r"(?:src|href)=\"(https?://(?!github\.com)[^\"]+\.(?:js|css))\"", new_page)
        if left:
            raise VendorError(f"{fname} still loads {left}")
    if records:
        with open(os.path.join(html_dir, "vendor", "VENDORED.md"), "w", encoding="utf-8") as f:
            f.write("# Files vendored from the npm registry by benchmarks/vendor_asv_js.py\n\n"
                    "| CDN URL asv uses | local copy | sha256 | identical to the CDN's bytes |\n|---|---|---|---|\n")
            for url, rel, sha, same, extra in records:
                f.write(f"| {url} | {rel}{' (+ ' + ', '.join(extra) + ')' if extra else ''} | {sha[:16]}… | "
                        f"{'yes' if same else 'no' if same is False else 'n/a'} |\n")
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default=os.path.join(HERE, "html"), help="asv's html_dir (default: benchmarks/html)")
    ap.add_argument("--cache", default=DEFAULT_CACHE, help="npm tarball cache (default: %(default)s)")
    args = ap.parse_args(argv)
    print(f"vendoring asv's CDN dependencies into {os.path.join(args.html, 'vendor')} (npm tarballs: {args.cache})")
    try:
        records = vendor(args.html, args.cache)
    except VendorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(records)} file(s) vendored; the published page loads nothing from the network"
          if records else "nothing to vendor (already rewritten)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
