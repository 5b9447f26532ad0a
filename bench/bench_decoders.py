"""JPEG decoders at the release's sizes, each with DCT scaling, against the path partbench uses.

    python bench/bench_decoders.py --size 128            # resnet18's 128 px input
    python bench/bench_decoders.py --size 224 --n 300

Decodes --n release-shaped JPEGs (benchmark.data.twin.release_archive: 500x375 and the like, ~110 KB)
to a --size x --size model input (squash, bicubic, as extraction does) and prints CPU ms per
image for each decoder installed here, decode alone and decode + resize:
- pillow: benchmark.data.decode.to_rgb (Image.draft: 1/2, 1/4, 1/8 scale when the input is at
  most half the stored size, then the exact box of the original extent);
- simplejpeg (pip wheel, bundles libjpeg-turbo): min_width/min_height pick the smallest of
  libjpeg-turbo's M/8 scales that covers the size;
- PyTurboJPEG 1.x over the system's libturbojpeg: the same M/8 scale.
Each other decoder's image is resized with the exact box of the original extent in its scaled
image, so its geometry equals a full decode's (what the part masks, in stored-image coordinates,
expect); the output prints its mean and largest difference from partbench's path. Decoders not
installed are listed as such.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.data.decode import to_rgb
from benchmark.data.twin.release_archive import release_plan, render_release_image


def scaled_factor(stored: tuple[int, int], decoded: tuple[int, int]) -> float:
    """The M/8 factor libjpeg-turbo used, from the stored and decoded (width, height)."""
    for m in range(1, 17):
        if decoded == (math.ceil(stored[0] * m / 8), math.ceil(stored[1] * m / 8)):
            return m / 8
    raise ValueError(f"{decoded} is no M/8 scale of {stored}")


def boxed(pixels: np.ndarray, stored: tuple[int, int], size: tuple[int, int]) -> Image.Image:
    """A scaled decode resized to `size`, reading the exact box of the original extent."""
    f = scaled_factor(stored, (pixels.shape[1], pixels.shape[0]))
    return Image.fromarray(pixels).resize(
        size, Image.Resampling.BICUBIC, box=(0, 0, stored[0] * f, stored[1] * f)
    )


def decoders(size: tuple[int, int]) -> dict:
    """name -> (decode alone: bytes -> pixels, full: bytes -> PIL image at size), or a reason."""

    def pil_alone(b):
        image = Image.open(io.BytesIO(b))
        image.draft("RGB", size)
        image.load()
        return image

    out: dict = {"pillow": (pil_alone, lambda b: to_rgb(Image.open(io.BytesIO(b)), size))}
    try:
        import simplejpeg

        def sj(b):
            return simplejpeg.decode_jpeg(b, "RGB", min_width=size[0], min_height=size[1])

        def sj_full(b):
            h, w = simplejpeg.decode_jpeg_header(b)[:2]
            return boxed(sj(b), (w, h), size)

        out["simplejpeg"] = (sj, sj_full)
    except ImportError:
        out["simplejpeg"] = "not installed (pip install simplejpeg)"
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()

        def tj_alone(b):
            w, h = Image.open(io.BytesIO(b)).size
            factor = min(
                (
                    f
                    for f in tj.scaling_factors
                    if math.ceil(w * f[0] / f[1]) >= size[0]
                    and math.ceil(h * f[0] / f[1]) >= size[1]
                ),
                key=lambda f: f[0] / f[1],
            )
            return tj.decode(b, pixel_format=turbojpeg.TJPF_RGB, scaling_factor=factor), (w, h)

        out["pyturbojpeg"] = (lambda b: tj_alone(b)[0], lambda b: boxed(*tj_alone(b), size))
    except (ImportError, OSError, RuntimeError) as exc:
        out["pyturbojpeg"] = f"not usable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    return out


def cpu_ms(fn, blobs: list[bytes], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        for b in blobs:
            fn(b)
        best = min(best, (time.process_time() - start) / len(blobs) * 1e3)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="model input side (squash)")
    parser.add_argument("--n", type=int, default=200, help="release-shaped JPEGs to decode")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes")
    args = parser.parse_args(argv)
    size = (args.size, args.size)
    names = release_plan(1.0)["test"][:: max(1, 4598 // args.n)][: args.n]
    blobs = [render_release_image(n, 0, seed=0)[0] for n in names]
    reference = [
        np.asarray(to_rgb(Image.open(io.BytesIO(b)), size), dtype=np.int16) for b in blobs[:20]
    ]
    print(
        f"{len(blobs)} release-shaped JPEGs, mean {np.mean([len(b) for b in blobs]) / 1e3:.0f} KB"
        f", to {args.size}x{args.size} (bicubic); CPU ms per image, best of {args.repeats}"
    )
    print(f"{'decoder':<12}{'decode':>9}{'+ resize':>10}{'diff mean':>11}{'diff max':>10}")
    figures = {}
    for name, pair in decoders(size).items():
        if isinstance(pair, str):
            print(f"{name:<12}{pair}")
            continue
        alone, full = pair
        diffs = [np.abs(np.asarray(full(b), dtype=np.int16) - r) for b, r in zip(blobs, reference)]
        figures[name] = {
            "decode_ms": cpu_ms(alone, blobs, args.repeats),
            "decode_resize_ms": cpu_ms(full, blobs, args.repeats),
            "diff_mean": float(np.mean([d.mean() for d in diffs])),
            "diff_max": int(max(d.max() for d in diffs)),
        }
        f = figures[name]
        print(
            f"{name:<12}{f['decode_ms']:>9.2f}{f['decode_resize_ms']:>10.2f}"
            f"{f['diff_mean']:>11.2f}{f['diff_max']:>10d}"
        )
    return figures


if __name__ == "__main__":
    main()
