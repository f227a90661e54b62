"""Tiny stand-in ingest stage: the first rows of the scikit-learn digits as CSV."""
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML
from sklearn.datasets import load_digits

params = YAML(typ="safe").load(Path("params.yaml").read_text())
d = load_digits()
n = int(len(d.target) * params["prepare"]["test_fraction"] * 2)
Path("data/raw").mkdir(parents=True, exist_ok=True)
np.savetxt("data/raw/digits.csv", np.c_[d.data, d.target][:n], fmt="%d", delimiter=",")
