"""PNG plots from tables (and, for one episode, from images the caller already loaded).

Uses matplotlib's Agg backend through the object API (no pyplot state), so it runs headless and
in parallel. results/ never loads data itself: `plot_episode` takes arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from episodes.storage import atomic_write
from results.tables import SETTING_COLUMNS, accuracy_table, super_category_table


def _ci_column(table: pd.DataFrame) -> str:
    found = [c for c in table.columns if c.startswith("ci") and c[2:].isdigit()]
    if not found:
        raise ValueError(
            f"table has no CI column (ci95, ci90, ...); columns: {list(table.columns)}"
        )
    return found[0]


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    return atomic_write(
        path, lambda handle: fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    )


def plot_accuracy_vs_shots(
    table: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None, dpi: int = 120
) -> Path:
    """Accuracy (%) against K (shots), one line per learner (and per other setting), CI bars.

    table: `accuracy_table` output over several settings (columns learner, k_shot, accuracy, ci95).
    """
    for column in ("learner", "k_shot", "accuracy"):
        if column not in table.columns:
            raise ValueError(f"table needs a {column!r} column; got {list(table.columns)}")
    ci = _ci_column(table)
    # One line per learner across runs (each run is one K), split further by any other setting
    # column that varies, and by mask mode where one learner ran with several.
    varying = [
        c
        for c in SETTING_COLUMNS
        if c != "k_shot" and c in table.columns and table[c].nunique(dropna=False) > 1
    ]
    if (
        "mask_mode" in table.columns
        and (table.groupby("learner")["mask_mode"].nunique(dropna=False) > 1).any()
    ):
        varying.append("mask_mode")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for key, line in table.groupby(["learner", *varying], dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = line.sort_values("k_shot")
        label = " ".join([str(key[0])] + [f"{c}={v}" for c, v in zip(varying, key[1:])])
        ax.errorbar(
            line["k_shot"],
            line["accuracy"],
            yerr=line[ci].fillna(0.0),
            marker="o",
            capsize=4,
            label=label,
        )
    shots = sorted(table["k_shot"].unique())
    ax.set_xticks(shots)
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel(f"accuracy (%) ± {ci[2:]}% CI")
    ax.set_title(title or "Accuracy against shots")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path, dpi)


def plot_super_categories(
    table: pd.DataFrame, path: str | os.PathLike[str], *, title: str | None = None, dpi: int = 120
) -> Path:
    """Grouped bars: accuracy (%) per super-category, one bar per learner, CI error bars.

    table: `super_category_table` output for ONE setting (columns learner, super_category,
    accuracy, ci95); several settings are refused, as their bars would not be comparable.
    """
    ci = _ci_column(table)
    settings = table[[c for c in ("run_id", *SETTING_COLUMNS) if c in table.columns]]
    settings = settings.drop_duplicates()
    if len(settings) > 1:
        raise ValueError(f"table holds {len(settings)} settings; filter it to one setting first")
    table = table.assign(label=table["learner"])
    if "mask_mode" in table.columns:  # one learner under several mask modes: tell the bars apart
        several = table.groupby("learner")["mask_mode"].transform(lambda m: m.nunique(dropna=False))
        table.loc[several > 1, "label"] = (
            table["learner"] + " [" + table["mask_mode"].astype(object).fillna("no masks") + "]"
        )
    categories = sorted(table["super_category"].unique())
    learners = sorted(table["label"].unique())
    width = 0.8 / max(len(learners), 1)
    x = np.arange(len(categories))
    fig = Figure(figsize=(max(6, 0.7 * len(categories) * max(1, len(learners) / 2)), 4))
    ax = fig.add_subplot()
    for i, learner in enumerate(learners):
        rows = table[table["label"] == learner].set_index("super_category").reindex(categories)
        ax.bar(
            x + (i - (len(learners) - 1) / 2) * width,
            rows["accuracy"],
            width,
            yerr=rows[ci].fillna(0.0),
            capsize=3,
            label=learner,
        )
    ax.set_xticks(x, categories, rotation=30, ha="right")
    ax.set_ylabel(f"accuracy (%) ± {ci[2:]}% CI")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Accuracy per super-category")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path, dpi)


def _overlay(
    image: np.ndarray, masks: np.ndarray | None, colors: np.ndarray, alpha: float
) -> np.ndarray:
    """image (H,W,3) uint8 with each mask (S,H,W) bool tinted in its slot's colour -> float RGB."""
    rgb = image.astype(np.float64) / 255.0
    if masks is None:
        return rgb
    if masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks {masks.shape} do not match image {image.shape}: need (S,H,W)")
    for slot in range(masks.shape[0]):
        m = masks[slot]
        rgb[m] = (1 - alpha) * rgb[m] + alpha * colors[slot % len(colors)]
    return rgb


def plot_episode(
    support_images: Sequence[np.ndarray],
    support_labels: Sequence[str],
    query_images: Sequence[np.ndarray],
    query_labels: Sequence[str],
    predicted_labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    support_masks: Sequence[np.ndarray | None] | None = None,
    query_masks: Sequence[np.ndarray | None] | None = None,
    slot_names: Sequence[str] | None = None,
    alpha: float = 0.45,
    columns: int | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Path:
    """One episode: support images (top rows), then queries titled with true and predicted labels.

    images: (H,W,3) uint8 arrays; masks: (S,H,W) bool per image (slot s tinted in colour s) or
    None; labels are display strings (class names or synsets). Wrong predictions are titled red.
    """
    n_support, n_query = len(support_images), len(query_images)
    if len(support_labels) != n_support:
        raise ValueError(f"{n_support} support images but {len(support_labels)} support labels")
    if not len(query_labels) == len(predicted_labels) == n_query:
        raise ValueError(
            f"{n_query} query images, {len(query_labels)} query labels, "
            f"{len(predicted_labels)} predicted labels: need one of each per query"
        )
    for name, images in (("support_images", support_images), ("query_images", query_images)):
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"{name}[{i}]: need an (H,W,3) uint8 array, got {image.shape} {image.dtype}"
                )
    support_masks = list(support_masks) if support_masks is not None else [None] * n_support
    query_masks = list(query_masks) if query_masks is not None else [None] * n_query
    columns = columns or max(min(max(n_support, 1), 10), 5)
    support_rows = -(-n_support // columns)
    query_rows = -(-n_query // columns)
    given = [m for m in [*support_masks, *query_masks] if m is not None]
    present = sorted(
        {int(s) for m in given for s in np.flatnonzero(m.reshape(m.shape[0], -1).any(1))}
    )
    # tab20's dark hues first, then the light ones: neighbouring slots get distinct hues.
    tab20 = colormaps["tab20"](np.arange(20))[:, :3]
    colors = np.concatenate([tab20[0::2], tab20[1::2]])

    fig = Figure(figsize=(1.8 * columns, 2.0 * (support_rows + query_rows) + 0.6))
    grid = fig.add_gridspec(support_rows + query_rows, columns)
    panels = [
        ("S", img, msk, lab, None)
        for img, msk, lab in zip(support_images, support_masks, support_labels)
    ]
    for row_offset, items in (
        (0, panels),
        (
            support_rows,
            [
                ("Q", img, msk, true, pred)
                for img, msk, true, pred in zip(
                    query_images, query_masks, query_labels, predicted_labels
                )
            ],
        ),
    ):
        for i, (kind, image, masks, label, predicted) in enumerate(items):
            ax = fig.add_subplot(grid[row_offset + i // columns, i % columns])
            ax.imshow(_overlay(image, masks, colors, alpha))
            ax.set_xticks([])
            ax.set_yticks([])
            if kind == "S":
                ax.set_title(f"support: {label}", fontsize=7)
            else:
                ok = label == predicted
                ax.set_title(
                    f"true: {label}\npred: {predicted}", fontsize=7, color="green" if ok else "red"
                )
    if present and slot_names is not None:
        handles = [
            Patch(color=colors[s % len(colors)], label=slot_names[s])
            for s in present
            if s < len(slot_names)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=7)
    fig.suptitle(title or f"episode: {n_support} support, {n_query} query images", fontsize=9)
    return _save(fig, path, dpi)


def plot_predicted_episode(
    support: Sequence[Sequence[int]],
    query: Sequence[Sequence[int]],
    way_labels: Sequence[str],
    predicted: Sequence[int],
    picture: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
    path: str | os.PathLike[str],
    *,
    slot_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One episode with a learner's predictions (see `plot_episode`).

    support, query: per way, the image indices of its support / query images (way order).
    way_labels: (N,) display label of each way (a class name). predicted: (n_query_total,) the
    predicted way of each query, in way-major order. picture(i): image i as an (H, W, 3) uint8
    array and its (S, H, W) bool slot masks (or None), loaded by the caller.
    """

    def pictures(ways: Sequence[Sequence[int]]) -> tuple[list, list, list[str]]:
        shown = [(picture(i), w) for w, way in enumerate(ways) for i in way]
        return (
            [image for (image, _), _ in shown],
            [masks for (_, masks), _ in shown],
            [way_labels[w] for _, w in shown],
        )

    s_images, s_masks, s_labels = pictures(support)
    q_images, q_masks, q_labels = pictures(query)
    return plot_episode(
        s_images,
        s_labels,
        q_images,
        q_labels,
        [way_labels[w] for w in predicted],
        path,
        support_masks=s_masks,
        query_masks=q_masks,
        slot_names=slot_names,
        title=title,
    )


def write_plots(
    records: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    *,
    confidence: float = 0.95,
    method: str = "normal",
    seed: int = 0,
    n_boot: int = 10_000,
) -> list[Path]:
    """The standard plots of a records set, written to out_dir; returns the PNG paths.

    super_category_<setting>.png for each setting (and run), plus accuracy_vs_shots.png when the
    records span several K. Episode drawings need images: call `plot_episode` directly.
    """
    out_dir = Path(out_dir)
    options = dict(confidence=confidence, method=method, seed=seed, n_boot=n_boot)
    paths = []
    accuracy = accuracy_table(records, **options)
    if accuracy["k_shot"].nunique(dropna=True) > 1:
        paths.append(
            plot_accuracy_vs_shots(
                accuracy.dropna(subset=["k_shot"]), out_dir / "accuracy_vs_shots.png"
            )
        )
    supers = super_category_table(records, **options)
    keys = [c for c in ("run_id", *SETTING_COLUMNS) if c in supers.columns]
    for key, block in supers.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = "_".join("any" if pd.isna(v) else str(v) for v in key).replace("/", "-")
        title = "Accuracy per super-category: " + ", ".join(
            f"{k}={v}" for k, v in zip(keys, key) if not pd.isna(v)
        )
        paths.append(
            plot_super_categories(block, out_dir / f"super_category_{label}.png", title=title)
        )
    return paths
