"""`prepare` from archives the tests build (the release's nested zips, hostile members, missing
pieces) and `download` offline."""

from __future__ import annotations

import hashlib
import json
import stat
import warnings
import zipfile
from pathlib import Path

import pytest
from data_fixtures import TRAIN_A, TRAIN_B, VAL_A, write_dataset

from benchmark.__main__ import main
from benchmark.data.errors import DatasetDefectWarning, DatasetError
from benchmark.data.partimagenet import load_partimagenet
from benchmark.data.release import facts as release
from benchmark.data.release.download import download_release
from benchmark.data.release.prepare import MANIFEST, prepare_release

SPLITS = ("train", "val", "test")


def load(root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        return load_partimagenet(root)


def zip_folder(zip_path: Path, folder: Path, arc_prefix: str, extra: dict[str, bytes] = ()) -> Path:
    """Zip every file under `folder` as `arc_prefix/<relative path>`, plus `extra` members."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{arc_prefix}/{path.relative_to(folder).as_posix()}")
        for name, data in dict(extra).items():
            zf.writestr(name, data)
    return zip_path


def symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def build_release_zip(
    tmp_path: Path,
    *,
    inner_extra: dict[str, bytes] = (),
    drop: tuple[str, ...] = (),
    symlinks=(),
    name="PartImageNet_OOD.zip",
) -> Path:
    """The release's shape: <split>.json beside inner <split>.zip (images under <split>/<synset>/),
    as zipped on macOS (__MACOSX/ and ._ twins). `drop`: paths left out of the inner zips."""
    canonical = write_dataset(tmp_path / "canonical")
    for path in drop:
        target = canonical / path
        for f in sorted(target.rglob("*"), reverse=True) if target.is_dir() else [target]:
            f.unlink() if f.is_file() else f.rmdir()
        if target.is_dir():
            target.rmdir()
    inner = tmp_path / "inner"
    inner.mkdir()
    for split in SPLITS:
        extra = dict(inner_extra) if split == "train" else {}
        extra[f"__MACOSX/{split}/._{split}"] = b"\0\5\26\7"
        zip_folder(inner / f"{split}.zip", canonical / split, split, extra)
        if split == "train":
            with zipfile.ZipFile(inner / "train.zip", "a") as zf:
                for info, data in symlinks:
                    zf.writestr(info, data)
    outer = tmp_path / name
    with zipfile.ZipFile(outer, "w") as zf:
        for split in SPLITS:
            zf.write(canonical / f"{split}.json", f"PartImageNet_OOD/{split}.json")
            zf.write(inner / f"{split}.zip", f"PartImageNet_OOD/{split}.zip")
            zf.writestr(f"__MACOSX/PartImageNet_OOD/._{split}.json", b"\0\5\26\7junk")
        zf.writestr("PartImageNet_OOD/.DS_Store", b"\0\0\0\1Bud1")
    return outer


def test_prepare_builds_the_canonical_tree_from_the_nested_zips(tmp_path):
    archive = build_release_zip(tmp_path)
    out = tmp_path / "prepared"
    report = prepare_release(archive, out, allow_partial=True)
    assert report.images == {"train": 5, "val": 1, "test": 1}
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "test",
        "test.json",
        "train",
        "train.json",
        "val",
        "val.json",
    ]
    assert (out / "train" / TRAIN_B / f"{TRAIN_B}_3.JPEG").is_file()
    ds = load(out)
    assert ds.layout == "{split}/{synset}/{file_name} + {split}.json"
    assert ds.fingerprint == load(tmp_path / "canonical").fingerprint  # byte for byte
    manifest = json.loads((out / MANIFEST).read_text())
    for split in SPLITS:
        digest = hashlib.sha256((tmp_path / "canonical" / f"{split}.json").read_bytes()).hexdigest()
        assert manifest["annotation_files"][f"{split}.json"] == digest
    assert manifest["full_release"] is False and not report.refused and not report.extra
    # Not the release: the tiny tree's counts are reported against the published ones.
    assert (
        f"train: 5 images listed, the release has {release.SPLIT_IMAGES['train']:,}"
        in report.differences
    )
    assert any(
        d.startswith(
            f"train: 109 classes differ from their published image counts: {TRAIN_A} 2 (release "
        )
        for d in report.differences
    )
    assert any(
        d.startswith("val: 18 of its 19 classes have no image: ") for d in report.differences
    )
    assert "not the full release" in "\n".join(report.lines())


def test_without_allow_partial_a_tree_that_is_not_the_release_is_an_error(tmp_path):
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as err:
        prepare_release(build_release_zip(tmp_path), out)
    message = str(err.value)
    assert message.startswith(f"prepare: {out}: not the full release: train: 5 images listed")
    assert "--allow-partial" in message and "\n" not in message
    assert json.loads((out / MANIFEST).read_text())["full_release"] is False


def test_zip_slip_and_symlink_members_are_refused_and_never_written(tmp_path):
    hostile = {
        "../escaped.JPEG": b"x",
        "/abs/escaped2.JPEG": b"x",
        f"train/../../{TRAIN_A}_1.JPEG": b"evil",
    }
    archive = build_release_zip(
        tmp_path / "src",
        inner_extra=hostile,
        symlinks=[symlink_member(f"train/{TRAIN_A}/link.JPEG", "/etc/passwd")],
    )
    out = tmp_path / "deep" / "prepared"
    report = prepare_release(archive, out, allow_partial=True)
    refused = "\n".join(report.refused)
    assert "train.zip!../escaped.JPEG ('..' in its path)" in refused
    assert "train.zip!/abs/escaped2.JPEG (absolute path)" in refused
    assert f"train/../../{TRAIN_A}_1.JPEG ('..' in its path)" in refused
    assert f"train/{TRAIN_A}/link.JPEG (a symbolic link)" in refused
    written = {p.name for p in tmp_path.rglob("*")}
    assert not {"escaped.JPEG", "escaped2.JPEG", "link.JPEG", "abs"} & written
    # The listed image comes from its real member, not the hostile one of the same name.
    assert (out / "train" / TRAIN_A / f"{TRAIN_A}_1.JPEG").read_bytes()[:2] == b"\xff\xd8"
    assert len(json.loads((out / MANIFEST).read_text())["refused_zip_members"]) == 4


def test_a_missing_class_folder_is_reported_and_its_split_not_written(tmp_path):
    archive = build_release_zip(tmp_path, drop=(f"train/{TRAIN_B}",))
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError) as err:
        prepare_release(archive, out, allow_partial=True)
    message = str(err.value)
    assert "listed images missing from the source: train 3" in message
    assert f"class folders train/{TRAIN_B}/ (3 images listed)" in message
    assert not (out / "train.json").exists()  # so the output still loads for val and test
    assert (out / "val.json").is_file() and (out / "test.json").is_file()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["missing_class_folders"] == [f"train/{TRAIN_B}/ (3 images listed)"]


def test_an_inner_zip_not_there_leaves_its_split_out(tmp_path):
    archive = build_release_zip(tmp_path)
    trimmed = tmp_path / "trimmed.zip"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(trimmed, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("test.zip"):
                dst.writestr(info, src.read(info))
    out = tmp_path / "prepared"
    prepare_release(archive, out, allow_partial=True)
    report = prepare_release(trimmed, out, allow_partial=True)  # over the earlier output
    assert report.images == {"train": 5, "val": 1}
    assert not (out / "test.json").exists() and not (out / "test").exists()  # nothing stale
    assert "none of its 1 images (is test.zip missing?)" in report.not_written["test"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetDefectWarning)
        assert load_partimagenet(out, needed={"val": "evaluates on val"}).splits == ("train", "val")


def test_prepare_from_a_folder_of_inner_zips_and_from_an_unpacked_copy(tmp_path):
    archive = build_release_zip(tmp_path)
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)  # our own archive: safe
    expected = load(tmp_path / "canonical").fingerprint
    prepare_release(folder, tmp_path / "from-inner-zips", allow_partial=True)
    assert load(tmp_path / "from-inner-zips").fingerprint == expected
    flat = tmp_path / "flat-copy"
    for image in (tmp_path / "canonical").rglob("*.JPEG"):
        (flat / "images").mkdir(parents=True, exist_ok=True)
        image_bytes = image.read_bytes()
        (flat / "images" / image.name).write_bytes(image_bytes)
    for split in SPLITS:
        (flat / "annotations").mkdir(exist_ok=True)
        (flat / "annotations" / f"{split}.json").write_bytes(
            (tmp_path / "canonical" / f"{split}.json").read_bytes()
        )
    prepare_release(flat, tmp_path / "from-copy", allow_partial=True)
    assert load(tmp_path / "from-copy").fingerprint == expected


def test_a_member_damaged_in_its_zip_is_reported_and_its_split_not_written(tmp_path):
    archive = build_release_zip(tmp_path)
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    inner = folder / "PartImageNet_OOD" / "val.zip"
    with zipfile.ZipFile(inner) as zf:
        info = zf.getinfo(f"val/{VAL_A}/{VAL_A}_1.JPEG")
    data = bytearray(inner.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 100] ^= 0xFF  # the member is stored: one flipped byte fails its CRC
    inner.write_bytes(bytes(data))
    out = tmp_path / "prepared"
    with pytest.raises(DatasetError, match=r"1 images cannot be decoded: .*val\.zip!val/"):
        prepare_release(folder, out, allow_partial=True)
    assert not (out / "val.json").exists() and (out / "train.json").is_file()


def test_an_undecodable_image_is_reported(tmp_path):
    canonical = write_dataset(tmp_path / "copy")
    image = canonical / "val" / VAL_A / f"{VAL_A}_1.JPEG"
    image.write_bytes(image.read_bytes()[:-8])  # a truncated download: header fine, data cut
    with pytest.raises(DatasetError, match=r"1 images cannot be decoded: .*" + VAL_A):
        prepare_release(canonical, tmp_path / "prepared", allow_partial=True)


def test_prepare_refuses_a_source_without_annotations_and_a_foreign_out(tmp_path):
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DatasetError, match="holds no train.json, val.json or test.json"):
        prepare_release(junk, tmp_path / "out")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("mine")
    with pytest.raises(DatasetError, match="is not empty and holds no partbench-manifest.json"):
        prepare_release(build_release_zip(tmp_path / "src"), busy, allow_partial=True)
    assert (busy / "thesis.tex").read_text() == "mine"
    prepared = tmp_path / "prepared"
    prepare_release(build_release_zip(tmp_path / "src2"), prepared, allow_partial=True)
    for out in (prepared, prepared.parent):  # the source itself, or a folder holding it
        with pytest.raises(DatasetError, match="is or holds the source"):
            prepare_release(prepared, out, allow_partial=True)
    assert load(prepared).splits == SPLITS  # untouched


def test_prepare_cli(tmp_path, capsys):
    archive = build_release_zip(tmp_path)
    out = tmp_path / "prepared"
    assert main(["prepare", str(archive), "--out", str(out), "--allow-partial"]) == 0
    printed = capsys.readouterr().out
    assert f"prepared {out}: train 5 images, val 1 images, test 1 images" in printed
    assert f"next: set data.root to {out}" in printed
    assert main(["prepare", str(archive), "--out", str(out)]) == 2  # rerun over its own output
    err = capsys.readouterr().err
    assert err.startswith("error: prepare:") and err.count("\n") == 1


def test_loader_points_to_prepare_for_the_downloaded_archive(tmp_path):
    archive = build_release_zip(tmp_path)
    with pytest.raises(DatasetError, match="python -m benchmark prepare .*PartImageNet_OOD.zip"):
        load(archive)


# --- download ------------------------------------------------------------------------------------


def test_download_offline_fails_at_once_with_the_manual_route(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as err:
        download_release(tmp_path / "dl")
    message = str(err.value)
    assert "HF_HUB_OFFLINE is set" in message and release.HUB_PAGE in message
    assert f"python -m benchmark prepare {tmp_path / 'dl' / release.HUB_FILENAME}" in message


def test_download_with_the_hub_unreachable_fails_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["download", "--out", str(tmp_path / "dl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: download: the Hugging Face hub is not reachable: 127.0.0.1:9")
    assert release.HUB_PAGE in err and "prepare" in err and err.count("\n") == 1
    assert not (tmp_path / "dl").exists()


@pytest.fixture
def reachable_hub(monkeypatch):
    """A local HTTP server that answers every HEAD with 200, as the hub's endpoint."""
    import http.server
    import threading

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the handler's required name
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()
    server.server_close()


def test_download_from_an_endpoint_that_never_answers_fails_in_seconds(
    tmp_path, monkeypatch, capsys
):
    import socket

    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setattr("benchmark.data.release.download.PROBE_TIMEOUT_S", 0.5)
    try:
        assert main(["download", "--out", str(tmp_path / "dl")]) == 2
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert "accepts connections but gave no HTTP answer within 0.5 s" in err
    assert release.HUB_PAGE in err and err.count("\n") == 1


def test_download_asks_the_hub_for_the_release_file(tmp_path, monkeypatch, reachable_hub):
    import huggingface_hub

    calls = []

    def fetch(**kwargs):
        calls.append(kwargs)
        path = Path(kwargs["local_dir"]) / kwargs["filename"]
        path.write_bytes(b"PK")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fetch)
    path = download_release(tmp_path / "dl")
    assert path == tmp_path / "dl" / "PartImageNet_OOD.zip" and path.is_file()
    assert calls == [
        {
            "repo_id": "turkeyju/PartImageNet",
            "filename": "PartImageNet_OOD.zip",
            "repo_type": "dataset",
            "local_dir": tmp_path / "dl",
            "etag_timeout": 5.0,
        }
    ]


def test_a_failed_download_says_how_to_fetch_it_by_hand(tmp_path, monkeypatch, reachable_hub):
    import huggingface_hub

    def fail(**kwargs):
        raise ConnectionError("503 Service Unavailable\nmore detail")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(DatasetError) as err:
        download_release(tmp_path / "dl")
    message = str(err.value)
    assert "(ConnectionError: 503 Service Unavailable)" in message and "\n" not in message
    assert release.HUB_PAGE in message and "python -m benchmark prepare" in message
