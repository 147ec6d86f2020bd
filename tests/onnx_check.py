"""Independent check of treadc's ONNX files (run by tests/onnxruntime.rs).

For every <case>.onnx in DIR: onnx.checker.check_model(full_check=True), then onnxruntime on
the inputs <case>.in.<input>.npy, compared with burn's output <case>.expected.npy:
max abs difference <= 1e-4 (or <= 1e-5 relative where |values| > 10). Prints one line per
case; exits 1 if any fails. Labels are stored as float32 and cast to the input's type.
"""
import glob
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(folder):
    failed = 0
    cases = sorted(glob.glob(os.path.join(folder, "*.onnx")))
    if not cases:
        print("no .onnx files in", folder)
        return 1
    for path in cases:
        case = path[: -len(".onnx")]
        onnx.checker.check_model(path, full_check=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sess.get_inputs():
            a = np.load(f"{case}.in.{i.name}.npy")
            feeds[i.name] = a.astype(np.int64) if i.type == "tensor(int64)" else a
        got = sess.run(None, feeds)[0]
        want = np.load(f"{case}.expected.npy").reshape(got.shape)
        diff = np.abs(got.astype(np.float64) - want)
        big = np.abs(want) > 10
        rel = (diff[big] / np.abs(want[big])).max() if big.any() else 0.0
        ok = diff.max() <= 1e-4 or rel <= 1e-5
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {os.path.basename(path)}: checker full_check passed, "
              f"onnxruntime {ort.__version__} max abs diff {diff.max():.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
