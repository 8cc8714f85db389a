"""Build fastnn/datasets/digits.npz from scikit-learn's copy of the UCI 8x8 digits.

Run once from the repository root (scikit-learn is needed only here, never at runtime):

    python tools/make_digits.py

Input: sklearn/datasets/data/digits.csv.gz, 1797 rows of 65 integers (64 pixels 0..16, then the label 0..9).
Output: fastnn/datasets/digits.npz (np.savez_compressed, no object arrays) with
    X  uint8 (1797, 64)  pixel counts 0..16, row-major 8x8 images
    y  uint8 (1797,)     digit labels 0..9
"""
import gzip
from importlib.resources import files
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "fastnn" / "datasets" / "digits.npz"


def main():
    src = files("sklearn.datasets") / "data" / "digits.csv.gz"
    with src.open("rb") as fh, gzip.open(fh, "rt") as text:
        data = np.loadtxt(text, delimiter=",")
    assert data.shape == (1797, 65), data.shape
    assert np.array_equal(data, np.round(data)), "expected integer values"
    X, y = data[:, :64].astype(np.uint8), data[:, 64].astype(np.uint8)
    assert X.max() <= 16 and y.max() <= 9 and set(np.unique(y)) == set(range(10))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, X=X, y=y)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): X {X.shape} {X.dtype}, y {y.shape} {y.dtype}")


if __name__ == "__main__":
    main()
