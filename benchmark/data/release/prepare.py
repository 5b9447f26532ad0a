"""`python -m benchmark prepare SOURCE --out DIR`: the canonical, verified copy of the release.

SOURCE is the downloaded `PartImageNet_OOD.zip`, a folder holding its inner zips, or an unpacked
copy in any layout. `prepare` writes

    DIR/<split>.json                       the annotation files, byte for byte
    DIR/<split>/<synset>/<file_name>       every image the json lists
    DIR/partbench-manifest.json            sha256 of each annotation file, counts, what differed

and verifies DIR against the published release (benchmark/data/release/facts.py and the packaged
tables): 16,540 / 2,957 / 4,598 images, the per-class train counts, the 40 part categories, every
listed image present and decodable. A split whose listed images are not all there is not written,
so DIR always loads. Differences from the published counts make a "not the full release" report,
an error unless `allow_partial` (a train+val copy, a test tree).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from benchmark.data.errors import DatasetDefectWarning, DatasetError, first_few
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.release import facts as release
from benchmark.data.release.facts import MAX_MEMBER_BYTES
from benchmark.data.release.unpack import Collected, FileRef, collect
from episodes import taxonomy
from episodes.storage import atomic_write, atomic_write_text, loads_strict, sha256_hex

MANIFEST = "partbench-manifest.json"
MANIFEST_FORMAT = "partbench-prepared-release"
MANIFEST_VERSION = 1
_STAGING = ".partbench-prepare-staging"


@dataclass
class PrepareReport:
    """What `prepare` wrote and how it differs from the published release.

    Attributes:
        out: the folder written.
        images: split -> images written.
        annotation_sha256: "<split>.json" -> sha256 of the file written.
        not_written: split -> why its files were not written (json without its images...).
        missing: split -> listed images not found in the source (paths as DIR/<split>/...).
        missing_classes: "<split>/<synset>/" class folders with none of their listed images.
        differences: differences from the published release (counts, classes, splits absent).
        extra: files of the source that no json lists (where they were found).
        refused: zip members refused and not written, with why.
        undecodable: images written that PIL cannot decode, with the error.
    """

    out: Path
    images: dict[str, int] = field(default_factory=dict)
    annotation_sha256: dict[str, str] = field(default_factory=dict)
    not_written: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    missing_classes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)

    @property
    def full_release(self) -> bool:
        """Every split written, with the published counts, nothing missing or undecodable."""
        return not (self.differences or self.not_written or self.missing or self.undecodable)

    def lines(self) -> list[str]:
        """The report as lines for the terminal."""
        out = [
            f"prepared {self.out}: " + ", ".join(f"{s} {n} images" for s, n in self.images.items())
        ]
        out += [f"  {s}: not written: {why}" for s, why in self.not_written.items()]
        if self.missing_classes:
            out.append(f"  class folders missing: {first_few(self.missing_classes, 10)}")
        for split, paths in self.missing.items():
            out.append(f"  {split}: {len(paths)} listed images missing: {first_few(paths, 3)}")
        if self.undecodable:
            out.append(
                f"  {len(self.undecodable)} images PIL cannot decode: "
                f"{first_few(self.undecodable, 3)}"
            )
        if self.refused:
            out.append(
                f"  {len(self.refused)} zip members refused, not written: "
                f"{first_few(self.refused, 5)}"
            )
        if self.extra:
            out.append(
                f"  {len(self.extra)} files no annotation file lists (not copied): "
                f"{first_few(self.extra, 3)}"
            )
        if self.differences:
            out.append("  not the full release: " + "; ".join(self.differences))
        else:
            out.append(
                "  matches the published release "
                + " / ".join(f"{n:,}" for n in release.SPLIT_IMAGES.values())
                if self.full_release
                else ""
            )
        return [line for line in out if line]


def _annotation_files(files: list[FileRef]) -> tuple[dict[str, FileRef], list[str]]:
    """split -> its json (the shallowest of that name); and a note per ignored duplicate."""
    found: dict[str, list[FileRef]] = defaultdict(list)
    for f in files:
        for split in taxonomy.SPLITS:
            if f.name == release.ANNOTATION_FILE.format(split=split):
                found[split].append(f)
    chosen, notes = {}, []
    for split, refs in found.items():
        refs.sort(key=lambda f: (f.where.count("/") + f.where.count("!"), f.where))
        chosen[split] = refs[0]
        notes += [f"{r.where} (another {r.name}; used {refs[0].where})" for r in refs[1:]]
    return chosen, notes


def _read_listing(ref: FileRef) -> tuple[bytes, list[str]]:
    """The json's bytes and the file names it lists (checked in full when DIR is loaded)."""
    try:
        with ref.open() as handle:
            raw = handle.read(MAX_MEMBER_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:  # a damaged member
        raise DatasetError(
            f"{ref.where}: cannot be read from its archive ({exc}); download the release again"
        ) from None
    if len(raw) > MAX_MEMBER_BYTES:
        raise DatasetError(
            f"{ref.where}: more than {MAX_MEMBER_BYTES:,} bytes; not the release's annotation file"
        )
    try:
        data = loads_strict(raw)
        names = [img["file_name"] for img in data["images"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{ref.where}: not a COCO annotation file with images[].file_name ({exc})"
        ) from None
    if not all(
        isinstance(n, str) and n and "/" not in n and "\\" not in n and ".." not in n for n in names
    ):
        raise DatasetError(f"{ref.where}: a file_name is not a bare file name; refused")
    return raw, names


def _copy_into(ref: FileRef, target: Path) -> None:
    """Write the file's bytes at `target` atomically (a hard link for a file on the same disk)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if ref.path is not None:
        try:
            target.unlink(missing_ok=True)
            os.link(ref.path, target)
            return
        except OSError:
            pass
    with ref.open() as src:  # a damaged member is counted by the caller
        atomic_write(target, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))


def _decode_error(path: Path) -> str | None:
    """None if PIL decodes the image; else the error. JPEGs decode at 1/8 scale (every byte of
    the entropy-coded data is still read, so a truncated or corrupt file fails)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (max(1, img.size[0] // 8), max(1, img.size[1] // 8)))
                img.load()
        return None
    except Exception as exc:  # noqa: BLE001 - whatever PIL raises, the file is not usable
        return f"{path} ({type(exc).__name__}: {exc})"


def _compare_with_release(listed: dict[str, list[str]], report: PrepareReport) -> None:
    """Differences of the written splits from the published counts, one line per kind."""
    for split, expected in release.SPLIT_IMAGES.items():
        if split not in listed:
            report.differences.append(f"no {split} split ({expected:,} images in the release)")
            continue
        if len(listed[split]) != expected:
            report.differences.append(
                f"{split}: {len(listed[split]):,} images listed, the release has {expected:,}"
            )
        per_class = Counter(name.split("_", 1)[0] for name in listed[split])
        published = release.class_images(split)
        counts = [
            f"{s} {per_class[s]} (release {n})"
            for s, n in published.items()
            if n is not None and per_class[s] != n
        ]
        if counts:
            report.differences.append(
                f"{split}: {len(counts)} classes differ from their "
                f"published image counts: {first_few(counts, 3)}"
            )
        empty = [s for s, n in published.items() if n is None and not per_class[s]]
        if empty:
            report.differences.append(
                f"{split}: {len(empty)} of its {len(published)} classes "
                f"have no image: {first_few(empty, 3)}"
            )


def _check_out(out: Path) -> None:
    """`out` must be new, empty, or an earlier output of prepare (whose files are removed)."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file; name a folder to create")
    if not out.is_dir():
        return
    if not (out / MANIFEST).is_file():
        with os.scandir(out) as entries:
            if any(e.name != _STAGING for e in entries):
                raise DatasetError(
                    f"--out {out} is not empty and holds no {MANIFEST}; name a "
                    f"new folder (prepare only overwrites its own earlier output)"
                )
        return
    for split in taxonomy.SPLITS:  # what an earlier run wrote, so no stale split survives
        (out / release.ANNOTATION_FILE.format(split=split)).unlink(missing_ok=True)
        shutil.rmtree(out / split, ignore_errors=True)
    # The manifest stays until the new one replaces it, so an interrupted rerun can be rerun.


def prepare_release(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    allow_partial: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> PrepareReport:
    """Unpack `source` into the canonical layout at `out`, verify it and write the manifest.

    Args:
        source: `PartImageNet_OOD.zip`, a folder of its inner zips, or an unpacked copy.
        out: the folder to write (new, or an earlier output of prepare).
        allow_partial: accept a copy that differs from the published release (e.g. train and val
            only); it is still reported.
        workers: threads decoding images for the check (default: up to 8).
        progress: progress bars on stderr for the steps that take minutes on the release
            (copying the inner zips out, writing the images, the decode check).
    Returns:
        the report (also summarised in the manifest).
    Raises:
        DatasetError: no source; nothing usable in it; listed images missing or undecodable; or,
            unless allow_partial, differences from the published release. The files written so
            far stay, with the manifest, so the report can be read.
    """
    source, out = Path(source).expanduser(), Path(out).expanduser()
    if not source.exists():
        raise DatasetError(
            f"prepare: {source} does not exist; download {release.HUB_FILENAME} "
            f"(python -m benchmark download --out DIR, or from {release.HUB_PAGE})"
        )
    if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
        raise DatasetError(
            f"prepare: --out {out} is or holds the source {source}; name another "
            f"folder (prepare writes a new copy and never edits its source)"
        )
    _check_out(out)
    staging = out / _STAGING
    collected: Collected | None = None
    try:
        collected = collect(source, staging, skip=(out,), progress=progress)
        report = _write(source, out, collected, progress)
    finally:
        if collected is not None:
            collected.close()
        shutil.rmtree(staging, ignore_errors=True)
    _verify(out, report, workers, progress)
    _write_manifest(source, out, report)
    problems = _blocking(report, allow_partial)
    if problems:
        raise DatasetError(f"prepare: {out}: {problems} (the report is in {out / MANIFEST})")
    return report


def _write(source: Path, out: Path, collected: Collected, progress: bool = False) -> PrepareReport:
    report = PrepareReport(out=out, refused=list(collected.refused))
    jsons, duplicates = _annotation_files(collected.files)
    report.extra += duplicates
    if not jsons:
        raise DatasetError(
            f"prepare: {source} holds no train.json, val.json or test.json"
            + (
                f" ({len(collected.refused)} entries refused: {first_few(collected.refused, 3)})"
                if collected.refused
                else ""
            )
            + f"; expected {release.HUB_FILENAME} or its unpacked content"
        )
    listed: dict[str, list[str]] = {}
    raws: dict[str, bytes] = {}
    for split in taxonomy.SPLITS:
        if split in jsons:
            raws[split], listed[split] = _read_listing(jsons[split])
    split_of = {name: split for split, names in listed.items() for name in names}
    json_refs = {id(r) for r in jsons.values()}
    images: dict[str, FileRef] = {}
    for ref in collected.files:
        if id(ref) in json_refs:
            continue
        if ref.name not in split_of:
            report.extra.append(ref.where)
        elif ref.name in images:
            report.extra.append(
                f"{ref.where} (a second copy of {ref.name}; used {images[ref.name].where})"
            )
        else:
            images[ref.name] = ref
    for split, names in listed.items():
        missing = [n for n in names if n not in images]
        if missing and len(missing) == len(names):
            report.not_written[split] = (
                f"{split}.json found but none of its {len(names):,} "
                f"images (is {split}.zip missing?)"
            )
            continue
        if missing:
            by_class = Counter(n.split("_", 1)[0] for n in names)
            gone = Counter(n.split("_", 1)[0] for n in missing)
            report.missing_classes += [
                f"{split}/{s}/ ({by_class[s]} images listed)"
                for s in sorted(gone)
                if gone[s] == by_class[s]
            ]
            report.missing[split] = [f"{split}/{n.split('_', 1)[0]}/{n}" for n in missing]
            report.not_written[split] = (
                f"{len(missing):,} of its {len(names):,} listed images are not in the source"
            )
            continue
        damaged = []
        for name in tqdm(
            names, desc=f"prepare: write {split}", unit="img", disable=not progress, mininterval=2.0
        ):
            try:
                _copy_into(images[name], out / split / name.split("_", 1)[0] / name)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                damaged.append(f"{images[name].where} (cannot be read from its archive: {exc})")
        if damaged:
            report.undecodable += damaged
            report.not_written[split] = f"{len(damaged)} of its images are damaged in the source"
            continue
        atomic_write(out / f"{split}.json", lambda handle, raw=raws[split]: handle.write(raw))
        report.images[split] = len(names)
        report.annotation_sha256[f"{split}.json"] = sha256_hex(raws[split])
    _compare_with_release({s: n for s, n in listed.items() if s in report.images}, report)
    return report


def _verify(out: Path, report: PrepareReport, workers: int | None, progress: bool = False) -> None:
    """Load what was written (COCO checks, the 40 categories, classes, sizes) and decode it."""
    if not report.images:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)  # the release's known defects
        dataset = load_partimagenet(
            out, needed={s: "was written by prepare" for s in report.images}
        )
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # PIL decodes outside the GIL
        errors = pool.map(_decode_error, [rec.path for rec in dataset.images], chunksize=64)
        errors = tqdm(
            errors,
            total=len(dataset.images),
            desc="prepare: decode check",
            unit="img",
            disable=not progress,
            mininterval=2.0,
        )
        report.undecodable += [e for e in errors if e is not None]


def _write_manifest(source: Path, out: Path, report: PrepareReport) -> None:
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "source": source.name,
        "annotation_files": report.annotation_sha256,
        "images": report.images,
        "full_release": report.full_release,
        "differences": report.differences,
        "not_written": report.not_written,
        "missing_class_folders": report.missing_classes,
        "missing_images": {s: len(p) for s, p in report.missing.items()},
        "undecodable": report.undecodable,
        "refused_zip_members": report.refused,
        "extra_files": len(report.extra),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _blocking(report: PrepareReport, allow_partial: bool) -> str:
    """One line of what makes the output unusable or (unless allow_partial) not the release."""
    problems = []
    if report.missing:
        problems.append(
            "listed images missing from the source: "
            + ", ".join(f"{s} {len(p):,}" for s, p in report.missing.items())
            + (
                f" (class folders {first_few(report.missing_classes, 3)})"
                if report.missing_classes
                else ""
            )
        )
    if report.undecodable:
        problems.append(
            f"{len(report.undecodable)} images cannot be decoded: "
            f"{first_few(report.undecodable, 2)}"
        )
    if not report.images:
        problems.append("no split could be written")
    if problems:
        return "; ".join(problems)
    if not allow_partial and not report.full_release:
        return (
            "not the full release: "
            + first_few(
                report.differences + [f"{s}: {why}" for s, why in report.not_written.items()], 3
            )
            + "; pass --allow-partial to use it as it is"
        )
    return ""
