"""Merge result files into ranked tables: one per dataset, setting and protocol.

A row is ranked only after it is verified: its metrics are recomputed from its per-episode
records (the `records.jsonl` beside the result file, or records passed in) by the schema's
`validate_result`. A file that fails is refused (`.invalid`); one with no records to check
it against is refused as unverified (`.unverified`), or, with `allow_unverified`, listed in
tables of its own that carry no rank. A file that cannot even be read (bad JSON, nested too deep)
is one entry of `.invalid` and never stops the others.

Rows ranked together share the dataset (name and fingerprint: the twin never ranks with the real
release, nor twins of different sizes with each other), the setting, the protocol (transductive
learners see the whole query set at once; they never rank with inductive ones), the annotation
protocol (results.protocols: rows that read no test-time annotation, the support set's, or the
queries' too, each in a table of its own; "all" rows are marked as using test-time annotations)
and the episodes
(same episodes.hash; mixing is refused unless `allow_mixed_episodes`). Ranks are tie-aware as in
Meta-Dataset (see `RANK_RULE`). Rows whose weights saw the test classes (e.g. ImageNet-pretrained
backbones: PartImageNet's test classes are ImageNet classes) are marked "†".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from episodes.errors import PartbenchError
from episodes.storage import (
    MAX_RESULT_BYTES,
    InputFileError,
    StrictJSONError,
    check_input_file,
    loads_strict,
)
from results.protocols import ANNOTATION_MARKS, TEST_TIME_ANNOTATIONS, learner_annotations
from results.records import RecordError, read_records
from results.run_files import CONFIG_FILE, IDENTITY_FILE, RECORDS_FILE
from results.schema import read_result, validate_result
from results.stats import paired_difference
from results.tables import format_acc

LEAKED_MARK = "†"
# A run folder's identity file (benchmark.run.folder), not a result: a folder scan skips it

RANK_RULE = (
    "rank: tie-aware, as in Meta-Dataset. Best first, each row shares the rank of the row that "
    "opened it unless it is significantly worse: a paired t-test on the same episodes, p < "
    "{alpha:g} (where both rows have per-episode records), else disjoint {confidence:g}% CIs. "
    "Column tie names the test; a row worse than the rank above opens the next rank, numbered "
    "1 + the rows above it."
)


class LeaderboardError(PartbenchError, ValueError):
    """Results that cannot be ranked together; the message names the files and what differs."""


@dataclass(frozen=True)
class Group:
    """What rows must share to be ranked together."""

    dataset: str  # dataset.name, e.g. "synthetic-twin"
    fingerprint: str  # dataset.fingerprint
    setting: tuple[Any, ...]  # (split, n_way, k_shot, n_query, mode), None where not fixed
    transductive: bool
    verified: bool
    annotations: str = "none"  # results.protocols.ANNOTATION_PROTOCOLS
    leaked: bool = False  # the weights saw the test classes: ranked apart, never above clean rows

    @property
    def dataset_label(self) -> str:
        """ "synthetic-twin@d1e2f3a4": name plus the fingerprint's first 8 hex digits."""
        return f"{self.dataset}@{self.fingerprint.split(':')[-1][:8]}"

    @property
    def protocol(self) -> str:
        return "transductive" if self.transductive else "inductive"

    @property
    def label(self) -> str:
        """A file-name-safe key: "synthetic-twin@d1e2f3a4_test_5way_1shot_5q_mixed_inductive"."""
        split, n_way, k_shot, n_query, mode = self.setting
        parts = [
            self.dataset_label,
            setting_label(
                {"split": split, "n_way": n_way, "k_shot": k_shot, "n_query": n_query, "mode": mode}
            ),
            self.protocol,
        ]
        if self.annotations != "none":  # the realistic protocol keeps the plain label
            parts.append(f"annotations-{self.annotations}")
        if self.leaked:
            parts.append("leaked-weights")
        if not self.verified:
            parts.append("unverified")
        return "_".join(p.replace("/", "-").replace(" ", "-") for p in parts)

    @property
    def title(self) -> str:
        split, n_way, k_shot, n_query, mode = self.setting
        any_ = lambda v: "any" if v is None else v  # noqa: E731
        text = (
            f"{self.dataset_label} · {split} {any_(n_way)}-way {any_(k_shot)}-shot "
            f"{any_(n_query)} queries ({mode or 'default'}) · {self.protocol} · "
            f"annotations: {self.annotations}"
        )
        if self.annotations == TEST_TIME_ANNOTATIONS:
            text += f" · USES {ANNOTATION_MARKS[self.annotations].upper()}"
        if self.leaked:
            text += f" · {LEAKED_MARK} WEIGHTS SAW THE TEST CLASSES"
        return text + ("" if self.verified else " · UNVERIFIED (not ranked)")


class Leaderboard(dict):
    """label -> DataFrame (ranked when verified), plus what was left out and why.

    `.groups` label -> Group; `.rules` label -> the rank rule printed under that table;
    `.super_categories` label -> per-super-category accuracies of its rows (columns learner,
    super_category, accuracy, ci<confidence>); `.invalid` {file: problems} (refused);
    `.unverified` {file: why it could not be verified}; `.duplicates` {file: same-content file}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, Group] = {}
        self.rules: dict[str, str] = {}
        self.super_categories: dict[str, pd.DataFrame] = {}
        self.invalid: dict[str, list[str]] = {}
        self.unverified: dict[str, str] = {}
        self.duplicates: dict[str, str] = {}
        self.skipped: dict[str, str] = {}  # {file in a folder: why it is not a result file}
        self.mixed: dict[str, str] = {}  # {file: why its rows were refused (other episodes)}


def setting_label(setting: dict[str, Any]) -> str:
    """A readable, file-name-safe label: "test_5way_1shot_15q_mixed".

    The part masks are not part of the setting: rows of one setting are ranked together and each
    row names its learner's masks (column `masks`).
    """

    def part(value: Any, suffix: str) -> str:
        return f"{'any' if value is None else value}{suffix}"

    pieces = [
        str(setting.get("split")),
        part(setting.get("n_way"), "way"),
        part(setting.get("k_shot"), "shot"),
        part(setting.get("n_query"), "q"),
        str(setting.get("mode") or "default"),
    ]
    return "_".join(p.replace("/", "-").replace(" ", "-") for p in pieces)


def seed_count_label(result: Mapping[str, Any]) -> str:
    """How many training runs of the backbone the row's run belongs to: "3 seeds" for a run of a
    multi-seed study (its seed_spread section), "single seed" otherwise: one training run,
    whose spread the episode CI does not show."""
    n = int(result.get("seed_spread", {}).get("n_seeds", 1))
    return f"{n} seeds" if n > 1 else "single seed"


def is_transductive(result: Mapping[str, Any], learner: str) -> bool:
    """The learner-level `transductive` flag of a result file; absent (older files): inductive."""
    return bool(result["metrics"][learner].get("transductive", False))


def _run_identity(path: Path) -> bool:
    return path.name == IDENTITY_FILE and (path.parent / CONFIG_FILE).is_file()


def result_files(
    dir_or_files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    skipped: dict[str, str] | None = None,
) -> list[Path]:
    """Files given, or every *.json under a folder (recursively), sorted, less the run identity
    (run.json) that partbench writes beside a run folder's config.yaml.

    In a folder, what cannot be a result file is left out and, with `skipped`, noted there
    ({path: why}): a FIFO or device (reading it would hang), a file larger than any result file
    (MAX_RESULT_BYTES), and JSON of another kind (an episode or names file; see is_other_kind).
    Files named one by one are all returned: checking them says what is wrong.
    """
    if isinstance(dir_or_files, (str, os.PathLike)):
        dir_or_files = [dir_or_files]
    files: list[Path] = []
    for item in dir_or_files:
        path = Path(item)
        if not path.is_dir():
            files.append(path)
            continue
        for found in sorted(p for p in path.rglob("*.json") if not _run_identity(p)):
            why = _not_a_result_file(found)
            if why is None:
                files.append(found)
            elif skipped is not None:
                skipped[str(found)] = why
    return files


def _not_a_result_file(path: Path) -> str | None:
    """Why a *.json found in a folder is not a result file to check, or None if it may be one."""
    try:
        check_input_file(path, what="file", max_bytes=MAX_RESULT_BYTES)
    except InputFileError as exc:
        return str(exc).split(": ", 1)[-1]
    with open(path, "rb") as handle:
        head = handle.read(4096)
    # partbench's other JSON files say what they are near their start: an episode file's
    # "format" follows only its hashes; a names file starts with its "format"
    if b'"format":"partbench-episode' in head.replace(b" ", b""):
        return "an episode or names file, not a result file"
    # any other JSON (a dataset's annotation file, a cache index) names neither field that every
    # result file has; one that does is checked, so a damaged result file is refused, not skipped
    try:
        doc = loads_strict(path.read_bytes())
    except (OSError, StrictJSONError):
        return None  # checked, and refused with the reason
    if isinstance(doc, dict) and not {"schema_version", "kind"} & doc.keys():
        return "JSON of another kind (no schema_version or kind), not a result file"
    return None


# ------------------------------------------------------------------ verifying one file


@dataclass
class _Checked:
    """A valid result file; verified when its records were found and agree with it."""

    result: dict[str, Any]
    records: pd.DataFrame | None  # this run's records; None: not verified
    unverified_because: str = ""


@dataclass
class _RecordSource:
    """Finds a result's records: the frame given (if it holds the run), else the file beside it."""

    given: pd.DataFrame | None
    _beside: dict[Path, pd.DataFrame | str] = field(default_factory=dict)

    def find(self, path: Path, run_id: str) -> pd.DataFrame | str:
        """The run's records, or a sentence saying why there are none."""
        if self.given is not None and (self.given["run_id"] == run_id).any():
            return self.given[self.given["run_id"] == run_id]
        beside = path.parent / RECORDS_FILE
        if beside not in self._beside:
            if not beside.is_file():
                self._beside[beside] = f"no {RECORDS_FILE} beside it" + (
                    ""
                    if self.given is None
                    else f" and the records given hold no episode of run {run_id!r}"
                )
            else:
                try:
                    self._beside[beside] = read_records(beside)
                except (RecordError, OSError) as exc:
                    self._beside[beside] = f"its {RECORDS_FILE} cannot be read ({exc})"
        found = self._beside[beside]
        if isinstance(found, str):
            return found
        own = found[found["run_id"] == run_id]
        return own if not own.empty else f"{beside.name} beside it holds another run"


def _verify(result: Any, records: pd.DataFrame | None) -> list[str]:
    """Every problem with a loaded result, its metrics recomputed from `records` when given.

    The one call into the schema's validation (kept to one place so a stronger validator drops
    in). It checks the dict that was read, so what is ranked is exactly what was verified.
    """
    return validate_result(result, records=records)


def _check_file(path: Path, source: _RecordSource) -> _Checked | list[str]:
    """The verified (or, records missing, at least valid) result, or the file's problems."""
    try:
        result = read_result(path)
        if not isinstance(result, dict) or not isinstance(result.get("run_id"), str):
            return _verify(result, None) or ["not a partbench result file (no run_id)"]
        records = source.find(path, result["run_id"])
        problems = _verify(result, None if isinstance(records, str) else records)
    except RecursionError:
        return ["nested too deeply to read (not a partbench result file)"]
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError included
        return [f"cannot read: {exc}"]
    if problems:
        return problems
    if isinstance(records, str):
        return _Checked(result, None, records)
    return _Checked(result, records)


# ------------------------------------------------------------------ ranking


def _tie(
    leader: pd.Series, row: pd.Series, scores: Mapping[int, pd.Series | None], alpha: float
) -> tuple[bool, str]:
    """Whether `row` is not significantly worse than `leader`, and the test ("paired p=0.31",
    "CIs overlap", "CIs disjoint", "no CI")."""
    a, b = scores.get(leader.name), scores.get(row.name)
    if a is not None and b is not None and leader["episodes_hash"] == row["episodes_hash"]:
        try:
            test = paired_difference(a, b)
        except ValueError:  # not the same episode indices, or under 2 episodes
            pass
        else:
            return test.p_value >= alpha, f"paired p={test.p_value:.2g}"
    if leader["ci"] is None or row["ci"] is None or pd.isna(leader["ci"]) or pd.isna(row["ci"]):
        return True, "no CI (one episode)"
    overlap = leader["accuracy"] - leader["ci"] <= row["accuracy"] + row["ci"]
    return bool(overlap), "CIs overlap" if overlap else "CIs disjoint"


def tie_aware_ranks(
    table: pd.DataFrame, scores: Mapping[int, pd.Series | None], confidence: float = 0.95
) -> tuple[list[int], list[str]]:
    """Ranks and tie notes for `table` (columns accuracy, ci, episodes_hash; any index).

    scores: table index -> per-episode accuracy (%) Series indexed by episode, or None (then the
    CIs decide). Returns, in the table's order, each row's rank and how it got it: "leader",
    "tied: paired p=0.31" (shares the rank above), "apart: CIs disjoint" (opens a rank), ...
    See RANK_RULE.
    """
    alpha = 1 - confidence
    order = table.sort_values("accuracy", ascending=False, kind="stable").index
    rank: dict[Any, int] = {}
    note: dict[Any, str] = {}
    apart: dict[Any, str] = {}  # the last test that kept a row out of a rank above
    for leader_id in order:
        if leader_id in rank:
            continue
        opened = len(rank) + 1
        rank[leader_id] = opened
        note[leader_id] = f"apart: {apart[leader_id]}" if leader_id in apart else "leader"
        leader = table.loc[leader_id]
        for other_id in order:
            if other_id in rank:
                continue
            tied, how = _tie(leader, table.loc[other_id], scores, alpha)
            if tied:
                rank[other_id], note[other_id] = opened, f"tied: {how}"
            else:
                apart[other_id] = how
    return [rank[i] for i in table.index], [note[i] for i in table.index]


def rank_rule(confidence: float = 0.95) -> str:
    """The rule printed under a ranked table."""
    return RANK_RULE.format(alpha=round(1 - confidence, 6), confidence=round(100 * confidence, 6))


# ------------------------------------------------------------------ merging


def _rows(
    path: Path, verified: _Checked
) -> list[tuple[Group, dict[str, Any], pd.Series | None, pd.DataFrame]]:
    result, records = verified.result, verified.records
    setting = result["setting"]
    key = (
        setting["split"],
        setting["n_way"],
        setting["k_shot"],
        setting["n_query"],
        setting["mode"],
    )
    leaked = result["weights"]["saw_test_classes"]
    confidence = result["ci"]["confidence"]
    out = []
    for learner, metric in result["metrics"].items():
        group = Group(
            result["dataset"]["name"],
            result["dataset"]["fingerprint"],
            key,
            is_transductive(result, learner),
            records is not None,
            learner_annotations(metric),
            bool(leaked),
        )
        row = {
            "learner": learner,
            "accuracy": metric["accuracy"],
            "ci": metric["ci"],
            "acc ± ci": format_acc(
                metric["accuracy"], float("nan") if metric["ci"] is None else metric["ci"]
            ),
            "leaked": LEAKED_MARK if leaked else "",
            "masks": metric["mask_mode"] or "",
            "annotations": learner_annotations(metric),
            "seeds": seed_count_label(result),
            "dataset": group.dataset_label,
            "episodes": metric["n_episodes"],
            "backbone": result["weights"]["backbone"],
            "weights": result["weights"]["provenance"],
            "run": result["name"],
            "episodes_hash": result["episodes"]["hash"],
            "confidence": confidence,
            "file": str(path),
        }
        scores = None
        if records is not None:
            own = records[records["learner"] == learner]
            scores = own.set_index("episode")["accuracy"].sort_index() * 100.0
        supers = pd.DataFrame(
            [
                {
                    "learner": learner,
                    "run": result["name"],
                    "super_category": name,
                    "accuracy": s["accuracy"],
                    "ci": s["ci"],
                }
                for name, s in metric["per_super_category"].items()
            ],
            columns=["learner", "run", "super_category", "accuracy", "ci"],
        )
        out.append((group, row, scores, supers))
    return out


def merge(
    dir_or_files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    allow_mixed_episodes: bool = False,
    *,
    records: pd.DataFrame | None = None,
    allow_unverified: bool = False,
) -> Leaderboard:
    """Ranked tables from the result files that verify against their records.

    records: per-episode records to verify against (a `read_records` frame, any runs); a result
    whose run they do not hold is checked against the records.jsonl beside it.
    allow_unverified: list valid files without records in unranked tables of their own.
    Columns: rank, tie, learner, accuracy, ci, "acc ± ci", leaked ("†" if the weights saw the test
    classes), masks, annotations (results.protocols; one table per protocol), seeds (training runs of the backbone behind the row's result file: the
    seed_spread section's count, "single seed" without one), dataset, episodes, backbone, weights, run, episodes_hash, confidence, file
    (rank and tie only in verified tables). Raises LeaderboardError when a group's rows were
    evaluated on different episode hashes, unless allow_mixed_episodes.
    """
    board = Leaderboard()
    source = _RecordSource(records)
    seen: dict[str, str] = {}
    grouped: dict[Group, list[tuple[dict[str, Any], pd.Series | None, pd.DataFrame]]] = {}
    valid: list[tuple[Path, _Checked]] = []
    for path in result_files(dir_or_files, board.skipped):
        checked = _check_file(path, source)
        if isinstance(checked, list):
            board.invalid[str(path)] = checked
        else:
            valid.append((path, checked))
    # Verified files first: a copy without records (e.g. under a --html folder) of a verified
    # file is its duplicate, not an unverified entry.
    for path, checked in sorted(valid, key=lambda item: item[1].records is None):
        content = checked.result["content_hash"]
        if content in seen:
            board.duplicates[str(path)] = seen[content]
            continue
        if checked.records is None:
            board.unverified[str(path)] = checked.unverified_because
            if not allow_unverified:
                continue
        seen[content] = str(path)
        for group, row, scores, supers in _rows(path, checked):
            grouped.setdefault(group, []).append((row, scores, supers))
    for group in sorted(grouped, key=lambda g: (not g.verified, g.label)):
        entries = grouped[group]
        table = pd.DataFrame([row for row, _, _ in entries])
        hashes = sorted(set(table["episodes_hash"]))
        if len(hashes) > 1 and not allow_mixed_episodes:
            # refuse the rows of the other episode sets, rank the rest: the set most rows ran
            # (ties: the first hash) stays
            counts = table["episodes_hash"].value_counts()
            kept = min(hashes, key=lambda h: (-int(counts[h]), h))
            other = table["episodes_hash"] != kept
            for file in sorted(set(table.loc[other, "file"])):
                board.mixed[file] = (
                    f"{group.title}: evaluated on other episodes ({len(hashes)} different episode "
                    f"sets; ranked: {kept[:19]}…); accuracies on other episodes are not "
                    "comparable: re-run on the same episodes, or pass --allow-mixed-episodes"
                )
            keep = [i for i, flag in enumerate(other.tolist()) if not flag]
            entries = [entries[i] for i in keep]
            table = table.iloc[keep].reset_index(drop=True)
        confidence = float(table["confidence"].min())
        if group.verified:
            ranks, ties = tie_aware_ranks(
                table, {i: s for i, (_, s, _) in enumerate(entries)}, confidence
            )
            table.insert(0, "rank", ranks)
            table.insert(1, "tie", ties)
            table = table.sort_values(
                ["rank", "accuracy", "learner"], ascending=[True, False, True], kind="stable"
            )
            board.rules[group.label] = rank_rule(confidence)
        else:
            table = table.sort_values(
                ["accuracy", "learner"], ascending=[False, True], kind="stable"
            )
            board.rules[group.label] = (
                "unverified: no per-episode records to check these rows "
                "against, so they are not ranked; listed by accuracy only"
            )
        board[group.label] = table.reset_index(drop=True)
        board.groups[group.label] = group
        supers = pd.concat([s for _, _, s in entries], ignore_index=True)
        board.super_categories[group.label] = supers.rename(
            columns={"ci": f"ci{round(confidence * 100):d}"}
        )
    return board
