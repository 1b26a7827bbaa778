"""Can simple image statistics tell the phantoms apart?  (They should not: anatomy should.)

Fits a standardised logistic regression on nine statistics per image -- mean, standard
deviation, the 5/25/50/75/95th percentiles, mean of the border, mean of the centre -- and reports
the cross-validated accuracy over the 14 X-ray types and the AUC of "any finding" vs "No Finding"
on chest phantoms.  The unit tests (tests/test_phantoms.py) assert the same on a smaller sample.

    .venv/bin/python scripts/trivial_cue_check.py --per-type 40 --size 64
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xray_utils.config import paper
from xray_utils.sources.phantoms import render

# the statistics live beside the tests that assert the same on a smaller sample
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from image_stats import simple_image_stats as stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-type", type=int, default=40)
    ap.add_argument("--chest", type=int, default=400)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    X = np.array([stats(render(t, (args.seed, k, i), args.size).image)
                  for k, t in enumerate(paper.XRAY_TYPES) for i in range(args.per_type)])
    y = np.repeat(np.arange(len(paper.XRAY_TYPES)), args.per_type)
    acc = cross_val_score(clf, X, y, cv=cv).mean()
    cm = confusion_matrix(y, cross_val_predict(clf, X, y, cv=cv))
    print(f"14 X-ray types, {len(y)} images at {args.size} px: CV accuracy {acc:.3f} (chance {1 / 14:.3f})")
    for k, t in enumerate(paper.XRAY_TYPES):
        print(f"  {t:9s} recall {cm[k, k] / cm[k].sum():.2f}")

    films = [render("chest", (args.seed, 99, i), args.size) for i in range(args.chest)]
    X = np.array([stats(f.image) for f in films])
    y = np.array([len(f.findings) > 0 for f in films])
    auc = cross_val_score(clf, X, y, cv=cv, scoring="roc_auc").mean()
    print(f"chest: any finding vs No Finding, {len(y)} films ({y.mean():.0%} abnormal): CV AUC {auc:.3f}")


if __name__ == "__main__":
    main()
