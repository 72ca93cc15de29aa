"""ptracker's build; a wheel also carries the npm files it serves (ptracker/assets.py).

Everything else is declared in pyproject.toml. The files are copied from node_modules
(`npm ci`) into the build, never into the repository; an editable install copies
nothing, since a checkout serves them from node_modules.
"""

import runpy
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import FileError

ROOT = Path(__file__).resolve().parent


def copy_npm_assets(vendor: Path) -> None:
    assets = runpy.run_path(str(ROOT / "ptracker" / "assets.py"))["NPM_ASSETS"]
    shutil.rmtree(vendor, ignore_errors=True)  # nothing left from an earlier build
    for package, (folder, names) in assets.items():
        source = ROOT / "node_modules" / package
        missing = [name for name in names if not (source / folder / name).is_file()]
        if missing:
            raise FileError(
                f"{source / folder} has no {', '.join(missing)}: a wheel carries ptracker's "
                f"front-end libraries from node_modules, so run `npm ci` in {ROOT} first "
                "(and build from a repository checkout, not from an sdist)"
            )
        served = [source / folder / name for name in names]
        # Licenses travel with the code: the package's own, and a bundle's list of
        # what it bundles (swagger-ui-bundle.js.LICENSE.txt).
        licenses = [p for p in source.iterdir() if p.name.upper().startswith(("LICENSE", "NOTICE"))]
        bundled = [p.with_name(p.name + ".LICENSE.txt") for p in served]
        (vendor / package).mkdir(parents=True)
        for path in [*served, *licenses, *filter(Path.is_file, bundled)]:
            shutil.copyfile(path, vendor / package / path.name)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            copy_npm_assets(Path(self.build_lib) / "ptracker" / "static" / "vendor")


setup(cmdclass={"build_py": BuildPy})
