"""Headless Chromium with the network off, for the offline-page tests."""
import shutil
import subprocess
import tempfile

import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic",
         # network off: every host name fails to resolve and any proxy use goes nowhere
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"]


def _run(*args):
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def rendered_dom(path):
    """The DOM after scripts ran (virtual time lets vega finish drawing)."""
    return _run("--virtual-time-budget=10000", "--dump-dom", path.resolve().as_uri()).stdout


def screenshot_ink(path, out_png):
    """Fraction of non-white pixels in a screenshot of the page."""
    from PIL import Image
    _run("--virtual-time-budget=5000", "--window-size=1200,2000", f"--screenshot={out_png}", path.resolve().as_uri())
    pixels = np.asarray(Image.open(out_png).convert("L"))
    return float((pixels < 240).mean())
