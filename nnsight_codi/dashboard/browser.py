"""Open a dashboard page in headless Chromium through its own command line (Debian's `chromium`).

No Python driver and no downloaded browser: `--dump-dom` returns the DOM after the page's scripts
ran (`--virtual-time-budget` lets them finish), `--screenshot` writes a PNG, and
`--enable-logging=stderr` prints every console message as a `CONSOLE` line — that is how console
errors are detected (the page itself logs nothing). The example, step and layer are chosen with
the page's deep-link hash (`index.html#ex=ID&step=N&layer=L`), which clicks the step card through
the same handler a user's click runs.

Example:
    >>> dom, console = dump_dom(Path("out/dashboard/index.html"), example="syn-1-3", step=3)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH, or None."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


def page_url(page: Path, example: str | None = None, step: int | None = None, layer: int | None = None) -> str:
    """`file://` URL of `page` with the deep-link hash for an example, step and layer."""
    parts = []
    if example is not None:
        parts.append(f"ex={quote(str(example), safe='')}")
    if step is not None:
        parts.append(f"step={int(step)}")
    if layer is not None:
        parts.append(f"layer={int(layer)}")
    return Path(page).resolve().as_uri() + ("#" + "&".join(parts) if parts else "")


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="nnsight-codi-chromium-") as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--hide-scrollbars", "--mute-audio", "--virtual-time-budget=5000", "--enable-logging=stderr",
                 "--v=0", f"--user-data-dir={profile}"]
        return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=timeout)


def console_lines(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log (`...:CONSOLE...] "message", source: ...`)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def dump_dom(page: Path, example: str | None = None, step: int | None = None, layer: int | None = None,
             timeout: int = 120) -> tuple[str, list[str]]:
    """The rendered DOM of `page` (at that example/step/layer) and the console messages it produced."""
    proc = _run(["--dump-dom", page_url(page, example, step, layer)], timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout, console_lines(proc.stderr)


def screenshot(page: Path, path: Path, example: str | None = None, step: int | None = None,
               layer: int | None = None, size: tuple[int, int] = (1400, 900), timeout: int = 120) -> list[str]:
    """Write a PNG of `page` at `size` pixels; return the console messages."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--screenshot={path}", f"--window-size={size[0]},{size[1]}",
                 page_url(page, example, step, layer)], timeout)
    if proc.returncode != 0 or not path.exists():
        raise RuntimeError(f"chromium screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return console_lines(proc.stderr)


class _PageReader(HTMLParser):
    """Collects what the dashboard shows: body state, banners, the attended and lens lists."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.state: dict[str, Any] = {"body": {}, "attended": [], "lens": [], "missing": [], "errors": None,
                                      "steps": [], "tokens": []}
        self._list: str | None = None
        self._capture: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "body":
            self.state["body"] = a
        elif tag == "ol" and a.get("id") in ("attended", "lens"):
            self._list = a["id"]
        elif tag == "li" and self._list and ("data-token" in a):
            self.state[self._list].append(a)
        elif tag == "div" and a.get("class") == "banner":
            self._capture, self._text = "missing", []
        elif tag == "div" and a.get("id") == "errors":
            self.state["errors"] = "" if "hidden" not in a else None
            if "hidden" not in a:
                self._capture, self._text = "errors", []
        elif tag == "button" and "data-step" in a:
            self.state["steps"].append(a)
        elif tag == "span" and "data-pos" in a:
            self.state["tokens"].append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._list = None
        if tag == "div" and self._capture:
            text = "".join(self._text).strip()
            if self._capture == "missing":
                self.state["missing"].append(text)
            else:
                self.state["errors"] = text
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture:
            self._text.append(data)


def read_page(dom: str) -> dict[str, Any]:
    """What a rendered dashboard DOM shows: `body` attributes (`data-ready`, `data-example`,
    `data-step`, `data-first-render-ms`), `missing` banners, `errors` (None when no page error),
    `attended` / `lens` list items (`data-pos`, `data-weight`, `data-token` / `data-token`,
    `data-prob`), step cards and highlighted tokens.
    """
    reader = _PageReader()
    reader.feed(dom)
    return reader.state
