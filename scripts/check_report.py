"""Open the HTML report in headless Chromium: screenshot it and check that every picture decodes.

    python scripts/check_report.py [results/report/report.html] [--screenshot results/report/screenshot.png]

The page sets ``<body data-broken-images="N">`` after its load event (N = <img> elements that did not
decode, naturalWidth 0); this script dumps the DOM after load and fails unless N is 0 and there is at
least one picture. Chromium on Debian/Ubuntu: ``apt-get install -y chromium``.
Exit status: 0 ok, 1 broken pictures or no verdict in the DOM, 2 no browser / no report.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--disable-dev-shm-usage",
         "--no-first-run", "--virtual-time-budget=10000")


def find_browser() -> str | None:
    for name in (os.environ.get("CHROMIUM"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="check-report-") as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], check=False, capture_output=True,
                              text=True, timeout=timeout)


def screenshot(browser: str, page: Path, out: Path, size: str = "1400,1000", timeout: float = 120) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _run(browser, [f"--screenshot={out.resolve()}", f"--window-size={size}", page.resolve().as_uri()],
                timeout)
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"no screenshot written (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return out


def dump_dom(browser: str, page: Path, timeout: float = 120) -> str:
    """The DOM Chromium has after the page's load event (its scripts have run)."""
    done = _run(browser, ["--dump-dom", page.resolve().as_uri()], timeout)
    if "<body" not in done.stdout:
        raise RuntimeError(f"no DOM dumped (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def body_attribute(dom: str, name: str) -> str | None:
    body = re.search(r"<body[^>]*>", dom)
    value = re.search(rf'\b{re.escape(name)}="([^"]*)"', body.group(0)) if body else None
    return value.group(1) if value else None


def broken_images(browser: str, page: Path, timeout: float = 120) -> tuple[int, int]:
    """(broken pictures, all pictures) in the DOM Chromium has after the page's load event."""
    dom = dump_dom(browser, page, timeout)
    verdict = body_attribute(dom, "data-broken-images")
    if verdict is None:
        raise RuntimeError("the page set no data-broken-images on <body>")
    return int(verdict), len(re.findall(r"<img\b", dom))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", default="results/report/report.html")
    parser.add_argument("--screenshot", default=None, help="PNG to write (default: next to the page)")
    parser.add_argument("--window-size", default="1400,1000")
    args = parser.parse_args(argv)
    page = Path(args.page)
    if not page.is_file():
        print(f"error: no report at {page}; run `harness report` first", file=sys.stderr)
        return 2
    browser = find_browser()
    if browser is None:
        print("error: no Chromium found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    shot = screenshot(browser, page, Path(args.screenshot) if args.screenshot else page.parent / "screenshot.png",
                      args.window_size)
    broken, total = broken_images(browser, page)
    print(f"{browser}: screenshot {shot}; {total} pictures, {broken} broken")
    return 0 if broken == 0 and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
