"""`board.html` escapes every value from the project, manifest fields included: markup in a
title, a prompt or a manifest record is shown as text, never becomes an element, an attribute
or a link; an image reference that is not a project-relative render never becomes a link."""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiohttp import web

from storycore.project import load_project, save_project
from tests.board._cdp import CHROMIUM, browser_page
from tests.board._project import add_render, copy_example
from tests.security._support import run_storycore, serve

REFRESH = '<meta http-equiv="refresh" content="0;url={url}">'
SCRIPT = "<script>window.pwned = 1</script>"
OURS_META = [
    {"charset": "utf-8"},
    {"http-equiv": "Content-Security-Policy"},
    {"name": "referrer", "content": "no-referrer"},
    {"name": "viewport"},
]
BAD_PATHS = {
    "shot_03": "javascript:alert(1)",
    "shot_04": "/etc/passwd",
    "shot_05": "assets/images/generated/../../../outside.png",
    "shot_06": "http://127.0.0.1:9/x.png",
}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _hostile_project(tmp_path: Path, evil_url: str) -> tuple[Path, str]:
    """A project whose every text carries markup: the storyboard, project.json and the
    manifest records (string seed, checkpoint, models, template, take, profile, a bad date,
    HTML as version and render numbers, and image paths that are not renders)."""
    markup = REFRESH.format(url=evil_url) + SCRIPT + '"><img src=x onerror=alert(1)>'
    project = load_project(copy_example(tmp_path))
    project.data["title"] = markup
    for shot in project.storyboard["shots"]:
        shot["title"] = markup
        shot["description"] = markup
        shot["prompt_modules"]["subject"] = markup
        shot["prompt_modules"]["camera"] = markup
        shot["prompt_modules"]["lighting"] = markup
    save_project(project, storyboard=True)
    project = load_project(project.root)
    outside = tmp_path / "outside.png"
    for shot_id in ("shot_01", "shot_02", *BAD_PATHS):
        record = add_render(project, shot_id)
        if shot_id == "shot_03":
            outside.write_bytes((project.root / record.path).read_bytes())
    items = {item["shot_id"]: item for item in project.data["asset_manifest"]["generated_images"]}
    items["shot_01"].update(
        seed=markup,
        checkpoint=markup,
        template=markup,
        models=[markup],
        created_at=markup,
        server_url=markup,
        take=markup,
        profile={"name": markup},
    )
    items["shot_02"].update(version=markup, render=markup)
    for shot_id, path in BAD_PATHS.items():
        items[shot_id]["path"] = path
    save_project(project)
    return project.root, markup


def _check_page(root: Path, markup: str) -> None:
    page = (root / "storyboard" / "board.html").read_text(encoding="utf-8")
    parser = _Elements()
    parser.feed(page)
    parser.close()
    tags = [tag for tag, _ in parser.elements]
    for forbidden in ("script", "iframe", "object", "embed", "base", "form", "link", "frame"):
        assert forbidden not in tags, forbidden
    metas = [attrs for tag, attrs in parser.elements if tag == "meta"]
    assert len(metas) == len(OURS_META), metas
    for got, want in zip(metas, OURS_META, strict=True):
        assert want.items() <= got.items(), got
    for tag, attrs in parser.elements:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert str(attrs.get("src")).startswith("data:image/jpeg;base64,"), attrs
        if tag == "a":
            href = str(attrs.get("href"))
            assert href.startswith("../assets/images/generated/"), href
            assert (root / "storyboard" / href).resolve().is_relative_to(root.resolve())
    links = [str(attrs.get("href")) for tag, attrs in parser.elements if tag == "a"]
    assert len(links) == 2 and all("shot_01" in h or "shot_02" in h for h in links), links
    text = "".join(parser.text)
    assert text.count(markup) >= 3 * 7  # each shot's title, description and camera, as text
    for path in BAD_PATHS.values():
        assert path.rsplit("/", 1)[-1] in text  # named, not linked


async def test_markup_in_the_project_and_its_manifest_stays_text(tmp_path: Path) -> None:
    root, markup = _hostile_project(tmp_path, "http://127.0.0.1:9/evil")
    result = await run_storycore("board", "-p", str(root), limit_s=60)
    result.assert_bounded(seconds=60)
    assert result.rc == 0, result.output
    _check_page(root, markup)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH")
async def test_the_hostile_page_neither_navigates_nor_runs_script_in_chromium(
    tmp_path: Path,
) -> None:
    hits: list[str] = []

    async def evil(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="<h1>phished</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", evil)
    async with serve(app) as url:
        root, _ = _hostile_project(tmp_path, url + "/evil")
        result = await run_storycore("board", "-p", str(root), limit_s=60)
        assert result.rc == 0, result.output
        page_url = (root / "storyboard" / "board.html").resolve().as_uri()
        async with browser_page(tmp_path / "profile") as page:
            await page.navigate(page_url)
            await asyncio.sleep(1.5)  # a refresh with content=0 would have fired by now
            seen = await page.evaluate(
                "({url: location.href, pwned: typeof window.pwned,"
                " scripts: document.scripts.length,"
                " refresh: document.querySelectorAll('meta[http-equiv=refresh]').length,"
                " title: document.title})"
            )
    assert hits == []
    assert seen["url"] == page_url
    assert (seen["pwned"], seen["scripts"], seen["refresh"]) == ("undefined", 0, 0)
    assert seen["title"].startswith('<meta http-equiv="refresh"')
