"""Build offline/dvc_plots.html: DVC's plots page with Vega inlined, so it renders with no network.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, which an
air-gapped machine cannot reach. This template has no {scripts} placeholder
(so DVC adds no CDN tags) and carries the three libraries inline, taken from
the npm registry at pinned versions. Rebuild (needs npm and the registry):

    python offline/build_dvc_template.py
"""
import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
OUT = Path(__file__).with_name("dvc_plots.html")


def main():
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        subprocess.run(["npm", "pack", "-q", *specs], cwd=tmp, check=True, capture_output=True)
        for name, version in PACKAGES.items():
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as archive:
                code = archive.extractfile(f"package/build/{name}.min.js").read().decode()
            # "</script" inside the code would end the inline tag early
            code = code.replace("</script", "<\\/script")
            scripts.append(f"<script>/* {name}@{version} (npm), inlined for offline use */\n{code}\n</script>")
    page = ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{refresh_tag}\n<title>DVC Plot</title>\n"
            + "\n".join(scripts)
            + "\n<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
    OUT.write_text(page)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
