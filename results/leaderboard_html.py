"""The leaderboard as one static, self-contained web page: `leaderboard --html DIR`.

DIR/index.html holds everything it shows: inline CSS and JavaScript (click a column header to
sort), the plots as base64 PNGs, no external URL. The result files are copied beside it
(DIR/results/) and each row links to its copy, so the folder can be moved or served as it is.
Text taken from result files (learner and run names, ...) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from episodes.storage import atomic_write_bytes, atomic_write_text
from results.leaderboard import LEAKED_MARK, Group, Leaderboard
from results.plots import plot_accuracy_vs_shots, plot_super_categories

TRANSDUCTIVE_MARK = "T"
RESULTS_FOLDER = "results"  # beside index.html: copies of the ranked files

# (header, table column or None for a computed cell, numeric sort)
_COLUMNS: tuple[tuple[str, str | None, bool], ...] = (
    ("rank", "rank", True),
    ("tie", "tie", False),
    ("learner", "learner", False),
    ("accuracy (%)", None, True),
    (LEAKED_MARK, "leaked", False),
    ("masks", "masks", False),
    ("seeds", "seeds", False),
    ("dataset", "dataset", False),
    ("episodes", "episodes", True),
    ("backbone", "backbone", False),
    ("weights", "weights", False),
    ("run", "run", False),
    ("result file", None, False),
)

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:90rem;
 padding:0 1rem;color:#1d232a;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin:2.2rem 0 .5rem}
.meta,.rule,figcaption{color:#55606b;font-size:.86rem}
.rule{max-width:60rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.4rem 0;font-size:.86rem}
th,td{padding:.3rem .45rem;border-bottom:1px solid #dde2e7;text-align:left}
th,td.num,td.nowrap{white-space:nowrap}
th{background:#f1f4f7;cursor:pointer;user-select:none;position:sticky;top:0}
th:hover{background:#e3e9ef}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:.7em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:.7em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
tr.rank1 td:first-child{font-weight:700}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.78rem;font-weight:600}
.badge.transductive{background:#fde9c8;color:#7a4a00}
.badge.unverified{background:#f9d6d5;color:#8a1f1b}
.badge.inductive{background:#dcefe0;color:#23602f}
.leaked{color:#b3261e;font-weight:700}
figure{margin:1rem 0} figure img{max-width:100%;height:auto;border:1px solid #e3e7eb}
ul.problems li{font-family:ui-monospace,monospace;font-size:.82rem}
nav ul{columns:2;font-size:.88rem}
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(headers, function (th, col) {
    th.addEventListener("click", function () {
      var now = th.getAttribute("aria-sort");  // a first click puts the best first
      var ascending = now ? now !== "ascending" : th.dataset.first !== "descending";
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.dataset.type === "num";
      var key = function (row) {
        var cell = row.cells[col];
        var text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
        return numeric ? parseFloat(text) : text;
      };
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c;
        if (numeric) { c = (isNaN(x) ? Infinity : x) - (isNaN(y) ? Infinity : y); }
        else { c = x.localeCompare(y); }
        return ascending ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure(path: Path, caption: str) -> str:
    return (
        f'<figure><img src="{_png_data_uri(path)}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _copy_results(board: Leaderboard, out: Path) -> dict[str, str]:
    """Copy every listed result file into out/results/; original path -> relative link."""
    links: dict[str, str] = {}
    files = sorted({f for table in board.values() for f in table["file"]})
    for number, original in enumerate(files, start=1):
        source = Path(original)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{source.parent.name}-{source.name}")
        name = f"{number:03d}-{stem}"
        atomic_write_bytes(out / RESULTS_FOLDER / name, source.read_bytes())
        links[original] = f"{RESULTS_FOLDER}/{quote(name)}"
    return links


def _unique_labels(table: pd.DataFrame) -> pd.Series:
    """Learner names, with the run added where one learner appears in several runs."""
    labels = table["learner"].astype(str)
    repeated = labels.duplicated(keep=False)
    labels = labels.where(~repeated, labels + " [" + table["run"].astype(str) + "]")
    repeated = labels.duplicated(keep=False)
    return labels.where(~repeated, labels + " #" + (table.index + 1).astype(str))


def _super_category_plot(board: Leaderboard, label: str, folder: Path) -> str:
    supers = board.super_categories[label]
    if supers.empty:
        return ""
    table = board[label]
    names = dict(zip(zip(table["learner"], table["run"]), _unique_labels(table)))
    supers = supers.assign(
        learner=[
            names.get((name, run), name) for name, run in zip(supers["learner"], supers["run"])
        ]
    ).drop(columns=["run"])
    supers = supers.drop_duplicates(subset=["learner", "super_category"])
    # the table's one setting, as plot_super_categories checks it
    split, n_way, k_shot, n_query, _ = board.groups[label].setting
    supers = supers.assign(split=split, n_way=n_way, k_shot=k_shot, n_query=n_query)
    path = plot_super_categories(
        supers, folder / f"super_{len(os.listdir(folder))}.png", title="Accuracy per super-category"
    )
    return _figure(path, f"Accuracy per super-category, {board.groups[label].title}")


def _shots_plots(board: Leaderboard, folder: Path) -> list[str]:
    """One accuracy-vs-shots plot per family of tables that differ only in K (2 or more K)."""
    families: dict[tuple, list[str]] = {}
    for label, group in board.groups.items():
        split, n_way, k_shot, n_query, mode = group.setting
        if k_shot is None:
            continue
        # rows ranked apart (annotation protocol, leaked weights) are plotted apart too
        key = (
            group.dataset_label,
            group.transductive,
            group.verified,
            split,
            n_way,
            n_query,
            mode,
            group.annotations,
            group.leaked,
        )
        families.setdefault(key, []).append(label)
    figures = []
    for key, labels in sorted(families.items(), key=lambda item: str(item[0])):
        dataset, transductive, verified, split, n_way, n_query, mode, annotations, leaked = key
        if len({board.groups[label].setting[2] for label in labels}) < 2:
            continue
        rows = []
        for label in labels:
            table = board[label]
            for _, row in table.iterrows():
                confidence = round(row["confidence"] * 100)
                rows.append(
                    {
                        "learner": f"{row['learner']}{' ' + LEAKED_MARK if row['leaked'] else ''} "
                        f"({row['backbone']}, {row['weights']})",
                        "k_shot": board.groups[label].setting[2],
                        "accuracy": row["accuracy"],
                        f"ci{confidence}": row["ci"],
                    }
                )
        frame = pd.DataFrame(rows).drop_duplicates(subset=["learner", "k_shot"])
        protocol = "transductive" if transductive else "inductive"
        title = (
            f"{dataset} · {split} {n_way}-way {n_query} queries ({mode}) · {protocol} · "
            f"annotations: {annotations}"
            + (f" · {LEAKED_MARK} weights saw the test classes" if leaked else "")
            + ("" if verified else " · unverified")
        )
        path = plot_accuracy_vs_shots(
            frame,
            folder / f"shots_{len(figures)}.png",
            title=f"{n_way}-way, {n_query} queries, {protocol}",
        )
        figures.append(_figure(path, f"Accuracy against shots, {title}"))
    return figures


def _table(table: pd.DataFrame, group: Group, links: dict[str, str]) -> str:
    columns = [c for c in _COLUMNS if c[1] is None or c[1] in table.columns]
    num = ' data-type="num"'
    # higher is better for accuracy: its first click sorts descending (rank, episodes ascending)
    first = {"accuracy (%)": ' data-first="descending"'}
    head = "".join(
        f'<th scope="col"{num if numeric else ""}{first.get(name, "")}>{_e(name)}</th>'
        for name, _, numeric in columns
    )
    body = []
    for _, row in table.iterrows():
        cells = []
        for name, column, numeric in columns:
            if name == "accuracy (%)":
                cells.append(
                    f'<td class="num" data-sort="{row["accuracy"]:.6f}">{_e(row["acc ± ci"])}</td>'
                )
            elif name == "result file":
                href = links[row["file"]]
                shown = "/".join(Path(row["file"]).parts[-2:])
                cells.append(f'<td class="nowrap"><a href="{_e(href)}">{_e(shown)}</a></td>')
            elif column == "learner" and group.transductive:
                cells.append(
                    f'<td>{_e(row[column])} <span class="badge transductive" '
                    f'title="transductive">{TRANSDUCTIVE_MARK}</span></td>'
                )
            elif column == "tie":
                cells.append(f'<td class="nowrap">{_e(row[column])}</td>')
            elif column == "leaked":
                cells.append(f'<td class="leaked">{_e(row[column])}</td>')
            else:
                cls = ' class="num"' if numeric else ""
                cells.append(f"<td{cls}>{_e(row[column])}</td>")
        rank_class = ' class="rank1"' if "rank" in table.columns and row["rank"] == 1 else ""
        body.append(f"<tr{rank_class}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _problems(board: Leaderboard) -> str:
    items = (
        [f"<li>refused {_e(p)}: {_e(problems[0])}</li>" for p, problems in board.invalid.items()]
        + [f"<li>unverified {_e(p)}: {_e(why)}</li>" for p, why in board.unverified.items()]
        + [
            f"<li>duplicate {_e(p)}: same content as {_e(o)}</li>"
            for p, o in board.duplicates.items()
        ]
    )
    if not items:
        return ""
    return (
        '<section id="left-out"><h2>Files left out of the ranking</h2>'
        f'<ul class="problems">{"".join(items)}</ul></section>'
    )


def render_html(board: Leaderboard, links: dict[str, str], figures_folder: Path) -> str:
    """The page's HTML; `links` maps each row's file to its href, plots are drawn in the folder."""
    sections, toc = [], []
    for label, table in board.items():
        group = board.groups[label]
        badge = f'<span class="badge {group.protocol}">{group.protocol}</span>' + (
            "" if group.verified else ' <span class="badge unverified">unverified</span>'
        )
        toc.append(f'<li><a href="#{_e(label)}">{_e(group.title)}</a></li>')
        sections.append(
            f'<section id="{_e(label)}" class="board {group.protocol}'
            f'{"" if group.verified else " unverified"}">'
            f"<h2>{_e(group.title)} {badge}</h2>{_table(table, group, links)}"
            f'<p class="rule">{_e(board.rules[label])}</p>'
            f"{_super_category_plot(board, label, figures_folder)}</section>"
        )
    shots = _shots_plots(board, figures_folder)
    shots_html = (
        (
            '<section id="accuracy-vs-shots"><h2>Accuracy against shots</h2>'
            + "".join(shots)
            + "</section>"
        )
        if shots
        else ""
    )
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_files = len({f for table in board.values() for f in table["file"]})
    legend = (
        f'<p class="meta"><span class="leaked">{LEAKED_MARK}</span>: the weights saw the '
        "test classes (e.g. ImageNet-pretrained), not a clean few-shot result. "
        f'<span class="badge transductive">{TRANSDUCTIVE_MARK}</span>: transductive, the '
        "learner sees the whole query set at once; such rows are ranked only with each "
        "other, in tables of their own. Click a column header to sort.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>partbench leaderboard</title><style>{_CSS}</style></head><body>"
        "<h1>partbench leaderboard</h1>"
        f'<p class="meta">{n_files} verified or listed result files · {len(board)} tables · '
        f"generated {created}</p>{legend}"
        f"<nav><ul>{''.join(toc)}</ul></nav>{''.join(sections)}{shots_html}"
        f"{_problems(board)}<script>{_SORT_JS}</script></body></html>\n"
    )


def write_html(board: Leaderboard, out_dir: str | os.PathLike[str]) -> Path:
    """Write out_dir/index.html (and out_dir/results/ copies of the files); returns the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    links = _copy_results(board, out)
    with tempfile.TemporaryDirectory(prefix="partbench-plots-") as folder:
        page = render_html(board, links, Path(folder))
    return atomic_write_text(out / "index.html", page)
