"""Times onnxruntime forward passes on a treadc export, for comparison with
`treadc bench FILE.onnx` (tract) on the same file and machine.

usage: python3 tools/bench_onnxruntime.py FILE.onnx [--batch 8] [--steps 5] [--warmup 1] [--threads 2]
Prints one line: median and min ms per forward, like `treadc bench`.
"""
import argparse
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    t0 = time.perf_counter()
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t0
    rng = np.random.default_rng(3)
    feeds = {}
    for i in sess.get_inputs():
        shape = [a.batch if not isinstance(d, int) else d for d in i.shape]
        if i.type == "tensor(int64)":
            feeds[i.name] = (np.arange(a.batch) % 10).astype(np.int64)
        elif len(shape) == 1:
            feeds[i.name] = np.ones(shape, dtype=np.float32)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    times = []
    for k in range(a.warmup + a.steps):
        t = time.perf_counter()
        sess.run(None, feeds)
        if k >= a.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(f"{a.model} on onnxruntime {ort.__version__} ({a.threads} threads), batch {a.batch}: "
          f"median {times[len(times) // 2]:.1f} ms per forward ({a.steps} timed, min {times[0]:.1f} ms); "
          f"session load {load:.2f} s")


if __name__ == "__main__":
    main()
