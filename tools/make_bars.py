"""Writes data/bars/: eight 28x28 grayscale PNGs of a white bar on black and their captions in
metadata.jsonl (Hugging Face imagefolder layout), the bundled example for `--data captions:DIR`.

Usage: python3 tools/make_bars.py [OUT_DIR]   (standard library only; output is deterministic)
"""
import json
import os
import struct
import sys
import zlib

# caption, horizontal?, first row/column of the bar, thickness
BARS = [
    ("a bar across the top", True, 4, 4),
    ("a bar across the middle", True, 12, 4),
    ("a bar across the bottom", True, 20, 4),
    ("a thin bar across the top", True, 6, 2),
    ("a bar down the left side", False, 4, 4),
    ("a bar down the middle", False, 12, 4),
    ("a bar down the right side", False, 20, 4),
    ("a thin bar down the left side", False, 6, 2),
]


def png(path, rows):
    """A minimal 8-bit grayscale PNG of `rows` (lists of 0..255)."""
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("data", "bars")
    os.makedirs(out, exist_ok=True)
    lines = []
    for i, (caption, across, at, thick) in enumerate(BARS):
        rows = [[0] * 28 for _ in range(28)]
        for k in range(28):
            for t in range(at, at + thick):
                if across:
                    rows[t][k] = 255
                else:
                    rows[k][t] = 255
        name = f"bar{i}.png"
        png(os.path.join(out, name), rows)
        lines.append(json.dumps({"file_name": name, "text": caption}))
    with open(os.path.join(out, "metadata.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
