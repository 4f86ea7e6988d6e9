"""Read the storyboard page back: per panel, its rows (``<dt>`` label, ``<dd>`` text), links,
``<time>`` elements and notes, the way a reader of the page sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class PagePanel:
    shot_id: str
    classes: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    times: list[tuple[str, str]] = field(default_factory=list)  # (datetime attribute, text)
    notes: dict[str, str] = field(default_factory=dict)  # <p class=...> text by class
    now: dict[str, str] = field(default_factory=dict)  # row label -> "storyboard now" value

    def row(self, label: str) -> str:
        found = self.all(label)
        assert found, f"{self.shot_id} has no row {label!r}: {[k for k, _ in self.rows]}"
        return found[0]

    def all(self, label: str) -> list[str]:
        return [value for key, value in self.rows if key == label]

    def has(self, label: str) -> bool:
        return bool(self.all(label))


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, PagePanel] = {}
        self.header_times: list[tuple[str, str]] = []
        self.header_text: list[str] = []
        self.tags: list[str] = []
        self.metas: list[dict[str, str | None]] = []
        self._panel: PagePanel | None = None
        self._in: str | None = None  # "dt", "dd", "p.<class>", "time", "header"
        self._buffer: list[str] = []
        self._label = ""
        self._time: str | None = None
        self._time_text: list[str] = []
        self._header = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if tag == "meta":
            self.metas.append(values)
        if tag == "header":
            self._header = True
        if tag == "article":
            shot_id = str(values.get("id"))
            self._panel = self.panels[shot_id] = PagePanel(shot_id, str(values.get("class")))
        panel = self._panel
        if panel is not None:
            if tag == "a" and values.get("href"):
                panel.links.append(str(values["href"]))
            if tag == "img" and values.get("src"):
                panel.images.append(str(values["src"]))
            if tag in ("dt", "dd"):
                self._in, self._buffer = tag, []
            if tag == "span" and values.get("class") == "now" and self._in == "dd":
                self._buffer.append("\0")
            if tag == "p" and values.get("class"):
                self._in, self._buffer = f"p.{values['class']}", []
        if tag == "time":
            self._time, self._time_text = str(values.get("datetime")), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "time" and self._time is not None:
            item = (self._time, "".join(self._time_text))
            if self._panel is not None:
                self._panel.times.append(item)
            elif self._header:
                self.header_times.append(item)
            self._time = None
        if tag == "header":
            self._header = False
        panel = self._panel
        if panel is None:
            return
        text = " ".join("".join(self._buffer).split())
        if tag == "dt" and self._in == "dt":
            self._label, self._in = text, None
        elif tag == "dd" and self._in == "dd":
            value, _, now = text.partition("\0")
            panel.rows.append((self._label, value.strip()))
            if now:
                panel.now[self._label] = now.strip().removeprefix("storyboard now: ")
            self._in = None
        elif tag == "p" and self._in and self._in.startswith("p."):
            panel.notes[self._in[2:]] = text
            self._in = None
        if tag == "article":
            self._panel = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._buffer.append(data)
        if self._time is not None:
            self._time_text.append(data)
        if self._header:
            self.header_text.append(data)


@dataclass
class Page:
    panels: dict[str, PagePanel]
    header_times: list[tuple[str, str]]
    header: str
    tags: list[str]
    metas: list[dict[str, str | None]]


def read_page(text: str) -> Page:
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return Page(
        reader.panels,
        reader.header_times,
        " ".join("".join(reader.header_text).split()),
        reader.tags,
        reader.metas,
    )
