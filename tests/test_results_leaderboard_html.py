"""`leaderboard --html`: a self-contained page, checked with the standard library's HTML parser.

(The page is also checked in a real browser by hand: docs/check_leaderboard_html.py.)
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from test_results_leaderboard import _write, allow_transductive_flag

from results.leaderboard import LEAKED_MARK, merge
from results.leaderboard_html import write_html


class _Page(HTMLParser):
    """Collects what the tests look at: sections, tables (header and cell texts), links, images."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.sections: list[dict[str, str]] = []
        self.tables: list[dict] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.styles = 0
        self.external: list[str] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.stack.append(tag)
        for name in ("src", "href"):
            if (attrs.get(name) or "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[name])
        if tag == "section":
            self.sections.append(attrs)
        elif tag == "table":
            self.tables.append(
                {
                    "class": attrs.get("class"),
                    "head": [],
                    "rows": [],
                    "section": self.sections[-1].get("id") if self.sections else None,
                }
            )
        elif tag == "tr" and self.tables and "tbody" in self.stack:
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = []
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts.append(attrs)
        elif tag == "link" and attrs.get("rel") == "stylesheet":
            self.external.append(attrs.get("href"))
        elif tag == "style":
            self.styles += 1

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell).strip()
            target = self.tables[-1]["head"] if tag == "th" else self.tables[-1]["rows"][-1]
            target.append(text)
            self._cell = None
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_html_page_is_self_contained_sortable_and_marked(tmp_path, monkeypatch):
    allow_transductive_flag(monkeypatch)
    mark = {"tim"}

    results = tmp_path / "results"
    _write(
        results,
        "one-shot",
        [("protonet", 0.5), ("<b>evil</b>", 0.6), ("tim", 0.7)],
        run_id="r1",
        leaked=True,
        transductive=mark,
    )
    _write(
        results,
        "five-shot",
        [("protonet", 0.7), ("<b>evil</b>", 0.8)],
        run_id="r5",
        k_shot=5,
        episodes_hash="sha256:" + "5" * 64,
        leaked=True,  # as the 1-shot rows: one family of tables, so one accuracy-vs-shots plot
        transductive=mark,
    )
    _write(results, "bare", [("protonet", 0.9)], run_id="rb", records=False, transductive=mark)
    board = merge(results, allow_unverified=True)
    index = write_html(board, tmp_path / "site")
    page = _parse(index)

    # self-contained: inline style and script, images as data URIs, no external reference
    assert page.styles == 1 and page.scripts == [{}] and not page.external
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # one section and one sortable table per board table, in order, with the rule under it
    boards = [s for s in page.sections if "board" in (s.get("class") or "")]
    assert [s["id"] for s in boards] == list(board)
    assert [t["section"] for t in page.tables] == list(board)
    assert all(t["class"] == "sortable" for t in page.tables)
    text = "".join(page.text)
    for label in board:
        assert board.rules[label] in text
    # the ranked tables show rank, the mark columns and a link per row; the unverified one no rank
    by_id = {t["section"]: t for t in page.tables}
    one_shot = by_id["synthetic-twin@dddddddd_test_5way_1shot_5q_mixed_inductive_leaked-weights"]
    assert one_shot["head"][:4] == ["rank", "tie", "learner", "accuracy (%)"]
    assert LEAKED_MARK in one_shot["head"] and "result file" in one_shot["head"]
    column = dict(zip(one_shot["head"], zip(*one_shot["rows"])))
    assert sorted(column["learner"]) == ["<b>evil</b>", "protonet"]  # escaped, shown as text
    assert set(column[LEAKED_MARK]) == {LEAKED_MARK}
    tim = by_id["synthetic-twin@dddddddd_test_5way_1shot_5q_mixed_transductive_leaked-weights"]
    # a first click on accuracy puts the best first
    assert 'data-type="num" data-first="descending">accuracy (%)' in index.read_text()
    assert dict(zip(tim["head"], tim["rows"][0]))["learner"] == "tim T"  # the transductive mark
    transductive = [s for s in page.sections if s.get("id") == tim["section"]]
    assert transductive[0]["class"] == "board transductive"
    unverified = by_id["synthetic-twin@dddddddd_test_5way_1shot_5q_mixed_inductive_unverified"]
    assert "rank" not in unverified["head"]
    # every row links to a copy of its result file beside the page
    n_rows = sum(len(t["rows"]) for t in page.tables)
    file_links = [link for link in page.links if link.startswith("results/")]
    assert len(file_links) == n_rows
    for link in file_links:
        copy = index.parent / link
        assert copy.is_file() and b'"content_hash"' in copy.read_bytes()
    # the accuracy-vs-shots plot (1 and 5 shots) and a super-category plot per table
    shots = [s for s in page.sections if s.get("id") == "accuracy-vs-shots"]
    assert len(shots) == 1
    assert len(page.images) == len(board) + 1
    assert "<b>evil</b>" not in index.read_text(encoding="utf-8")
