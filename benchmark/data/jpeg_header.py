"""What a JPEG's header says about its coding, read from the first bytes without decoding.

Used to route each file to the GPU decoder (nvjpeg through torchvision) or to the CPU path
(benchmark/data/decode.py): nvjpeg's batched decode takes 8-bit, 3-component, YCbCr, Huffman
sequential JPEGs; everything else (PNG bytes in a .JPEG file, greyscale, CMYK/YCCK, Adobe RGB
coding, progressive, arithmetic or 12-bit) goes to Pillow, which handles them all.
"""

from __future__ import annotations

from dataclasses import dataclass

# Start-of-frame markers: SOF0 baseline, SOF1 extended sequential, SOF2 progressive, ...;
# 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range but are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SEQUENTIAL_HUFFMAN = {0xC0, 0xC1}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length field


@dataclass(frozen=True)
class JpegInfo:
    """The frame header of a JPEG.

    Attributes:
        sof: the start-of-frame marker's second byte (0xC0 baseline, 0xC2 progressive, ...).
        precision: bits per sample (8 or 12).
        height, width: stored size in pixels.
        components: 1 (greyscale), 3 (YCbCr or RGB) or 4 (CMYK / YCCK).
        adobe_transform: the Adobe APP14 colour transform (0: none, i.e. RGB or CMYK; 1: YCbCr;
            2: YCCK), or None when there is no Adobe segment.
    """

    sof: int
    precision: int
    height: int
    width: int
    components: int
    adobe_transform: int | None


def read_jpeg_info(data: bytes) -> JpegInfo | None:
    """The frame header of JPEG bytes, or None when they are not a JPEG (or are cut short
    before the frame header)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos, adobe = 2, None
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) < length - 2:
            return None
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe = segment[11]
        if marker in _SOF:
            if len(segment) < 6:
                return None
            return JpegInfo(
                sof=marker,
                precision=segment[0],
                height=int.from_bytes(segment[1:3], "big"),
                width=int.from_bytes(segment[3:5], "big"),
                components=segment[5],
                adobe_transform=adobe,
            )
        pos += 2 + length
    return None


def decodes_on_gpu(info: JpegInfo | None) -> bool:
    """True when nvjpeg's batched decode gives the same RGB as Pillow would: an 8-bit,
    3-component, YCbCr-coded, Huffman sequential JPEG. False sends the file to the CPU path."""
    return (
        info is not None
        and info.sof in _SEQUENTIAL_HUFFMAN
        and info.precision == 8
        and info.components == 3
        and info.adobe_transform in (None, 1)
        and info.height > 0
        and info.width > 0
    )
